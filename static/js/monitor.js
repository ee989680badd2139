// The professor's monitor (templates/sessions/monitor.html) over `/ws/sessions/<id>/monitor/`.
//
// The server renders every room with its latest lines and `last_seq`; the socket reconnects with
// `?after_seq=`, so the lines said in between are replayed once (lines are keyed by segment id,
// and realtime.js drops seqs it has seen). Each room card keeps its latest `lines_per_room`
// lines. The steering console sends its commands over the socket when it is open (broadcast,
// teaching mode, hint); its forms also work as plain POSTs without JavaScript or while
// disconnected. Ending the session is a confirmed POST.

import { connect } from "./realtime.js";
import { escapeHtml } from "./markdown.js";
import { clock, insertBySeq, lineElement, upgradeMarkdown } from "./room.js";
import { initLectureMic } from "./voice.js";

const SOCKET_TEXT = { connecting: "Connecting…", open: "Live", reconnecting: "Reconnecting…", closed: "Disconnected" };
const STATUS_TEXT = { draft: "Draft", live: "Live", ended: "Ended" };

/** Whether a tutor reply counts as an alert on its room (failed, or an off-topic redirect). */
export function isAlert(message) {
  if (message.type !== "tutor.message") return false;
  const data = message.data || {};
  return data.status === "failed" || data.guardrail === "off_topic";
}

