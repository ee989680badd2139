// Course materials on the course page: upload by drag and drop or the file picker (several files,
// one API request each, with upload progress), replace a document's file, then refresh the
// documents section, which polls itself (htmx) while an ingestion runs. The server checks every
// limit again; the checks here only save a useless upload.

const SECTION = "#documents";

function csrfToken() {
  try {
    return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  } catch {
    return "";
  }
}

function refreshSection() {
  const section = document.querySelector(SECTION);
  if (section && window.htmx) {
    window.htmx.ajax("GET", section.dataset.documentsUrl, { target: SECTION, swap: "outerHTML" });
  }
}

// Documents uploaded from this page that the list must show. htmx drops a refresh while the
// section's own poll is in flight, and a poll that left before an upload can land after it:
// after every swap, a list still missing one of them is fetched again.
const expected = new Set();
let retries = 0;

function expectDocument(id) {
  if (id) expected.add(String(id));
  retries = 0;
}

document.addEventListener("htmx:afterSettle", () => {
  const section = document.querySelector(SECTION);
  if (!section || !expected.size) return;
  const shown = new Set(Array.from(section.querySelectorAll("[data-document-id]"), (li) => li.dataset.documentId));
  for (const id of expected) if (shown.has(id)) expected.delete(id);
  // A few tries: a document deleted meanwhile (another tab) must not keep the page fetching.
  if (expected.size && retries < 10) {
    retries += 1;
    setTimeout(refreshSection, 400);
  } else {
    expected.clear();
  }
});

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

// One line per file in the queue: name, a progress bar for the upload, and what happened.
function queueItem(label) {
  const queue = document.querySelector(".upload-queue");
  const item = document.createElement("li");
  item.className = "upload-item";
  const name = document.createElement("span");
  name.textContent = label;
  const bar = document.createElement("div");
  bar.className = "progress";
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-label", `Upload of ${label}`);
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  bar.setAttribute("aria-valuenow", "0");
  const fill = document.createElement("span");
  fill.className = "progress-bar";
  fill.style.width = "0%";
  bar.append(fill);
  const status = document.createElement("span");
  status.className = "upload-status small";
  status.textContent = "Waiting…";
  item.append(name, bar, status);
  if (queue) queue.append(item);
  return {
    progress(percent) {
      const value = Math.round(percent);
      fill.style.width = `${value}%`;
      bar.setAttribute("aria-valuenow", String(value));
      status.textContent = `Uploading… ${value}%`;
    },
    done(text) {
      item.classList.add("is-done");
      bar.remove();
      status.textContent = text;
      window.setTimeout(() => item.remove(), 8000);
    },
    fail(text) {
      item.classList.add("is-failed");
      bar.remove();
      status.textContent = text;
    },
  };
}

function refusal(file, dropzone) {
  const extensions = (dropzone.dataset.extensions || "").split(",").filter(Boolean);
  const dot = file.name.lastIndexOf(".");
  const extension = dot >= 0 ? file.name.slice(dot).toLowerCase() : "";
  const maxBytes = Number(dropzone.dataset.maxBytes || 0);
  if (extensions.length && !extensions.includes(extension)) {
    return `${file.name} cannot be read: upload one of ${extensions.join(", ")}.`;
  }
  if (maxBytes && file.size > maxBytes) {
    return `${file.name} is ${megabytes(file.size)}; the limit is ${megabytes(maxBytes)}.`;
  }
  if (file.size === 0) return `${file.name} is empty.`;
  return "";
}

function send(method, url, file, item) {
  return new Promise((resolve) => {
    const body = new FormData();
    body.append("file", file);
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) item.progress((event.loaded / event.total) * 100);
    });
    xhr.addEventListener("load", () => {
      let answer = {};
      try {
        answer = JSON.parse(xhr.responseText || "{}");
      } catch {
        answer = {};
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        expectDocument(answer.id);
        item.done(`Uploaded. The tutor is reading it: see its progress below.`);
        resolve(true);
      } else {
        const message = answer.error && answer.error.message;
        item.fail(message || `The upload failed (HTTP ${xhr.status}). Try again.`);
        resolve(false);
      }
    });
    xhr.addEventListener("error", () => {
      item.fail("The server cannot be reached. Check your connection and try again.");
      resolve(false);
    });
    xhr.send(body);
  });
}

// Files go one after the other: a class's worth of slides must not open a dozen uploads at once.
let chain = Promise.resolve();

function upload(files, dropzone) {
  for (const file of files) {
    const item = queueItem(file.name);
    const reason = refusal(file, dropzone);
    if (reason) {
      item.fail(reason);
      continue;
    }
    chain = chain.then(() => send("POST", dropzone.dataset.uploadUrl, file, item)).then((sent) => {
      if (sent) refreshSection();
    });
  }
}

function replace(input) {
  const file = input.files && input.files[0];
  const dropzone = document.querySelector("[data-dropzone]");
  if (!file || !dropzone) return;
  const item = queueItem(`${input.dataset.title}: ${file.name}`);
  const reason = refusal(file, dropzone);
  input.value = "";
  if (reason) {
    item.fail(reason);
    return;
  }
  chain = chain.then(() => send("PUT", input.dataset.replaceUrl, file, item)).then((sent) => {
    if (sent) refreshSection();
  });
}

// Delegated listeners: the list is swapped by htmx; the tools are preserved (hx-preserve).
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || input.type !== "file") return;
  if (input.id === "document-files") {
    const dropzone = input.closest("[data-dropzone]");
    upload(Array.from(input.files || []), dropzone);
    input.value = "";
  } else if (input.dataset.replaceUrl) {
    replace(input);
  }
});

for (const type of ["dragenter", "dragover"]) {
  document.addEventListener(type, (event) => {
    const dropzone = event.target instanceof Element && event.target.closest("[data-dropzone]");
    if (!dropzone) return;
    event.preventDefault();
    dropzone.classList.add("is-dragging");
  });
}
document.addEventListener("dragleave", (event) => {
  const dropzone = event.target instanceof Element && event.target.closest("[data-dropzone]");
  if (dropzone && !dropzone.contains(event.relatedTarget)) dropzone.classList.remove("is-dragging");
});
document.addEventListener("drop", (event) => {
  const dropzone = event.target instanceof Element && event.target.closest("[data-dropzone]");
  if (!dropzone) return;
  event.preventDefault();
  dropzone.classList.remove("is-dragging");
  upload(Array.from((event.dataTransfer && event.dataTransfer.files) || []), dropzone);
});
