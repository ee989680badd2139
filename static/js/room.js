// A breakout room's page (templates/sessions/room.html) over `/ws/rooms/<id>/` (docs/protocol.md).
//
// The server renders the transcript so far and `last_seq`; realtime.js reconnects with
// `?after_seq=` so every line said since arrives exactly once. Lines are keyed by segment id
// (persisted) or message id (a tutor reply still streaming), so a replayed or repeated event
// never shows twice. The room's students write here (`chat.message`) and can stop the tutor's
// streaming reply (`tutor.interrupt`); the professor and staff read along.
//
// `lineElement(event)` builds one transcript line from a persisted event; the monitor
// (monitor.js) uses it too, so a line looks the same in both places and as the server renders
// it (templates/sessions/_live_line.html).

import { connect } from "./realtime.js";
import { escapeHtml, renderMarkdown } from "./markdown.js";
import { citationLabel } from "./chat.js";
import { initVoiceBar } from "./voice.js";

export const UNAVAILABLE_TEXT = "The tutor is unavailable right now; the students' lines are saved.";

// --- Lines (shared with the monitor) ----------------------------------------------------------

function safeUrl(url) {
  return typeof url === "string" && /^(https?:\/\/|\/(?!\/))/i.test(url) ? url : "";
}

function citationsHtml(citations) {
  if (!Array.isArray(citations) || citations.length === 0) return "";
  const items = citations.map((c) => {
    const label = escapeHtml(citationLabel(c));
    const url = safeUrl(c.url);
    return url
      ? `<li class="citation"><a href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">${label}<span class="visually-hidden"> (opens in a new tab)</span></a></li>`
      : `<li class="citation"><span>${label}</span></li>`;
  });
  return `<div class="citations"><p class="citations-title">Sources</p><ul class="citation-list">${items.join("")}</ul></div>`;
}

/** The kind of speaker a persisted event shows: student, tutor or professor. */
export function lineKind(event) {
  if (event.type === "tutor.message") return "tutor";
  if (event.type === "room.broadcast") return "professor";
  return (event.data && event.data.speaker && event.data.speaker.kind) || "student";
}

/**
 * An <li> for a persisted line ({type, seq, data}) or a streaming reply ({type: "local.streaming",
 * data: {message_id, text, thinking}}). `compact`: the monitor's short form (no citations).
 */
export function lineElement(event, { compact = false, tutorName = "Tutor" } = {}) {
  const data = event.data || {};
  const streaming = event.type === "local.streaming";
  const kind = streaming ? "tutor" : lineKind(event);
  const tutor = kind === "tutor";
  const status = streaming ? "streaming" : data.status || "complete";
  const li = document.createElement("li");
  const classes = ["live-line", `live-line-${kind}`];
  if (event.type === "room.broadcast") classes.push("live-line-broadcast");
  if (data.guardrail === "off_topic") classes.push("is-off-topic");
  if (status !== "complete") classes.push(`is-${status}`);
  li.className = classes.join(" ");
  if (data.segment_id) li.dataset.segmentId = String(data.segment_id);
  if (Number.isInteger(event.seq)) li.dataset.seq = String(event.seq);
  if (Number.isInteger(event.seq) && !compact) li.id = `seq-${event.seq}`; // the radar links here
  if (data.message_id) li.dataset.messageId = String(data.message_id);
  li.dataset.event = event.type;
  li.dataset.kind = kind;
  li.dataset.status = status;
  li.setAttribute("aria-busy", streaming ? "true" : "false");

  const name = streaming ? tutorName : (data.speaker && data.speaker.name) || (tutor ? tutorName : "Someone");
  const badges = [];
  if (event.type === "room.broadcast") badges.push('<span class="badge badge-broadcast">From the professor</span>');
  if (tutor && data.offline) badges.push('<span class="badge badge-offline">Offline tutor</span>');
  if (tutor && data.guardrail === "off_topic") badges.push('<span class="badge badge-offtopic">Redirected: off topic</span>');
  if (tutor && status === "interrupted") badges.push('<span class="badge badge-muted">Stopped</span>');
  if (tutor && status === "failed") badges.push('<span class="badge badge-failed">Not answered</span>');

  const parts = [`<p class="live-line-meta"><span class="live-speaker">${escapeHtml(name)}</span>${badges.join("")}</p>`];
  if (streaming && data.thinking && !data.text) {
    parts.push(
      `<div class="thinking" aria-hidden="true"><span></span><span></span><span></span></div><span class="visually-hidden">${escapeHtml(tutorName)} is thinking</span>`,
    );
  } else if (tutor) {
    parts.push(`<div class="live-line-body markdown" data-text>${renderMarkdown(data.text || "")}</div>`);
  } else {
    parts.push(`<div class="live-line-body" data-text>${escapeHtml(data.text || "")}</div>`);
  }
  if (tutor && status === "failed") parts.push(`<p class="bubble-failed">${UNAVAILABLE_TEXT}</p>`);
  if (tutor && data.notice) parts.push(`<p class="bubble-notice">${escapeHtml(data.notice)}</p>`);
  if (tutor && !compact) parts.push(citationsHtml(data.citations));
  li.innerHTML = parts.join("");
  return li;
}