export function initMonitor(root = document) {
  const configNode = root.getElementById("monitor-config");
  const grid = root.getElementById("room-grid");
  if (!configNode || !grid) return null;
  const config = JSON.parse(configNode.textContent);
  const perRoom = config.lines_per_room || 8;
  const modes = config.modes || {};
  const tutorStatuses = config.tutor_statuses || {};
  const pill = root.getElementById("monitor-socket");
  const consoleStatus = root.getElementById("console-status");
  const announcer = root.getElementById("monitor-announcer");

  const cards = new Map(); // room id -> card <li>
  const seen = new Set(); // segment ids shown
  for (const card of grid.querySelectorAll("[data-room-id]")) {
    cards.set(Number(card.dataset.roomId), card);
    for (const li of card.querySelectorAll("li[data-segment-id]")) seen.add(li.dataset.segmentId);
    const time = card.querySelector("[data-last-activity]");
    if (time && time.getAttribute("datetime")) time.textContent = clock(time.getAttribute("datetime")) || time.textContent;
  }
  upgradeMarkdown(grid);
  const radar = initRadar(root);
  let sessionStatus = config.status;
  let socketStatus = "connecting";

  function say(text, kind = "info") {
    if (!consoleStatus) return;
    consoleStatus.textContent = text;
    consoleStatus.dataset.kind = kind;
  }

  function touch(card, ts) {
    const time = card.querySelector("[data-last-activity]");
    if (!time) return;
    time.setAttribute("datetime", ts || new Date().toISOString());
    time.textContent = clock(ts) || new Date().toLocaleTimeString();
  }

  function addAlert(card, roomName) {
    const count = Number(card.dataset.alerts || 0) + 1;
    card.dataset.alerts = String(count);
    card.classList.add("has-alerts");
    const badge = card.querySelector("[data-alert-badge]");
    if (badge) {
      badge.hidden = false;
      badge.innerHTML = `<span data-alert-count>${count}</span> alert${count === 1 ? "" : "s"}`;
    }
    if (announcer) announcer.textContent = `Alert in ${roomName}`;
  }

  function line(message) {
    const data = message.data || {};
    const card = cards.get(data.room_id);
    if (!card) return;
    const key = String(data.segment_id);
    if (seen.has(key)) return;
    seen.add(key);
    const list = card.querySelector("[data-lines]");
    insertBySeq(list, lineElement(message, { compact: true }));
    while (list.children.length > perRoom) list.firstElementChild.remove();
    card.querySelector("[data-empty]").hidden = true;
    touch(card, message.ts);
    card.classList.remove("is-fresh");
    void card.offsetWidth; // restart the highlight animation
    card.classList.add("is-fresh");
    if (isAlert(message)) addAlert(card, card.querySelector("[data-room-name]")?.textContent || "a room");
  }

  function applyRoom(row) {
    const card = cards.get(row.id);
    if (!card) return;
    const name = card.querySelector("[data-room-name]");
    if (name && row.name) name.textContent = row.name;
    const topic = card.querySelector("[data-room-topic]");
    if (topic) {
      topic.textContent = row.topic || "";
      topic.hidden = !row.topic;
    }
    const mode = card.querySelector("[data-room-mode]");
    if (mode && row.teaching_mode) {
      mode.className = `badge badge-mode badge-mode-${row.teaching_mode}`;
      mode.textContent = modes[row.teaching_mode] || row.teaching_mode;
    }
    const tutor = card.querySelector("[data-tutor-status]");
    if (tutor && row.tutor_status) {
      tutor.className = `badge badge-tutor-${row.tutor_status}`;
      tutor.textContent = `Tutor: ${tutorStatuses[row.tutor_status] || row.tutor_status}`;
      if (row.tutor_error) tutor.title = row.tutor_error;
      else tutor.removeAttribute("title");
    }
    const error = card.querySelector("[data-tutor-error]");
    if (error) {
      error.textContent = row.tutor_error || "";
      error.hidden = !row.tutor_error;
    }
    const students = card.querySelector("[data-students]");
    if (students && Array.isArray(row.students)) {
      students.innerHTML = row.students.length
        ? row.students.map((s) => `<li class="chip" data-student-id="${Number(s.id)}">${escapeHtml(s.name)}</li>`).join("")
        : '<li class="chip chip-empty muted">No students</li>';
    }
    if (row.last_activity_at) {
      const time = card.querySelector("[data-last-activity]");
      if (time) {
        time.setAttribute("datetime", row.last_activity_at);
        time.textContent = clock(row.last_activity_at) || time.textContent;
      }
    }
  }

  function applySession(data) {
    if (data.status) {
      sessionStatus = data.status;
      const badge = root.querySelector("[data-session-status]");
      if (badge) {
        badge.className = `badge badge-${data.status}`;
        badge.textContent = STATUS_TEXT[data.status] || data.status;
      }
      root.getElementById("ended-banner").hidden = data.status !== "ended";
      root.getElementById("draft-banner").hidden = data.status !== "draft";
      for (const button of root.querySelectorAll("#console button, #console textarea, #console select")) {
        button.disabled = data.status === "ended";
      }
    }
    if (data.teaching_mode) {
      const mode = root.querySelector("[data-session-mode]");
      if (mode) {
        mode.className = `badge badge-mode badge-mode-${data.teaching_mode}`;
        mode.textContent = modes[data.teaching_mode] || data.teaching_mode;
      }
    }
    if (typeof data.hint === "string") {
      const state = root.querySelector("[data-hint-state]");
      if (state) state.textContent = data.hint ? "A hint is active." : "No hint.";
    }
    if (Array.isArray(data.rooms)) {
      for (const row of data.rooms) applyRoom(row);
      const banner = root.getElementById("degraded-banner");
      const tutors = (data.degraded && data.degraded.tutors) || {};
      const rows = Object.entries(tutors).map(([roomId, reason]) => {
        const room = data.rooms.find((r) => String(r.id) === roomId);
        return `<li><strong>${escapeHtml(room ? room.name : `Room ${roomId}`)} tutor</strong>: ${escapeHtml(reason)}</li>`;
      });
      if (data.degraded && data.degraded.transcription) {
        rows.push(`<li><strong>Transcription</strong>: ${escapeHtml(data.degraded.transcription)}</li>`);
      }
      if (banner) {
        banner.querySelector("[data-degraded-list]").innerHTML = rows.join("");
        banner.hidden = rows.length === 0;
      }
    }
  }

  const lecture = initLectureBlock(root, perRoom);

  function onMessage(message) {
    const data = message.data || {};
    lecture.onMessage(message);
    switch (message.type) {
      case "transcript.final":
      case "tutor.message":
      case "room.broadcast":
        line(message);
        break;
      case "room.status":
        applyRoom(data);
        break;
      case "session.status":
        applySession(data);
        break;
      case "alert.confusion":
        radar?.alert(data);
        break;
      case "analytics.update":
        radar?.update(data);
        break;
      case "error":
        say(data.message || "The server refused that.", "error");
        break;
      default:
        break;
    }
  }

  function showSocket() {
    if (!pill) return;
    pill.hidden = false;
    pill.dataset.status = socketStatus;
    pill.textContent = SOCKET_TEXT[socketStatus] || socketStatus;
  }

  const socket = connect(config.ws_path, {
    afterSeq: Number.isInteger(config.last_seq) ? config.last_seq : undefined,
    onMessage,
    onStatus: (status) => {
      socketStatus = status;
      showSocket();
    },
    onClose: (event) => {
      if (event.code === 4000) {
        applySession({ status: "ended" });
        socket.close();
      } else if (event.code === 4401 || event.code === 4403 || event.code === 4404) {
        say("This session is no longer yours to monitor. Reload the page.", "error");
      }
    },
  });

  // The lecture mic (voice.js): the professor's speech to /ws/sessions/<id>/lecture/.
  initLectureMic(root.getElementById("lecture-mic"), { sessionId: config.session_id, connect });

  const canUseSocket = () => socketStatus === "open" && sessionStatus === "live";
  const target = (value) => (/^\d+$/.test(value) ? Number(value) : "all");
  const targetName = (select) => select.options[select.selectedIndex]?.textContent || "all rooms";

  const broadcast = root.getElementById("broadcast-form");
  broadcast?.addEventListener("submit", (event) => {
    if (!canUseSocket()) return; // a plain POST instead
    event.preventDefault();
    const text = broadcast.elements.text.value.trim();
    if (!text) {
      say("Write something to broadcast.", "error");
      return;
    }
    socket.send("room.broadcast", { room_id: target(broadcast.elements.room_id.value), text });
    broadcast.elements.text.value = "";
    say(`Sent to ${targetName(broadcast.elements.room_id).toLowerCase()}.`);
  });

  const modeForm = root.getElementById("mode-form");
  modeForm?.addEventListener("submit", (event) => {
    if (!canUseSocket()) return;
    event.preventDefault();
    const mode = modeForm.elements.mode.value;
    socket.send("session.mode", { mode, room_id: target(modeForm.elements.room_id.value) });
    say(`${modes[mode] || mode} mode: ${targetName(modeForm.elements.room_id).toLowerCase()}.`);
  });

  const hint = root.getElementById("hint-form");
  hint?.addEventListener("submit", (event) => {
    if (!canUseSocket()) return;
    event.preventDefault();
    const clear = event.submitter && event.submitter.name === "clear";
    const text = clear ? "" : hint.elements.text.value.trim();
    if (clear) hint.elements.text.value = "";
    socket.send("tutor.hint", { text });
    say(text ? "Hint pushed to every tutor." : "Hint cleared.");
  });

  // "Clarify for everyone" (a form per radar topic): over the socket when open, else a plain POST.
  root.getElementById("radar")?.addEventListener("submit", (event) => {
    const form = event.target.closest("[data-clarify-form]");
    if (!form || !canUseSocket()) return;
    event.preventDefault();
    const topic = form.elements.topic.value;
    const text = form.elements.text.value.trim();
    socket.send("confusion.clarify", text ? { topic, text } : { topic });
    form.elements.text.value = "";
    form.closest("details")?.removeAttribute("open");
    say(`Every tutor will clarify ${topic}; the rooms were told.`);
  });

  const end = root.getElementById("end-form");
  end?.addEventListener("submit", (event) => {
    // A plain POST (it redirects to the session page), once confirmed.
    if (!window.confirm("End the session for every room? Students can no longer write.")) event.preventDefault();
  });

  showSocket();
  return { socket };
}

