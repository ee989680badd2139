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

// A region loaded by htmx ([data-htmx-region]) shows its [data-htmx-failed] note while its
// latest request failed, instead of a loading text that never ends or silently stale content.
function markRegion(event, failed) {
  const region = event.target.closest && event.target.closest("[data-htmx-region]");
  const note = region && region.querySelector("[data-htmx-failed]");
  if (!note) return;
  note.hidden = !failed;
  if (failed) region.querySelectorAll("[data-htmx-loading]").forEach((el) => { el.hidden = true; });
}
document.addEventListener("htmx:responseError", (event) => markRegion(event, true));
document.addEventListener("htmx:sendError", (event) => markRegion(event, true));
document.addEventListener("htmx:afterSwap", (event) => markRegion(event, false));

// Destructive forms ask first: <form data-confirm="Delete this?">. A native confirm() is
// keyboard- and screen-reader-friendly and needs no inline handler.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
