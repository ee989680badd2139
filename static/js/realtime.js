// Real-time client for the portal and room pages (docs/protocol.md). A plain ES module, no build:
//
//   import { connect } from "/static/js/realtime.js";
//   const socket = connect("/ws/sessions/5/monitor/", {
//     onMessage: (message) => console.log(message.type, message.data),  // {type, seq, ts, data}
//     onStatus: (status) => badge.textContent = status,  // "connecting" | "open" | "closed"
//   });
//   socket.send("room.broadcast", { room_id: "all", text: "Five minutes left" });
//   socket.close();
//
// It reconnects after a dropped connection with exponential backoff and full jitter, remembers
// the highest `seq` it has seen and reconnects with `?after_seq=N`, so the server replays every
// persisted event the page missed; replayed duplicates (seq <= last) are dropped here. Close
// codes that mean "do not come back" (4000 session ended, 4401, 4403, 4404, 4409 moved to another
// room, 4429) stop the reconnecting.

const FINAL_CLOSE_CODES = new Set([4000, 4401, 4403, 4404, 4409, 4429]);

/** Absolute ws(s):// URL for a path on this site, or the URL unchanged if already absolute. */
export function wsUrl(pathOrUrl) {
  if (/^wss?:\/\//.test(pathOrUrl)) return pathOrUrl;
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${pathOrUrl}`;
}

/** Full-jitter backoff: a random delay in [0, min(max, base * 2^attempt)). */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 30000 } = {}) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.floor(Math.random() * ceiling);
}

/**
 * Open a WebSocket and keep it open.
 *
 * options:
 *   onMessage(message)  every server message, in order, without replayed duplicates
 *   onStatus(status)    "connecting", "open", "closed" (final), "reconnecting"
 *   onClose(event)      each close, with event.code (e.g. 4403) and event.reason
 *   onBinary(buffer)    each binary frame, an ArrayBuffer (server speech: voice.js)
 *   afterSeq            the last seq the page already has (e.g. rendered server-side)
 *   ticket()            async function returning a fresh join ticket (native clients only;
 *                       browsers on this site authenticate with the session cookie)
 *   baseDelayMs, maxDelayMs   backoff bounds (500 ms, 30 s)
 */
export function connect(url, options = {}) {
  const {
    onMessage = () => {},
    onStatus = () => {},
    onClose = () => {},
    onBinary = () => {},
    ticket = null,
    baseDelayMs = 500,
    maxDelayMs = 30000,
  } = options;
  let lastSeq = Number.isInteger(options.afterSeq) ? options.afterSeq : null;
  let attempt = 0;
  let socket = null;
  let timer = null;
  let stopped = false;
  const queue = []; // messages sent while disconnected, flushed on open (the latest 100)

  async function open() {
    if (stopped) return;
    onStatus(attempt === 0 ? "connecting" : "reconnecting");
    const target = new URL(wsUrl(url));
    if (lastSeq !== null) target.searchParams.set("after_seq", String(lastSeq));
    if (ticket) {
      try {
        target.searchParams.set("ticket", await ticket());
      } catch (error) {
        scheduleReconnect();
        return;
      }
    }
    socket = new WebSocket(target.toString());
    socket.binaryType = "arraybuffer";

    socket.addEventListener("open", () => {
      attempt = 0;
      onStatus("open");
      while (queue.length && socket.readyState === WebSocket.OPEN) socket.send(queue.shift());
    });

    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") {
        onBinary(event.data); // binary frames belong to the audio code
        return;
      }
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (Number.isInteger(message.seq)) {
        if (lastSeq !== null && message.seq <= lastSeq) return; // replayed duplicate
        lastSeq = message.seq;
      }
      onMessage(message);
    });

    socket.addEventListener("close", (event) => {
      socket = null;
      onClose(event);
      if (stopped || FINAL_CLOSE_CODES.has(event.code)) {
        stopped = true;
        onStatus("closed");
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (stopped) return;
    const delay = backoffDelay(attempt, { baseMs: baseDelayMs, maxMs: maxDelayMs });
    attempt += 1;
    onStatus("reconnecting");
    timer = setTimeout(open, delay);
  }

  open();

  return {
    /** Send `{type, data}`; queued while reconnecting. */
    send(type, data = {}) {
      const frame = JSON.stringify({ type, data });
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(frame);
      else if (queue.push(frame) > 100) queue.shift();
    },
    /** Send a binary frame (audio) if connected; dropped otherwise (audio is live, not queued). */
    sendBinary(bytes) {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(bytes);
    },
    /** The highest seq received so far (null before any persisted event). */
    get lastSeq() {
      return lastSeq;
    },
    /** Close for good: no reconnect. */
    close() {
      stopped = true;
      clearTimeout(timer);
      if (socket) socket.close(1000);
      onStatus("closed");
    },
  };
}