// --- Confusion radar (#radar; alert.confusion and analytics.update, analytics/live.py) ---------------

const ALERTS_SHOWN = 10;

/** A radar topic row, as templates/sessions/_radar_topic.html renders it. */
export function radarTopicElement(row, { maxCount, action, csrf, index, textMax }) {
  const li = document.createElement("li");
  li.dataset.topic = row.topic;
  const id = `clarify-text-js-${index}`;
  li.innerHTML = `
    <div class="radar-topic-head">
      <h3 class="radar-topic-name">${escapeHtml(row.topic)}</h3>
      <span class="radar-count" data-radar-count></span>
    </div>
    <meter class="radar-bar" min="0" data-radar-bar></meter>
    <ul class="chips radar-rooms" aria-label="Rooms" data-radar-rooms></ul>
    <p class="small muted radar-students" data-radar-students></p>
    <p class="small radar-clarified" data-radar-clarified hidden></p>
    <details class="radar-clarify">
      <summary class="button button-secondary button-small">Clarify for everyone</summary>
      <form method="post" action="${escapeHtml(action)}" class="console-form" data-clarify-form>
        <input type="hidden" name="csrfmiddlewaretoken" value="${escapeHtml(csrf)}">
        <input type="hidden" name="topic" value="${escapeHtml(row.topic)}">
        <label for="${id}">Message to every room (optional)</label>
        <textarea id="${id}" name="text" rows="2" maxlength="${Number(textMax) || 1000}" placeholder="Left empty: your tutor will go over ${escapeHtml(row.topic)} again briefly."></textarea>
        <button type="submit" class="button button-primary button-small">Send to every room and tutor</button>
      </form>
    </details>`;
  fillRadarTopic(li, row, maxCount);
  return li;
}

