// The practice chat page (templates/sessions/conversation.html): a student's conversation with
// the course tutor over `/ws/conversations/<id>/`, the reply streamed token by token.
//
// Two halves:
//   - a pure reducer, `applyEvent(state, message) -> state`, that folds server events
//     ({type, seq, ts, data}) and local actions ("local.*") into plain data. It never touches the
//     DOM, so Node tests it directly (tests/sessions/test_chat_js.py);
//   - `initChat()`, the DOM wiring, run only in a browser. It hydrates the state from the
//     server-rendered transcript (the page works, read-only, before and without JavaScript),
//     connects with realtime.js (reconnect + `after_seq` replay), and re-renders what changed at
//     most once per animation frame, however fast the deltas come.
//
// State changes are immutable: a message entry that changed is a new object, so the renderer
// finds what to redraw by comparing references.

import { connect } from "./realtime.js";
import { escapeHtml, renderMarkdown } from "./markdown.js";
import { initVoiceBar } from "./voice.js";

const FINAL_STATUSES = new Set(["complete", "interrupted", "failed"]);
export const UNAVAILABLE_TEXT = "The tutor is unavailable right now; your message is saved.";

// --- State ------------------------------------------------------------------------------------

/**
 * The starting state. `messages` are persisted messages (oldest first), as rendered by the server:
 * {id, seq, role, text, status, ...}.
 */
export function initialState({ messages = [], maxChars = 4000, title = "", mode = "" } = {}) {
  const byId = {};
  const order = [];
  for (const message of messages) {
    const entry = normalise(message);
    byId[entry.id] = entry;
    order.push(entry.id);
  }
  return {
    socket: "connecting", // realtime.js onStatus: connecting | open | reconnecting | closed
    messages: byId, // message_id -> entry
    order, // message ids, by seq; replies still streaming (no seq yet) last
    generating: null, // the message_id of the reply being written, if any
    stopping: false, // Stop was pressed and the final message has not arrived yet
    retrying: false, // Retry was pressed and the new reply has not started yet
    draft: "", // what the composer holds
    pending: null, // the text sent and not yet echoed back (transcript.final) or refused (error)
    error: null, // {code, message}: shown beside the composer
    maxChars,
    title,
    mode,
    offlineOnly: null,
  };
}

function normalise(message) {
  return {
    id: message.id,
    seq: Number.isInteger(message.seq) ? message.seq : null,
    role: message.role || "tutor",
    text: message.text || "",
    status: message.status || "complete",
    thinking: Boolean(message.thinking),
    guardrail: message.guardrail || "",
    citations: Array.isArray(message.citations) ? message.citations : [],
    model: message.model || "",
    offline: Boolean(message.offline),
    notice: message.notice || "",
    error: message.error || null,
    speaker: message.speaker || "",
  };
}

function byOrder(messages) {
  return (a, b) => {
    const sa = messages[a].seq;
    const sb = messages[b].seq;
    if (sa === null && sb === null) return 0; // stable sort keeps arrival order
    if (sa === null) return 1;
    if (sb === null) return -1;
    return sa - sb;
  };
}

function upsert(state, id, changes, seq = null) {
  const existing = state.messages[id];
  const entry = existing ? { ...existing, ...changes } : normalise({ id, ...changes });
  if (Number.isInteger(seq)) entry.seq = seq;
  const messages = { ...state.messages, [id]: entry };
  const order = existing ? [...state.order] : [...state.order, id];
  order.sort(byOrder(messages));
  return { ...state, messages, order };
}

const isFinal = (entry) => Boolean(entry) && FINAL_STATUSES.has(entry.status);

/** Whether the composer can send now (Send is disabled otherwise). */
export function canSend(state) {
  return state.socket === "open" && state.pending === null && state.draft.trim() !== "";
}

/** The latest message, if it is a reply that can be asked again (failed or stopped). */
export function retryableId(state) {
  if (state.generating !== null || state.retrying || state.order.length === 0) return null;
  const last = state.messages[state.order[state.order.length - 1]];
  return last.role === "tutor" && (last.status === "failed" || last.status === "interrupted") ? last.id : null;
}

