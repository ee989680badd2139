// The microphone's AudioWorklet (loaded by voice.js): the context's audio (usually 48 kHz float)
// in, PCM16 LE mono 16 kHz out, in 20 ms frames of 320 samples, each with its RMS level:
//
//   port.onmessage = ({ data }) => { data.pcm /* ArrayBuffer, 640 bytes */; data.level /* 0..1 */ }
//
// Downsampling: a 4th-order low-pass (two Butterworth biquads at 7 kHz, below the 8 kHz Nyquist
// of 16 kHz) against aliasing, then decimation with a fractional step (48000 / 16000 = 3,
// 44100 / 16000 = 2.75625) and linear interpolation between neighbouring samples. State carries
// over between render quanta (128 samples), so frames join without clicks.
//
// `Downsampler` is exported so Node can test it (tests/voice/test_voice_js.py); in the worklet
// scope `registerProcessor` exists and the processor is registered.

export const TARGET_RATE = 16000;
export const FRAME_SAMPLES = 320; // 20 ms at 16 kHz

class Biquad {
  constructor(sampleRate, cutoff, q) {
    const w = (2 * Math.PI * cutoff) / sampleRate;
    const alpha = Math.sin(w) / (2 * q);
    const cos = Math.cos(w);
    const a0 = 1 + alpha;
    this.b0 = (1 - cos) / 2 / a0;
    this.b1 = (1 - cos) / a0;
    this.b2 = this.b0;
    this.a1 = (-2 * cos) / a0;
    this.a2 = (1 - alpha) / a0;
    this.x1 = this.x2 = this.y1 = this.y2 = 0;
  }

  step(x) {
    const y = this.b0 * x + this.b1 * this.x1 + this.b2 * this.x2 - this.a1 * this.y1 - this.a2 * this.y2;
    this.x2 = this.x1;
    this.x1 = x;
    this.y2 = this.y1;
    this.y1 = y;
    return y;
  }
}

export class Downsampler {
  constructor(inputRate, { targetRate = TARGET_RATE, frameSamples = FRAME_SAMPLES } = {}) {
    this.inputRate = inputRate;
    this.step = inputRate / targetRate; // input samples per output sample
    this.frameSamples = frameSamples;
    // Butterworth 4th order = two biquads with Q 0.5412 and 1.3066.
    const cutoff = Math.min(7000, 0.45 * targetRate, 0.45 * inputRate);
    this.filters = this.step > 1 ? [new Biquad(inputRate, cutoff, 0.5412), new Biquad(inputRate, cutoff, 1.3066)] : [];
    this.position = 0; // where the next output sample lies, in input samples from `previous`
    this.previous = 0; // the last filtered input sample of the previous block
    this.frame = new Int16Array(frameSamples);
    this.filled = 0;
    this.sumSquares = 0;
  }

  /** Feed float samples (-1..1); returns the finished frames: [{pcm: Int16Array, level}]. */
  push(input) {
    const frames = [];
    const filtered = new Float32Array(input.length);
    for (let i = 0; i < input.length; i += 1) {
      let x = input[i];
      for (const filter of this.filters) x = filter.step(x);
      filtered[i] = x;
    }
    // Positions count from `previous` (0): sample k of this block is at k + 1.
    const end = input.length;
    while (this.position < end) {
      const index = Math.floor(this.position);
      const left = index === 0 ? this.previous : filtered[index - 1];
      const right = filtered[index];
      this.emit(left + (right - left) * (this.position - index), frames);
      this.position += this.step;
    }
    this.position -= end;
    if (end > 0) this.previous = filtered[end - 1];
    return frames;
  }

  emit(value, frames) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.frame[this.filled] = clipped < 0 ? Math.round(clipped * 32768) : Math.round(clipped * 32767);
    this.sumSquares += clipped * clipped;
    this.filled += 1;
    if (this.filled === this.frameSamples) {
      frames.push({ pcm: this.frame, level: Math.sqrt(this.sumSquares / this.frameSamples) });
      this.frame = new Int16Array(this.frameSamples);
      this.filled = 0;
      this.sumSquares = 0;
    }
  }
}

if (typeof registerProcessor === "function") {
  class PcmCaptureProcessor extends AudioWorkletProcessor {
    constructor() {
      super();
      // `sampleRate` is the context's rate, a global of the worklet scope.
      this.downsampler = new Downsampler(sampleRate); // eslint-disable-line no-undef
    }

    process(inputs) {
      const channels = inputs[0];
      if (channels && channels.length) {
        // Mono: the first channel (getUserMedia asked for one; a stereo device gives two equal ones).
        for (const frame of this.downsampler.push(channels[0])) {
          this.port.postMessage({ pcm: frame.pcm.buffer, level: frame.level }, [frame.pcm.buffer]);
        }
      }
      return true; // keep running while the node is connected
    }
  }

  registerProcessor("pcm-capture", PcmCaptureProcessor);
}