/** Update a topic row in place (an open clarify form keeps its text). */
export function fillRadarTopic(li, row, maxCount) {
  const plural = row.count === 1 ? "" : "s";
  li.className = `radar-topic${row.clarified ? " is-clarified" : ""}`;
  li.querySelector("[data-radar-count]").textContent = `${row.count} signal${plural}`;
  const bar = li.querySelector("[data-radar-bar]");
  bar.max = Math.max(1, maxCount);
  bar.value = row.count;
  bar.textContent = String(row.count);
  bar.setAttribute("aria-label", `${row.count} signal${plural} about ${row.topic}`);
  li.querySelector("[data-radar-rooms]").innerHTML = (row.rooms || [])
    .map((r) => `<li class="chip">${escapeHtml(r.name)} · ${Number(r.count)}</li>`)
    .join("");
  li.querySelector("[data-radar-students]").textContent = (row.students || []).map((s) => s.name).join(", ");
  const clarified = li.querySelector("[data-radar-clarified]");
  if (row.clarified) {
    const since = row.since_clarified ? ` · ${Number(row.since_clarified)} new since` : "";
    clarified.innerHTML = `Clarified by ${escapeHtml(row.clarified.by?.name || "you")} at <time datetime="${escapeHtml(row.clarified.at)}">${escapeHtml(clock(row.clarified.at))}</time>${since}`;
    clarified.hidden = false;
  } else {
    clarified.hidden = true;
  }
}

/** An alert, as templates/sessions/_radar_alert.html renders it. */
export function radarAlertElement(alert) {
  const li = document.createElement("li");
  li.className = "radar-alert";
  li.dataset.alertKey = `${alert.segment_id}-${alert.signal}`;
  const label = alert.signal_label || alert.signal || "";
  const kind = label ? ` <span class="muted small radar-signal">(${escapeHtml(label)})</span>` : "";
  li.innerHTML = `
    <p class="radar-alert-meta small">
      <strong>${escapeHtml(alert.student?.name || "A student")}</strong> in ${escapeHtml(alert.room_name || "a room")}
      <span class="badge badge-topic">${escapeHtml(alert.topic)}</span>
      <time datetime="${escapeHtml(alert.at)}">${escapeHtml(clock(alert.at))}</time>
    </p>
    <p class="radar-evidence">“${escapeHtml(alert.evidence)}”${kind}</p>
    <p class="small"><a href="${escapeHtml(alert.line_url || "#")}">See the line<span class="visually-hidden"> ${escapeHtml(alert.student?.name || "")} said in ${escapeHtml(alert.room_name || "")}</span></a></p>`;
  return li;
}

