// Voice in and out for the room, practice chat and monitor pages (docs/protocol.md, "Voice").
//
//   import { VoiceIO, initVoiceBar } from "./voice.js";
//   const voice = initVoiceBar(document.querySelector("[data-voice]"), { socket });
//   // in the socket's callbacks (realtime.js connect):
//   onMessage: (m) => voice.handleMessage(m),  onBinary: (b) => voice.handleBinary(b),
//   onStatus: (s) => voice.socketStatus(s),
//
// In: the microphone through an AudioWorklet (pcm-worklet.js) that makes 20 ms frames of PCM16
// 16 kHz; each frame is one binary WebSocket message. Mute and stop send `audio.end`. When the
// server has no speech recognition (`error` stt_unavailable) or the user picks "browser", the Web
// Speech API listens instead and its text goes as `transcript.client` {text, is_final}.
// Out: `tts.audio` announces a sentence of PCM16 at `sample_rate`; the binary frames after it are
// scheduled back to back on one AudioContext (no gaps); `tts.speak` is read by speechSynthesis;
// `tts.stop` silences everything at once; after `tts.end`, once the reply has played, the client
// answers `tts.done` {message_id}.

const WORKLET_URL = new URL("./pcm-worklet.js", import.meta.url);
const START_AHEAD_SECONDS = 0.06; // scheduling slack for the first chunk of a sentence
const INTERIM_EVERY_MS = 350; // transcript.client interim results: under 3 a second (rate limit)
const SPEECH_MODE_KEY = "voice.speech";

/** PCM16 LE bytes to float samples in -1..1 (an odd trailing byte is ignored). */
export function int16ToFloat32(buffer) {
  const samples = new Int16Array(buffer, 0, Math.floor(buffer.byteLength / 2));
  const out = new Float32Array(samples.length);
  for (let i = 0; i < samples.length; i += 1) out[i] = samples[i] / 32768;
  return out;
}

/** A meter reading (0..1) for an RMS level: a square root, so quiet speech still moves it. */
export function meterValue(level) {
  return Math.max(0, Math.min(1, Math.sqrt(Math.max(0, level)) * 1.6));
}

// --- Speech out -------------------------------------------------------------------------------

/** Plays the server's speech: PCM sentences gaplessly, or text through speechSynthesis. */
export class SpeechPlayer {
  constructor({ onDone = () => {}, audioContext = null } = {}) {
    this.onDone = onDone; // (messageId) => void: the reply finished playing
    this.context = audioContext;
    this.current = null; // {messageId, sampleRate} of the sentence whose frames come now
    this.nextTime = 0; // context time where the next chunk starts
    this.sources = new Set();
    this.speaking = new Map(); // message id -> utterances not yet finished
    this.ended = new Set(); // message ids whose tts.end came, waiting for playback to finish
    this.timer = 0;
  }

  /** Create or resume the AudioContext; call from a user gesture (autoplay rules). */
  unlock() {
    if (!this.context) {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return null;
      this.context = new Context();
    }
    if (this.context.state === "suspended") this.context.resume().catch(() => {});
    return this.context;
  }

  audio(data) {
    this.current = { messageId: data.message_id, sampleRate: Number(data.sample_rate) || 24000 };
  }

  binary(buffer) {
    if (!this.current || !(buffer instanceof ArrayBuffer) || buffer.byteLength < 2) return;
    const context = this.unlock();
    if (!context) return;
    const samples = int16ToFloat32(buffer);
    const audioBuffer = context.createBuffer(1, samples.length, this.current.sampleRate);
    audioBuffer.copyToChannel(samples, 0);
    const source = context.createBufferSource();
    source.buffer = audioBuffer;
    source.connect(context.destination);
    const start = Math.max(this.nextTime, context.currentTime + START_AHEAD_SECONDS);
    source.start(start);
    this.nextTime = start + audioBuffer.duration;
    this.sources.add(source);
    source.onended = () => this.sources.delete(source);
  }

  speak(data) {
    const synth = window.speechSynthesis;
    if (!synth || typeof SpeechSynthesisUtterance === "undefined" || !data.text) return;
    const utterance = new SpeechSynthesisUtterance(data.text);
    if (data.voice) {
      const voice = synth.getVoices().find((v) => v.name === data.voice);
      if (voice) utterance.voice = voice;
    }
    const id = data.message_id;
    this.speaking.set(id, (this.speaking.get(id) || 0) + 1);
    const finished = () => {
      const left = (this.speaking.get(id) || 1) - 1;
      if (left > 0) this.speaking.set(id, left);
      else this.speaking.delete(id);
      this.check();
    };
    utterance.onend = finished;
    utterance.onerror = finished;
    synth.speak(utterance);
  }

  end(data) {
    this.ended.add(data.message_id);
    this.check();
  }

