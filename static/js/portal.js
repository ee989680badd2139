// Portal glue: tells people (and screen readers) when a background htmx update fails,
// instead of leaving a stale page that looks fine.

const liveRegion = () => document.getElementById("live-region");

function announce(text) {
  const region = liveRegion();
  if (!region) return;
  region.textContent = "";
  // A fresh text node after clearing makes screen readers read it again.
  window.setTimeout(() => { region.textContent = text; }, 50);
}

document.addEventListener("htmx:responseError", (event) => {
  const status = event.detail.xhr ? event.detail.xhr.status : 0;
  if (status === 401 || status === 403) {
    announce("Your session has ended. Reload the page to log in again.");
  } else {
    announce("This part of the page could not be updated. It will try again shortly.");
  }
});

document.addEventListener("htmx:sendError", () => {
  announce("The server cannot be reached. Check your connection.");
});