export function initRadar(root) {
  const section = root.getElementById("radar");
  if (!section) return null;
  const topics = section.querySelector("[data-radar-topics]");
  const alerts = section.querySelector("[data-radar-alerts]");
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
  const action = section.dataset.clarifyUrl || "";
  let created = 0;
  for (const time of section.querySelectorAll("time[datetime]")) time.textContent = clock(time.getAttribute("datetime")) || time.textContent;

  function alert(data) {
    const key = `${data.segment_id}-${data.signal}`;
    if (alerts.querySelector(`[data-alert-key="${CSS.escape(key)}"]`)) return;
    const li = radarAlertElement(data);
    li.classList.add("is-new");
    alerts.prepend(li);
    while (alerts.children.length > ALERTS_SHOWN) alerts.lastElementChild.remove();
    section.querySelector("[data-radar-alerts-empty]").hidden = true;
  }

  function update(data) {
    const rows = Array.isArray(data.radar) ? data.radar : [];
    const maxCount = Math.max(1, ...rows.map((r) => r.count));
    const existing = new Map([...topics.children].map((li) => [li.dataset.topic, li]));
    rows.forEach((row, i) => {
      let li = existing.get(row.topic);
      if (li) {
        fillRadarTopic(li, row, maxCount);
        existing.delete(row.topic);
      } else {
        li = radarTopicElement(row, { maxCount, action, csrf, index: created++, textMax: section.dataset.textMax });
      }
      // The server's order; a row already in place is not moved (a form being typed in keeps focus).
      const at = topics.children[i] || null;
      if (at !== li) topics.insertBefore(li, at);
    });
    for (const li of existing.values()) li.remove();
    section.querySelector("[data-radar-empty]").hidden = rows.length > 0;
    if (data.window_minutes) section.querySelector("[data-radar-window]").textContent = String(data.window_minutes);
    if (Array.isArray(data.alerts)) syncAlerts(data.alerts);
  }

  /** The alert list as `items` (newest first), inserting only what is new: the list is
   * aria-live, so an alert already shown is never re-added (nor read out again). */
  function syncAlerts(items) {
    const byKey = new Map([...alerts.children].map((li) => [li.dataset.alertKey, li]));
    items.forEach((item, i) => {
      const key = `${item.segment_id}-${item.signal}`;
      const at = alerts.children[i] || null;
      if (at && at.dataset.alertKey === key) return;
      alerts.insertBefore(byKey.get(key) || radarAlertElement(item), at);
    });
    while (alerts.children.length > items.length) alerts.lastElementChild.remove();
    section.querySelector("[data-radar-alerts-empty]").hidden = alerts.children.length > 0;
  }

  return { alert, update };
}

// voice-live: the lecture's lines (room_id null) with the partial being said, and STT engine
// switches (`voice.engine`: a failed engine and the one that took over, or none: browsers then
// recognise speech themselves).
export function initLectureBlock(root = document, keep = 8) {
  const list = root.getElementById("lecture-lines");
  const partial = root.getElementById("lecture-partial");
  const engine = root.getElementById("voice-engine");
  const empty = root.querySelector("[data-lecture-empty]");
  const seen = new Set(list ? [...list.querySelectorAll("li[data-segment-id]")].map((li) => Number(li.dataset.segmentId)) : []);
  function onMessage(message) {
    const data = message.data || {};
    if (message.type === "voice.engine" && engine) {
      const where = data.room_id ? `room ${data.room_id}` : "the lecture";
      engine.textContent = data.to
        ? `Speech recognition (${where}): ${data.from} failed (${data.reason}); ${data.to} took over.`
        : `Speech recognition (${where}): ${data.from || "every engine"} failed (${data.reason}); browsers recognise speech themselves.`;
      engine.hidden = false;
      return;
    }
    if (data.room_id !== null || !list) return;
    if (message.type === "transcript.partial" && partial) {
      partial.textContent = `${data.speaker ? data.speaker.name : "Professor"}: ${data.text} …`;
      partial.hidden = !data.text;
    } else if (message.type === "transcript.final" && !seen.has(data.segment_id)) {
      seen.add(data.segment_id);
      const li = root.createElement("li");
      li.dataset.segmentId = data.segment_id;
      li.innerHTML = `<time>${escapeHtml(clock(message.ts) || "")}</time> <strong>${escapeHtml(data.speaker ? data.speaker.name : "")}</strong>: ${escapeHtml(data.text || "")}`;
      list.append(li);
      while (list.children.length > keep) list.firstElementChild.remove();
      if (partial) partial.hidden = true;
      if (empty) empty.hidden = true;
    }
  }
  return { onMessage };
}

if (typeof document !== "undefined" && document.getElementById("monitor-config")) {
  initMonitor();
}