  /** Silence now: scheduled audio, queued speech, everything still to come of this reply. */
  stop() {
    for (const source of this.sources) {
      try {
        source.stop();
      } catch (error) {
        // already stopped
      }
    }
    this.sources.clear();
    this.current = null; // frames still in flight are dropped until the next tts.audio
    this.nextTime = 0;
    this.speaking.clear();
    this.ended.clear();
    clearTimeout(this.timer);
    if (window.speechSynthesis) window.speechSynthesis.cancel();
  }

  check() {
    clearTimeout(this.timer);
    const now = this.context ? this.context.currentTime : 0;
    const left = Math.max(0, this.nextTime - now);
    for (const id of [...this.ended]) {
      if (left > 0.01 || this.speaking.has(id)) continue;
      this.ended.delete(id);
      this.onDone(id);
    }
    if (this.ended.size && left > 0.01) this.timer = setTimeout(() => this.check(), left * 1000 + 30);
  }
}

// --- Voice in and out on one socket ------------------------------------------------------------

export class VoiceIO {
  /**
   * socket: realtime.js connection (send, sendBinary). Callbacks: onLevel(0..1),
   * onState({listening, muted, recognition}), onNotice(text), onCaption(text, partial).
   */
  constructor({ socket, onLevel = () => {}, onState = () => {}, onNotice = () => {}, onCaption = null } = {}) {
    this.socket = socket;
    this.onLevel = onLevel;
    this.onState = onState;
    this.onNotice = onNotice;
    this.onCaption = onCaption;
    this.player = new SpeechPlayer({ onDone: (id) => this.socket.send("tts.done", { message_id: id }) });
    this.listening = false;
    this.muted = false;
    this.recognition = "server"; // or "browser": the Web Speech API
    this.speech = "off"; // voice.config tts: "off" | "server" | "browser"
    this.stream = null;
    this.context = null;
    this.node = null;
    this.sentAudio = false; // frames went out since the last audio.end
    this.recognizer = null;
    this.lastInterim = 0;
  }

  static browserRecognitionSupported() {
    return typeof window !== "undefined" && Boolean(window.SpeechRecognition || window.webkitSpeechRecognition);
  }

  state() {
    this.onState({ listening: this.listening, muted: this.muted, recognition: this.recognition, speech: this.speech });
  }