/** Server-rendered tutor lines: plain escaped text until upgraded to Markdown here. */
export function upgradeMarkdown(root) {
  for (const body of root.querySelectorAll("[data-markdown].is-plain")) {
    body.innerHTML = renderMarkdown(body.textContent);
    body.classList.remove("is-plain");
    body.classList.add("markdown");
  }
}

/** Insert `li` keeping the list in seq order (lines without a seq go last). */
export function insertBySeq(list, li) {
  const seq = li.dataset.seq ? Number(li.dataset.seq) : null;
  if (seq !== null) {
    for (const other of list.children) {
      const otherSeq = other.dataset.seq ? Number(other.dataset.seq) : null;
      if (otherSeq === null || otherSeq > seq) {
        list.insertBefore(li, other);
        return;
      }
    }
  }
  list.appendChild(li);
}

/** Local time of an ISO timestamp, or "" if it is not one. */
export function clock(iso) {
  const when = iso ? new Date(iso) : null;
  return when && !Number.isNaN(when.getTime()) ? when.toLocaleTimeString() : "";
}

const SOCKET_TEXT = { connecting: "Connecting…", open: "Connected", reconnecting: "Reconnecting…", closed: "Disconnected" };
const PERSISTED = new Set(["transcript.final", "tutor.message", "room.broadcast"]);

// --- The room page (browser only) ---------------------------------------------------------------