/**
 * Fold one event into the state and return the new state (the old one is left as it was).
 * Server events are `{type, seq, data}` envelopes; local actions use the same shape with a
 * "local." type: local.status {status}, local.draft {text}, local.send {}, local.interrupt {},
 * local.retry {}, local.dismiss {}.
 */
export function applyEvent(state, message) {
  const { type, seq = null } = message;
  const data = message.data || {};

  switch (type) {
    case "conversation.status": {
      let next = {
        ...state,
        title: data.title ?? state.title,
        mode: data.mode ?? state.mode,
        offlineOnly: typeof data.offline_only === "boolean" ? data.offline_only : state.offlineOnly,
      };
      const generating = data.generating ? data.generating.message_id : null;
      // A reply this page saw streaming that the server no longer writes was cut off while we
      // were away: its final message (if it was persisted) is replayed right after this event
      // and replaces this guess.
      for (const id of next.order) {
        const entry = next.messages[id];
        if (entry.status === "streaming" && id !== generating) {
          next = upsert(next, id, { status: "interrupted", thinking: false });
        }
      }
      if (generating !== null && !isFinal(next.messages[generating])) {
        const known = next.messages[generating];
        next = upsert(next, generating, { role: "tutor", status: "streaming", thinking: !known || !known.text });
      }
      return { ...next, generating, stopping: generating === null ? false : next.stopping };
    }

    case "transcript.final": {
      let next = upsert(
        state,
        data.message_id,
        {
          role: "student",
          text: data.text || "",
          status: "complete",
          guardrail: data.guardrail || "",
          speaker: (data.speaker && data.speaker.name) || "",
        },
        seq,
      );
      // Our message made it: the composer can let go of the text.
      if (state.pending !== null) next = { ...next, pending: null, draft: "", error: null };
      return next;
    }

    case "tutor.thinking": {
      if (isFinal(state.messages[data.message_id])) return state;
      const next = upsert(state, data.message_id, { role: "tutor", status: "streaming", thinking: true });
      return { ...next, generating: data.message_id, retrying: false };
    }

    case "tutor.delta": {
      const existing = state.messages[data.message_id];
      if (isFinal(existing)) return state; // a late delta after the final text: ignore
      // restart: a model failed half-way and the next one in the chain starts over.
      const before = existing && !data.restart ? existing.text : "";
      const next = upsert(state, data.message_id, {
        role: "tutor",
        status: "streaming",
        text: before + (data.text || ""),
        thinking: false,
      });
      return { ...next, generating: data.message_id, retrying: false };
    }

    case "tutor.message": {
      // Final and authoritative: the streamed text is replaced, not appended to. A duplicate
      // (replayed) final gives the same entry again.
      const next = upsert(
        state,
        data.message_id,
        {
          role: "tutor",
          text: data.text || "",
          status: data.status || "complete",
          thinking: false,
          citations: Array.isArray(data.citations) ? data.citations : [],
          guardrail: data.guardrail || "",
          model: data.model || "",
          offline: Boolean(data.offline),
          notice: data.notice || "",
          error: data.error || null,
        },
        seq,
      );
      const done = state.generating === data.message_id;
      return { ...next, generating: done ? null : state.generating, stopping: done ? false : state.stopping };
    }

    case "error":
      // The server refused something (too long, empty, rate limited...). The draft stays in the
      // composer, so nothing the student typed is lost.
      return { ...state, pending: null, retrying: false, error: { code: data.code || "error", message: data.message || "Something went wrong." } };

    case "local.status": {
      const next = { ...state, socket: data.status };
      // A closed socket will not echo anything any more; the draft is still in the composer.
      if (data.status === "closed") next.pending = null;
      return next;
    }

    case "local.draft":
      return { ...state, draft: String(data.text ?? "") };

    case "local.send": {
      if (!canSend(state)) return state;
      const text = state.draft.trim();
      if (text.length > state.maxChars) {
        return { ...state, error: { code: "message_too_long", message: `At most ${state.maxChars} characters, please shorten your message.` } };
      }
      return { ...state, pending: text, error: null };
    }

    case "local.interrupt":
      return state.generating === null ? state : { ...state, stopping: true };

    case "local.retry":
      return retryableId(state) === null ? state : { ...state, error: null, retrying: true };

    case "local.dismiss":
      return { ...state, error: null };

    default:
      return state; // pong, presence and whatever comes later: not the chat's business
  }
}