  /** Microphone on: permission, worklet, frames to the socket. Throws if the page cannot. */
  async start() {
    if (this.listening) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("This browser cannot use a microphone here (it needs HTTPS).");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    const Context = window.AudioContext || window.webkitAudioContext;
    this.context = new Context();
    await this.context.audioWorklet.addModule(WORKLET_URL);
    const sourceNode = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "pcm-capture", { numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1 });
    this.node.port.onmessage = ({ data }) => this.frame(data);
    sourceNode.connect(this.node);
    if (this.context.state === "suspended") await this.context.resume();
    this.player.unlock();
    this.listening = true;
    this.muted = false;
    if (this.recognition === "browser") this.startRecognizer();
    this.state();
  }

  /** Microphone off: `audio.end`, the device released. */
  stop() {
    if (!this.listening) return;
    this.listening = false;
    this.endAudio();
    this.stopRecognizer();
    if (this.node) this.node.port.onmessage = null;
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.context) this.context.close().catch(() => {});
    this.stream = this.context = this.node = null;
    this.onLevel(0);
    this.state();
  }

  setMuted(muted) {
    if (!this.listening || this.muted === muted) return;
    this.muted = muted;
    if (muted) {
      this.endAudio();
      this.stopRecognizer();
      this.onLevel(0);
    } else if (this.recognition === "browser") {
      this.startRecognizer();
    }
    this.state();
  }

  /** "server": PCM frames to the server; "browser": the Web Speech API, text to the server. */
  setRecognition(kind) {
    if (kind === "browser" && !VoiceIO.browserRecognitionSupported()) {
      this.onNotice("This browser has no speech recognition of its own; please type instead.");
      return false;
    }
    if (kind === this.recognition) return true;
    this.recognition = kind;
    if (kind === "browser") {
      this.endAudio();
      if (this.listening && !this.muted) this.startRecognizer();
    } else {
      this.stopRecognizer();
    }
    this.state();
    return true;
  }

  /** Ask the server to speak replies: "server" (audio), "browser" (text to speak here) or "off". */
  setSpeech(mode) {
    this.speech = mode;
    if (mode !== "off") this.player.unlock();
    else this.player.stop();
    this.socket.send("voice.config", { tts: mode });
    this.state();
  }

  /** The socket (re)opened: a new server connection knows nothing of our choices. */
  socketStatus(status) {
    if (status === "open" && this.speech !== "off") this.socket.send("voice.config", { tts: this.speech });
    if (status !== "open") this.player.stop();
  }

  frame({ pcm, level }) {
    if (!this.listening || this.muted) return;
    this.onLevel(meterValue(level));
    if (this.recognition !== "server") return;
    this.socket.sendBinary(pcm);
    this.sentAudio = true;
  }

  endAudio() {
    if (this.sentAudio) this.socket.send("audio.end", {});
    this.sentAudio = false;
  }

  /** A server message; returns true when it was the voice's to handle. */
  handleMessage(message) {
    const data = message.data || {};
    switch (message.type) {
      case "tts.audio":
        this.player.audio(data);
        return true;
      case "tts.speak":
        this.player.speak(data);
        return true;
      case "tts.end":
        this.player.end(data);
        return true;
      case "tts.stop":
        this.player.stop();
        return true;
      case "transcript.partial":
        if (this.onCaption) this.onCaption(data.text || "", true, data);
        return false;
      case "transcript.final":
        if (this.onCaption) this.onCaption("", false, data);
        return false;
      case "error":
        if (data.code === "stt_unavailable") {
          const switched = this.listening && this.setRecognition("browser");
          this.onNotice(
            switched
              ? "Speech recognition on the server is unavailable; your browser listens instead."
              : "Speech recognition is unavailable right now; please type.",
          );
          return true;
        }
        if (data.code === "binary_not_supported" && this.listening) {
          this.stop(); // this route takes no audio: stop before the rate limit closes the socket
          this.onNotice("This page cannot take speech; please type.");
          return true;
        }
        return false;
      default:
        return false;
    }
  }

  handleBinary(buffer) {
    this.player.binary(buffer);
  }

  // -- the Web Speech API --

  startRecognizer() {
    if (this.recognizer) return;
    const Recognition = window.SpeechRecognition || window.webkitSpeechRecognition;
    if (!Recognition) return;
    const recognizer = new Recognition();
    recognizer.continuous = true;
    recognizer.interimResults = true;
    recognizer.lang = document.documentElement.lang || "en-US";
    recognizer.onresult = (event) => {
      let interim = "";
      for (let i = event.resultIndex; i < event.results.length; i += 1) {
        const result = event.results[i];
        const text = result[0].transcript.trim();
        if (!text) continue;
        if (result.isFinal) {
          this.socket.send("transcript.client", { text, is_final: true });
          if (this.onCaption) this.onCaption("", false, null);
        } else {
          interim = `${interim} ${text}`.trim();
        }
      }
      if (interim) {
        if (this.onCaption) this.onCaption(interim, true, null);
        const now = Date.now();
        if (now - this.lastInterim >= INTERIM_EVERY_MS) {
          this.lastInterim = now;
          this.socket.send("transcript.client", { text: interim, is_final: false });
        }
      }
    };
    recognizer.onerror = (event) => {
      if (event.error === "not-allowed" || event.error === "service-not-allowed") {
        this.onNotice("The browser refused speech recognition; please type instead.");
        this.recognizer = null;
      }
    };
    recognizer.onend = () => {
      // Chrome ends a session after a silence: listen again while the microphone is on.
      if (this.recognizer === recognizer && this.listening && !this.muted && this.recognition === "browser") {
        setTimeout(() => {
          if (this.recognizer === recognizer) {
            try {
              recognizer.start();
            } catch (error) {
              this.recognizer = null;
            }
          }
        }, 250);
      }
    };
    this.recognizer = recognizer;
    try {
      recognizer.start();
    } catch (error) {
      this.recognizer = null;
    }
  }

  stopRecognizer() {
    const recognizer = this.recognizer;
    this.recognizer = null;
    if (recognizer) {
      try {
        recognizer.abort();
      } catch (error) {
        // already stopped
      }
    }
  }
}

// --- The controls (templates: a [data-voice] block) ---------------------------------------------

function permissionMessage(error) {
  if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) {
    return "Microphone access was refused. Allow it in the browser's site settings, or type instead.";
  }
  if (error && error.name === "NotFoundError") return "No microphone was found.";
  return (error && error.message) || "The microphone could not start.";
}

/**
 * Wire a [data-voice] block: [data-voice-mic] (start/stop), [data-voice-mute], [data-voice-level]
 * (a <meter>), [data-voice-speech] (a <select>: off/server/browser), [data-voice-recognition]
 * (a <select>: server/browser), [data-voice-status] (role=status), [data-voice-caption] (the
 * grey live caption; pages with their own captions pass `onCaption` instead).
 */