export function initRoom(root = document) {
  const configNode = root.getElementById("room-config");
  const list = root.getElementById("room-transcript");
  if (!configNode || !list) return null;
  const config = JSON.parse(configNode.textContent);
  const tutorName = config.tutor_name || "Tutor";
  const page = root.getElementById("room");
  const scroller = root.getElementById("room-scroll") || list;
  const empty = root.getElementById("room-empty");
  const captions = root.getElementById("captions");
  const pill = root.getElementById("room-socket");
  const form = root.getElementById("room-composer");
  const input = root.getElementById("room-input");
  const send = root.getElementById("room-send");
  const stop = root.getElementById("room-stop");
  const errorBox = root.getElementById("room-error");
  const announcer = root.getElementById("room-announcer");
  const modeBadge = root.querySelector("[data-room-mode]");

  let socketStatus = "connecting";
  let sessionStatus = config.session_status;
  let generating = null; // message id of the reply streaming now
  let stopping = false;
  let pending = null; // the text sent, until it comes back as our line (or an error)
  let pendingTimer = 0;
  let away = false; // moved out or ended: nothing more to send here
  const streamText = new Map(); // message id -> text so far

  upgradeMarkdown(list);

  const bySegment = new Map();
  const byMessage = new Map();
  for (const li of list.querySelectorAll("li[data-segment-id]")) {
    bySegment.set(li.dataset.segmentId, li);
    if (li.dataset.messageId) byMessage.set(li.dataset.messageId, li);
  }

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }

  function place(li, { replace = null, follow = false } = {}) {
    const stick = follow || nearBottom();
    if (replace && replace.parentNode) replace.remove();
    insertBySeq(list, li);
    if (empty) empty.hidden = true;
    if (stick) scroller.scrollTop = scroller.scrollHeight;
  }

  function setCaptions(name, text, partial = false) {
    if (!captions) return;
    captions.classList.toggle("is-partial", partial);
    const shown = text.length > 240 ? `${text.slice(0, 239)}…` : text;
    captions.innerHTML = `<span class="captions-speaker">${escapeHtml(name)}:</span> ${escapeHtml(shown)}`;
  }

  function showError(message) {
    if (!errorBox) return;
    errorBox.querySelector("[data-error-text]").textContent = message;
    errorBox.hidden = !message;
  }

  function releasePending() {
    pending = null;
    clearTimeout(pendingTimer);
    if (input) input.readOnly = false;
  }

  function refreshComposer() {
    if (pill) {
      pill.hidden = false;
      pill.dataset.status = socketStatus;
      pill.textContent = SOCKET_TEXT[socketStatus] || socketStatus;
    }
    if (!form) return;
    const live = sessionStatus === "live" && !away;
    input.disabled = !live;
    send.disabled = !(live && socketStatus === "open" && pending === null && input.value.trim() !== "");
    stop.hidden = generating === null || !live;
    stop.disabled = stopping;
    stop.firstChild.textContent = stopping ? "Stopping…" : "Stop";
  }

  function setSessionStatus(status) {
    sessionStatus = status;
    if (page) page.dataset.sessionStatus = status;
    root.getElementById("room-state-draft").hidden = status !== "draft";
    root.getElementById("room-state-ended").hidden = status !== "ended";
    if (status === "ended") {
      generating = null;
      for (const li of list.querySelectorAll("li[data-status='streaming']")) li.remove();
    }
    refreshComposer();
  }

  function setMode(mode) {
    if (!modeBadge || !mode) return;
    modeBadge.className = `badge badge-mode badge-mode-${mode}`;
    modeBadge.textContent = (config.modes && config.modes[mode]) || mode;
  }

  function applyRoom(row) {
    const name = root.querySelector("[data-room-name]");
    if (name && row.name) name.textContent = row.name;
    const topic = root.querySelector("[data-room-topic]");
    if (topic) {
      topic.hidden = !row.topic;
      topic.querySelector("[data-topic-text]").textContent = row.topic || "";
    }
    const goal = root.querySelector("[data-room-goal]");
    if (goal) {
      goal.hidden = !row.goal;
      goal.textContent = row.goal || "";
    }
    setMode(row.teaching_mode);
    const people = root.querySelector("[data-people]");
    if (people && Array.isArray(row.students)) {
      for (const li of people.querySelectorAll("li[data-student-id]")) li.remove();
      for (const student of row.students) {
        const li = document.createElement("li");
        li.className = "person";
        li.dataset.studentId = String(student.id);
        li.innerHTML = `<span class="person-name">${escapeHtml(student.name)}</span>`;
        people.appendChild(li);
      }
    }
    const tutorBadge = root.querySelector("[data-tutor-status]");
    if (tutorBadge && row.tutor_status) tutorBadge.className = `badge badge-tutor-${row.tutor_status}`;
    const tutorError = root.querySelector("[data-tutor-error]");
    if (tutorError) tutorError.hidden = row.tutor_status !== "failed";
  }

  function persisted(message) {
    const data = message.data || {};
    if (data.room_id !== undefined && data.room_id !== null && data.room_id !== config.room_id) return;
    const key = String(data.segment_id);
    if (bySegment.has(key)) return; // already shown (rendered by the server, or replayed)
    const li = lineElement(message, { tutorName });
    let replace = null;
    if (message.type === "tutor.message" && data.message_id) {
      replace = byMessage.get(String(data.message_id)) || null;
      byMessage.set(String(data.message_id), li);
      streamText.delete(data.message_id);
      if (generating === data.message_id) {
        generating = null;
        stopping = false;
      }
      if (announcer) announcer.textContent = "";
    }
    bySegment.set(key, li);
    const own = message.type === "transcript.final" && data.speaker && data.speaker.id === config.user_id;
    place(li, { replace, follow: own });
    setCaptions((data.speaker && data.speaker.name) || tutorName, data.text || "");
    if (own && pending !== null) {
      releasePending();
      input.value = "";
      showError("");
    }
  }

  function streaming(messageId, changes) {
    const key = String(messageId);
    const current = byMessage.get(key);
    if (current && current.dataset.status !== "streaming") return; // already final
    const text = changes.text ?? streamText.get(messageId) ?? "";
    streamText.set(messageId, text);
    const li = lineElement(
      { type: "local.streaming", data: { message_id: messageId, text, thinking: changes.thinking } },
      { tutorName },
    );
    byMessage.set(key, li);
    if (current) {
      current.replaceWith(li);
      if (nearBottom()) scroller.scrollTop = scroller.scrollHeight;
    } else {
      place(li);
    }
    generating = messageId;
  }

  let voice = null; // the microphone and the tutor's voice (voice.js), when the page has them

  function onMessage(message) {
    const data = message.data || {};
    if (voice && voice.handleMessage(message)) return;
    switch (message.type) {
      case "transcript.final":
      case "tutor.message":
      case "room.broadcast":
        persisted(message);
        break;
      case "transcript.partial":
        if (!data.room_id || data.room_id === config.room_id) {
          setCaptions((data.speaker && data.speaker.name) || "", data.text || "", true);
        }
        break;
      case "tutor.thinking":
        streaming(data.message_id, { text: "", thinking: true });
        if (announcer) announcer.textContent = `${tutorName} is thinking`;
        break;
      case "tutor.delta": {
        const before = data.restart ? "" : streamText.get(data.message_id) || "";
        streaming(data.message_id, { text: before + (data.text || ""), thinking: false });
        break;
      }
      case "room.status":
        if (data.id === config.room_id) {
          applyRoom(data);
          if (data.session_status) setSessionStatus(data.session_status);
        }
        break;
      case "session.status": {
        const row = Array.isArray(data.rooms) ? data.rooms.find((r) => r.id === config.room_id) : null;
        if (row) applyRoom(row);
        if (data.status) setSessionStatus(data.status);
        break;
      }
      case "room.moved": {
        away = true;
        const notice = root.getElementById("room-state-moved");
        if (data.to_room) {
          notice.textContent = "Your professor moved you to another room. Opening it…";
          notice.hidden = false;
          window.location.assign(`/rooms/${Number(data.to_room)}/`);
        } else {
          notice.innerHTML = 'Your professor took you out of this room. <a href="/">Back to your courses</a>';
          notice.hidden = false;
        }
        break;
      }
      case "error":
        releasePending();
        showError(data.message || "Something went wrong.");
        break;
      default:
        break;
    }
    refreshComposer();
  }

  const socket = connect(config.ws_path, {
    afterSeq: Number.isInteger(config.last_seq) ? config.last_seq : undefined,
    onMessage,
    onBinary: (buffer) => voice && voice.handleBinary(buffer),
    onStatus: (status) => {
      socketStatus = status;
      if (voice) voice.socketStatus(status);
      if (status !== "open") releasePending();
      refreshComposer();
    },
    onClose: (event) => {
      if (event.code === 4000) {
        setSessionStatus("ended");
        socket.close();
      } else if (event.code === 4409) {
        socket.close(); // room.moved came first and says where to
        if (!away) window.location.reload();
      } else if (event.code === 4401 || event.code === 4403 || event.code === 4404) {
        showError("This room is no longer available to you. Reload the page.");
      } else if (event.code === 4429) {
        showError("Too many messages too fast. Reload the page in a moment.");
      }
    },
  });

  voice = initVoiceBar(root.querySelector("[data-voice]"), {
    socket,
    onCaption: (text, partial, data) => {
      if (partial && !data) setCaptions("You", text, true); // the browser's own recognition
    },
  });

  function submit() {
    if (send.disabled) return;
    const text = input.value.trim();
    if (!text) return;
    if (text.length > (config.max_chars || 4000)) {
      showError(`At most ${config.max_chars} characters, please shorten your message.`);
      return;
    }
    pending = text;
    input.readOnly = true;
    showError("");
    socket.send("chat.message", { text });
    // No echo (a lost frame): give the box back rather than freeze it.
    pendingTimer = setTimeout(() => {
      releasePending();
      refreshComposer();
    }, 15000);
    refreshComposer();
  }

  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    input.addEventListener("input", refreshComposer);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        submit();
      }
    });
    stop.addEventListener("click", () => {
      if (generating === null) return;
      stopping = true;
      socket.send("tutor.interrupt", {});
      refreshComposer();
    });
    errorBox?.querySelector("[data-action='dismiss']")?.addEventListener("click", () => {
      showError("");
      input.focus();
    });
  }

  refreshComposer();
  scroller.scrollTop = scroller.scrollHeight;
  return { socket, voice, isPersisted: (type) => PERSISTED.has(type) };
}

if (typeof document !== "undefined" && document.getElementById("room-config")) {
  initRoom();
}