// --- Rendering helpers (pure: strings in, HTML strings out) ------------------------------------

/** "CS101 notes, p. 3 — Loops", the visible text of a citation. */
export function citationLabel(citation) {
  const parts = [citation.document || "Course notes"];
  if (citation.page !== null && citation.page !== undefined && citation.page !== "") parts[0] += `, p. ${citation.page}`;
  if (citation.heading) parts.push(citation.heading);
  return parts.join(" — ");
}

function citationHtml(citation) {
  const label = escapeHtml(citationLabel(citation));
  // Only http(s) and site-relative URLs become links (they come from the server, but the check
  // is cheap and keeps this function safe on its own).
  const url = typeof citation.url === "string" && /^(https?:\/\/|\/(?!\/))/i.test(citation.url) ? citation.url : "";
  const title = url
    ? `<a href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">${label}<span class="visually-hidden"> (opens in a new tab)</span></a>`
    : `<span>${label}</span>`;
  const snippet = citation.snippet ? `<blockquote class="citation-snippet">${escapeHtml(citation.snippet)}</blockquote>` : "";
  return `<li class="citation">${title}${snippet}</li>`;
}

/** The inner HTML of a message's <li>; the same structure the template renders. */
export function messageHtml(entry, { tutorName = "Tutor", studentName = "You" } = {}) {
  const tutor = entry.role === "tutor";
  const badges = [];
  if (tutor && entry.offline) badges.push('<span class="badge badge-offline">Offline tutor</span>');
  if (tutor && entry.guardrail === "off_topic") badges.push('<span class="badge badge-offtopic">Redirected: off topic</span>');
  if (tutor && entry.status === "interrupted") badges.push('<span class="badge badge-muted">Stopped</span>');
  if (tutor && entry.status === "failed") badges.push('<span class="badge badge-failed">Not answered</span>');
  const author = tutor ? tutorName : studentName;
  let body;
  if (entry.thinking && !entry.text) {
    body = `<div class="thinking" aria-hidden="true"><span></span><span></span><span></span></div><span class="visually-hidden">${escapeHtml(tutorName)} is thinking</span>`;
  } else {
    body = `<div class="bubble-body markdown">${renderMarkdown(entry.text)}</div>`;
  }
  const parts = [
    `<div class="bubble">`,
    `<p class="bubble-meta"><span class="bubble-author">${escapeHtml(author)}</span>${badges.join("")}</p>`,
    body,
  ];
  if (tutor && entry.status === "failed") {
    parts.push(`<p class="bubble-failed">${UNAVAILABLE_TEXT}</p>`);
  }
  if (tutor && entry.notice) parts.push(`<p class="bubble-notice">${escapeHtml(entry.notice)}</p>`);
  if (tutor && entry.citations.length) {
    parts.push(
      `<div class="citations"><p class="citations-title">Sources</p><ul class="citation-list">${entry.citations.map(citationHtml).join("")}</ul></div>`,
    );
  }
  if (tutor && (entry.status === "failed" || entry.status === "interrupted")) {
    parts.push(
      `<p class="bubble-actions" hidden><button type="button" class="button button-small button-secondary" data-action="retry">${entry.status === "failed" ? "Retry" : "Answer again"}</button></p>`,
    );
  }
  parts.push("</div>");
  return parts.join("");
}

export function messageClass(entry) {
  const classes = ["chat-message", `chat-message-${entry.role === "tutor" ? "tutor" : "student"}`];
  if (entry.status !== "complete") classes.push(`is-${entry.status}`);
  if (entry.guardrail === "off_topic") classes.push("is-off-topic");
  return classes.join(" ");
}

const STATUS_TEXT = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
};

// --- DOM wiring (browser only) -------------------------------------------------------------------

/**
 * The page's settings: a `{{ chat_config|json_script:"chat-config" }}` block if the view gives
 * one, else the chat panel's data-* attributes ({ws_path, last_seq, tutor_name, max_chars}).
 */