export function initVoiceBar(container, { socket, onCaption = null } = {}) {
  if (!container || !socket) return null;
  const mic = container.querySelector("[data-voice-mic]");
  const mute = container.querySelector("[data-voice-mute]");
  const meter = container.querySelector("[data-voice-level]");
  const speech = container.querySelector("[data-voice-speech]");
  const recognition = container.querySelector("[data-voice-recognition]");
  const status = container.querySelector("[data-voice-status]");
  const caption = container.querySelector("[data-voice-caption]");
  const micLabel = mic ? mic.querySelector("[data-label]") || mic : null;
  let levelFrame = 0;
  let levelValue = 0;

  const notice = (text) => {
    if (status) status.textContent = text;
  };

  const showCaption =
    onCaption ||
    ((text, partial) => {
      if (!caption) return;
      caption.textContent = partial ? text : "";
      caption.hidden = !partial || !text;
    });

  const voice = new VoiceIO({
    socket,
    onNotice: notice,
    onCaption: showCaption,
    onLevel: (value) => {
      levelValue = value;
      if (!meter || levelFrame) return;
      levelFrame = requestAnimationFrame(() => {
        levelFrame = 0;
        meter.value = levelValue;
      });
    },
    onState: ({ listening, muted, recognition: kind }) => {
      container.dataset.listening = listening ? "true" : "false";
      if (mic) {
        // The label says what a press does ("Stop microphone"), so no aria-pressed as well.
        mic.dataset.state = listening ? "on" : "off";
        micLabel.textContent = listening
          ? mic.dataset.stopLabel || "Stop microphone"
          : mic.dataset.startLabel || "Start microphone";
      }
      if (mute) {
        mute.hidden = !listening;
        mute.dataset.state = muted ? "on" : "off";
        mute.textContent = muted ? "Unmute" : "Mute";
      }
      if (meter) meter.hidden = !listening;
      if (recognition) recognition.value = kind;
    },
  });

  if (recognition && !VoiceIO.browserRecognitionSupported()) {
    const option = recognition.querySelector("option[value='browser']");
    if (option) option.disabled = true;
  }

  mic?.addEventListener("click", async () => {
    if (voice.listening) {
      voice.stop();
      notice("Microphone off.");
      return;
    }
    mic.disabled = true;
    notice("Starting the microphone…");
    try {
      await voice.start();
      notice(voice.recognition === "browser" ? "Listening (browser recognition)." : "Listening.");
    } catch (error) {
      voice.stop();
      notice(permissionMessage(error));
    } finally {
      mic.disabled = false;
    }
  });

  mute?.addEventListener("click", () => {
    voice.setMuted(!voice.muted);
    notice(voice.muted ? "Muted: nothing is sent." : "Listening.");
  });

  recognition?.addEventListener("change", () => {
    if (!voice.setRecognition(recognition.value)) recognition.value = voice.recognition;
  });

  if (speech) {
    let saved = "off";
    try {
      saved = window.localStorage.getItem(SPEECH_MODE_KEY) || "off";
    } catch (error) {
      // storage blocked: start silent
    }
    if ([...speech.options].some((o) => o.value === saved)) speech.value = saved;
    // Restoring a choice is not a user gesture: audio starts on the next click anywhere.
    if (speech.value !== "off") {
      voice.speech = speech.value;
      document.addEventListener("click", () => voice.player.unlock(), { once: true });
    }
    speech.addEventListener("change", () => {
      voice.setSpeech(speech.value);
      try {
        window.localStorage.setItem(SPEECH_MODE_KEY, speech.value);
      } catch (error) {
        // not remembered: fine
      }
    });
  }

  voice.state();
  window.addEventListener("pagehide", () => voice.stop());
  return voice;
}

/**
 * The monitor's "Lecture mic": its own socket to /ws/sessions/<id>/lecture/, opened on start and
 * closed on stop; it only sends audio (captions of the lecture come back on the monitor socket).
 */
export function initLectureMic(container, { sessionId, connect }) {
  if (!container || !sessionId) return null;
  let socket = null;
  let voice = null;
  const status = container.querySelector("[data-voice-status]");
  const mic = container.querySelector("[data-voice-mic]");

  const fakeSocket = {
    send: (type, data) => socket && socket.send(type, data),
    sendBinary: (bytes) => socket && socket.sendBinary(bytes),
  };

  mic?.addEventListener(
    "click",
    () => {
      if (!socket) {
        socket = connect(`/ws/sessions/${Number(sessionId)}/lecture/`, {
          onMessage: (message) => voice && voice.handleMessage(message),
          onClose: (event) => {
            if (event.code === 4403 || event.code === 4404) {
              if (status) status.textContent = "The lecture microphone is not available for this session.";
              if (voice) voice.stop();
            }
          },
        });
      }
    },
    { capture: true }, // the socket exists before the voice bar's own click handler starts the mic
  );

  voice = initVoiceBar(container, { socket: fakeSocket });
  mic?.addEventListener("click", () => {
    if (voice && !voice.listening && socket && !mic.disabled) {
      // Stopped: close the lecture socket once audio.end went out (close flushes what is buffered).
      const closing = socket;
      socket = null;
      setTimeout(() => closing.close(), 100);
    }
  });
  return voice;
}