function readConfig(root) {
  const script = root.getElementById("chat-config");
  if (script) return JSON.parse(script.textContent);
  const panel = root.getElementById("chat");
  if (!panel) return null;
  const { wsPath, lastSeq, tutorName, maxChars } = panel.dataset;
  return {
    ws_path: wsPath,
    last_seq: lastSeq === undefined || lastSeq === "" ? null : Number(lastSeq),
    tutor_name: tutorName,
    max_chars: Number(maxChars) || 4000,
  };
}

/** Read the server-rendered transcript back into message entries. */
function hydrate(list) {
  return [...list.querySelectorAll("li[data-message-id]")].map((li) => ({
    id: Number(li.dataset.messageId),
    seq: li.dataset.seq ? Number(li.dataset.seq) : null,
    role: li.dataset.role,
    status: li.dataset.status,
    guardrail: li.dataset.guardrail,
    offline: li.dataset.offline === "true",
    text: li.querySelector("[data-text]")?.textContent ?? "",
  }));
}

export function initChat(root = document) {
  const config = readConfig(root);
  const list = root.getElementById("transcript");
  const scroller = root.getElementById("transcript-scroll") || list;
  const form = root.getElementById("composer");
  if (!config || !config.ws_path || !list || !form) return null;
  const input = form.querySelector("textarea");
  const send = root.getElementById("chat-send");
  const stop = root.getElementById("chat-stop");
  const pill = root.getElementById("chat-status");
  const counter = root.getElementById("chat-counter");
  const errorBox = root.getElementById("chat-error");
  const announcer = root.getElementById("chat-announcer");
  const empty = root.getElementById("transcript-empty");
  const titleNode = root.querySelector("[data-conversation-title]");
  const tutorName = config.tutor_name || "Tutor";

  let state = initialState({ messages: hydrate(list), maxChars: config.max_chars || 4000 });
  let rendered = { ...state, messages: {} }; // what the DOM shows now
  const nodes = new Map(); // message id -> <li>
  let frame = 0;
  let forceScroll = false;

  // Server-rendered messages: keep their markup (citations, badges), upgrade the text to Markdown.
  for (const li of list.querySelectorAll("li[data-message-id]")) {
    const id = Number(li.dataset.messageId);
    nodes.set(id, li);
    rendered.messages[id] = state.messages[id];
    const text = li.querySelector("[data-text]");
    if (text) {
      text.innerHTML = renderMarkdown(text.textContent);
      text.classList.remove("is-plain");
      text.classList.add("markdown");
    }
  }

  function dispatch(message) {
    state = applyEvent(state, message);
    if (!frame) frame = requestAnimationFrame(render);
  }

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }

  function render() {
    frame = 0;
    const stick = forceScroll || nearBottom();
    forceScroll = false;

    // Messages: new ones are appended, changed ones redrawn.
    for (const id of state.order) {
      const entry = state.messages[id];
      let li = nodes.get(id);
      if (li && rendered.messages[id] === entry) continue;
      const html = messageHtml(entry, { tutorName, studentName: entry.speaker || "You" });
      if (!li || (isFinal(entry) && li.dataset.status === "streaming")) {
        // A new node for a new message and for a finished reply: a polite live region reads
        // additions, so the reply is announced once, complete, not token by token.
        const fresh = document.createElement("li");
        if (li) li.replaceWith(fresh);
        li = fresh;
        nodes.set(id, li);
      }
      li.className = messageClass(entry);
      li.dataset.messageId = String(id);
      li.dataset.role = entry.role;
      li.dataset.status = entry.status;
      if (entry.seq !== null) li.dataset.seq = String(entry.seq);
      li.setAttribute("aria-busy", entry.status === "streaming" ? "true" : "false");
      li.innerHTML = html;
    }
    // Keep the DOM order in step with state.order (a reply gets its seq when final).
    let previous = null;
    for (const id of state.order) {
      const li = nodes.get(id);
      const expected = previous ? previous.nextElementSibling : list.firstElementChild;
      if (li !== expected) (previous ? previous.after(li) : list.prepend(li));
      previous = li;
    }
    if (empty) empty.hidden = state.order.length > 0;
    // Retry only on the latest reply, and not while a reply is on its way.
    const retryId = retryableId(state);
    for (const [id, li] of nodes) {
      const actions = li.querySelector(".bubble-actions");
      if (actions) actions.hidden = id !== retryId || state.socket !== "open";
    }

    // Thinking: said once, politely, outside the transcript.
    const thinkingNow = state.generating !== null && state.messages[state.generating]?.thinking;
    const thinkingBefore = rendered.generating !== null && rendered.messages[rendered.generating]?.thinking;
    if (announcer && thinkingNow && !thinkingBefore) announcer.textContent = `${tutorName} is thinking`;
    if (announcer && !thinkingNow && thinkingBefore) announcer.textContent = "";

    // Composer.
    if (input.value !== state.draft) input.value = state.draft;
    input.readOnly = state.pending !== null;
    form.setAttribute("aria-busy", state.pending !== null ? "true" : "false");
    send.disabled = !canSend(state);
    stop.hidden = state.generating === null;
    stop.disabled = state.stopping;
    stop.textContent = state.stopping ? "Stopping…" : "Stop";
    if (counter) {
      const used = state.draft.length;
      counter.textContent = `${used} / ${state.maxChars}`;
      counter.classList.toggle("is-near-limit", used > state.maxChars * 0.9);
    }
    if (errorBox) {
      const message = state.error ? state.error.message : "";
      if (errorBox.dataset.text !== message) {
        errorBox.dataset.text = message;
        errorBox.querySelector("[data-error-text]").textContent = message;
        errorBox.hidden = !message;
      }
      input.setAttribute("aria-invalid", state.error && state.error.code === "message_too_long" ? "true" : "false");
    }
    if (pill) {
      pill.hidden = false;
      pill.dataset.status = state.socket;
      pill.textContent = STATUS_TEXT[state.socket] || state.socket;
    }
    if (titleNode && state.title && titleNode.textContent !== state.title) titleNode.textContent = state.title;

    if (stick) scroller.scrollTop = scroller.scrollHeight;
    rendered = state;
  }

  let voice = null; // the microphone and the tutor's voice (voice.js)
  const socket = connect(config.ws_path, {
    afterSeq: Number.isInteger(config.last_seq) ? config.last_seq : undefined,
    onMessage: (message) => {
      if (voice && voice.handleMessage(message)) return;
      dispatch(message);
    },
    onBinary: (buffer) => voice && voice.handleBinary(buffer),
    onStatus: (status) => {
      if (voice) voice.socketStatus(status);
      dispatch({ type: "local.status", data: { status } });
    },
    onClose: (event) => {
      if (event.code === 4403 || event.code === 4404 || event.code === 4401) {
        dispatch({ type: "error", data: { code: "closed", message: "This conversation is no longer available to you. Reload the page." } });
      }
    },
  });

  voice = initVoiceBar(form.querySelector("[data-voice]"), { socket });

  function submit() {
    const before = state;
    dispatch({ type: "local.send" });
    if (state.pending !== null && before.pending === null) {
      forceScroll = true; // your own message: always follow it
      socket.send("chat.message", { text: state.pending });
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener("input", () => dispatch({ type: "local.draft", data: { text: input.value } }));
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a new line; never while an input method is composing a word.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  });
  stop.addEventListener("click", () => {
    dispatch({ type: "local.interrupt" });
    socket.send("tutor.interrupt", {});
  });
  list.addEventListener("click", (event) => {
    const button = event.target.closest("[data-action='retry']");
    if (!button) return;
    dispatch({ type: "local.retry" });
    input.focus(); // the button is about to disappear; keep focus somewhere useful
    forceScroll = true;
    socket.send("tutor.retry", {});
  });
  errorBox?.querySelector("[data-action='dismiss']")?.addEventListener("click", () => {
    dispatch({ type: "local.dismiss" });
    input.focus();
  });

  // The switcher starts folded on small screens, where it would push the chat off-screen.
  const switcher = root.querySelector(".chat-switcher");
  if (switcher && window.matchMedia("(max-width: 52rem)").matches) switcher.open = false;

  state = { ...state, draft: input.value };
  render();
  scroller.scrollTop = scroller.scrollHeight;
  return { socket, voice, getState: () => state, dispatch };
}

if (typeof document !== "undefined" && document.getElementById("composer")) {
  initChat();
}
