"""Audio ingest: N simulated speaking connections through VoiceInput in one process, at real pace.

Each stream replays real speech (espeak-ng sentences, 16 kHz PCM16) with pauses between
sentences, in 20 ms frames, each frame due at t0 + 20 ms x i; streams start at random offsets
within the first frame period. The delay of a frame is from its due time to when
`VoiceInput.feed()` returned: the time a real consumer would hold the next frame back. Three
pipelines per N, each in a fresh subprocess (so CPU and RSS are its own):

- `bare`: the same scheduling calling an empty coroutine (the baseline: asyncio itself);
- `vad`: VoiceInput with a null STT engine (frame checks, webrtcvad, utterance bookkeeping);
- `pocketsphinx`: VoiceInput with the real pocketsphinx engine, the sentences as keywords
  (decoders pooled, settings.VOICE_POCKETSPHINX_DECODERS; decoding in threads).

Reported per N: frame delay p50/p99/max, CPU% of one core (utime+stime over the load window,
threads and decoder processes included), RSS per stream (the process's RSS growth from before the
streams to the end, / N: VoiceInput's own state plus the delay samples, while the audio scripts
are made before; the decoder processes' RSS is a fixed cost, printed apart), and for
pocketsphinx the finals heard against utterances spoken and final latency (end of speech to
final) p50/p99. Ratios: p99 against `bare`. The largest N with p99 < 100 ms per pipeline.
The bench reports; it asserts nothing.

    .venv/bin/python bench/audio_ingest.py                      # N = 25,50,100,150,200; 20 s each
    .venv/bin/python bench/audio_ingest.py --quick              # N = 10, 5 s: a smoke run
    .venv/bin/python bench/audio_ingest.py --streams 100 --seconds 60 --pipelines vad
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAME_MS = 20
TARGET_P99_MS = 100.0
SENTENCES = (
    "what is recursion",
    "explain binary search",
    "why does recursion need a base case",
    "what is a linked list",
    "how does a hash table work",
    "can you give me an example",
)
PIPELINES = ("bare", "vad", "pocketsphinx")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds() -> float:
    """This process's CPU (threads included) plus its live children's (the decoder processes)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    me, tick = str(os.getpid()), os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def children_rss_bytes() -> int:
    me, total = str(os.getpid()), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[1] != me:
                    continue
            with open(f"/proc/{entry}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def script(rng: random.Random, seconds: float, speech: dict[str, bytes]) -> tuple[bytes, int]:
    """One stream's audio: pause, sentence, pause... for `seconds`; and how many sentences."""
    from tests.voice.audio_support import silence

    parts, total_ms, count = [silence(rng.randrange(0, 1500, 20))], 0, 0
    while True:
        sentence = speech[rng.choice(SENTENCES)]
        pause = silence(rng.randrange(900, 2500, 20))
        total_ms = sum(len(p) for p in parts) // 32
        if total_ms + (len(sentence) + len(pause)) // 32 > seconds * 1000:
            break
        parts += [sentence, pause]
        count += 1
    pcm = b"".join(parts)
    return pcm + silence(int(seconds * 1000) - len(pcm) // 32), count


class Listener:
    def __init__(self, latencies: list[int]):
        self.latencies = latencies
        self.finals = 0

    async def on_speech_start(self, *, start_ms):
        return None

    async def on_speech(self, *, voiced_ms):
        return None

    async def on_partial(self, transcript):
        return None

    async def on_final(self, utterance):
        self.finals += 1
        self.latencies.append(utterance.latency_ms)

    async def on_switch(self, *, from_engine, to_engine, reason):
        return None


async def run_one(pipeline: str, streams: int, seconds: float, seed: int) -> dict:
    """One pipeline with `streams` connections for `seconds` (in this process)."""
    from tests.voice.audio_support import speak
    from voice.pipeline import VoiceInput
    from voice.providers import NullSttEngine
    from voice.providers.base import StreamOptions, SttChain
    from voice.providers.pocketsphinx import PocketsphinxEngine, decoder_pool

    rng = random.Random(seed)
    speech = {text: speak(text) for text in SENTENCES}
    scripts = [script(rng, seconds, speech) for _ in range(streams)]
    spoken = sum(count for _, count in scripts)
    options = StreamOptions(keywords=SENTENCES)
    if pipeline == "pocketsphinx":  # load the decoders before measuring (a warm server)
        pool = decoder_pool()
        warm = [await pool.acquire() for _ in range(pool.size)]
        for decoder in warm:
            pool.release(decoder)

    rss_before, latencies = rss_bytes(), []
    listeners, inputs = [], []
    for _ in range(streams):
        listener = Listener(latencies)
        listeners.append(listener)
        if pipeline == "bare":
            inputs.append(None)
            continue
        engine = NullSttEngine() if pipeline == "vad" else PocketsphinxEngine()
        inputs.append(VoiceInput(chain=SttChain([engine]), options=options, listener=listener))

    delays: list[float] = []

    async def nothing(frame: bytes) -> None:
        return None

    async def stream(index: int, start: float) -> None:
        voice = inputs[index]
        feed = nothing if voice is None else voice.feed
        loop_time = loop.time
        pcm, size = scripts[index][0], FRAME_MS * 32
        for i in range(len(pcm) // size):
            due = start + i * FRAME_MS / 1000
            wait = due - loop_time()
            if wait > 0:
                await asyncio.sleep(wait)
            await feed(pcm[i * size : (i + 1) * size])  # a fresh bytes object, as off a socket
            delays.append(loop_time() - due)
        if voice is not None:
            await voice.end()

    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.5
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(stream(i, t0 + rng.random() * FRAME_MS / 1000) for i in range(streams)))
    cpu1, wall1 = cpu_seconds(), time.perf_counter()
    drain_started = time.perf_counter()
    for voice in inputs:
        if voice is not None:
            await voice.idle()
    drain = time.perf_counter() - drain_started
    rss_after = rss_bytes()
    for voice in inputs:
        if voice is not None:
            await voice.aclose()
    delays_ms = [d * 1000 for d in delays]
    return {
        "pipeline": pipeline, "streams": streams, "seconds": seconds, "frames": len(delays),
        "p50": percentile(delays_ms, 0.5), "p99": percentile(delays_ms, 0.99), "max": max(delays_ms),
        "cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "rss_per_stream_kib": (rss_after - rss_before) / streams / 1024,
        "rss_mib": rss_after / 2**20,
        "decoders_rss_mib": children_rss_bytes() / 2**20,
        "spoken": spoken, "finals": sum(listener.finals for listener in listeners),
        "final_p50": percentile(latencies, 0.5), "final_p99": percentile(latencies, 0.99),
        "drain_s": drain,
    }


def child(pipeline: str, streams: int, seconds: float, seed: int) -> dict:
    """Run one measurement in a fresh interpreter; its JSON result."""
    out = subprocess.run(
        [sys.executable, __file__, "--_one", pipeline, str(streams), str(seconds), str(seed)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="25,50,100,150,200", help="comma-separated N")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="N = 10 for 5 s")
    parser.add_argument("--_one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")
    if args._one:
        import django

        django.setup()
        pipeline, streams, seconds, seed = args._one
        result = asyncio.run(run_one(pipeline, int(streams), float(seconds), int(seed)))
        print(json.dumps(result))
        return

    counts = [10] if args.quick else [int(n) for n in args.streams.split(",")]
    seconds = 5.0 if args.quick else args.seconds
    pipelines = [p for p in args.pipelines.split(",") if p]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (nproc), Python {platform.python_version()}")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {seconds:g} s of audio per stream, 20 ms frames")
    header = (f"{'pipeline':<13}{'N':>5}{'frames':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
              f"{'p99/bare':>10}{'CPU %':>8}{'KiB/stream':>12}{'finals':>10}{'final p50/p99 ms':>18}")
    print(header)
    best: dict[str, int] = {}
    decoders_mib = 0.0
    for n in counts:
        bare_p99 = None
        for pipeline in pipelines:
            r = child(pipeline, n, seconds, args.seed)
            if pipeline == "bare":
                bare_p99 = r["p99"]
            ratio = f"{r['p99'] / bare_p99:.1f}x" if bare_p99 else "-"
            finals = f"{r['finals']}/{r['spoken']}" if pipeline != "bare" else "-"
            final_lat = (f"{r['final_p50']:.0f}/{r['final_p99']:.0f}"
                         if pipeline == "pocketsphinx" and r["finals"] else "-")
            print(f"{pipeline:<13}{n:>5}{r['frames']:>9}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['max']:>9.1f}"
                  f"{ratio:>10}{r['cpu_pct']:>8.0f}{r['rss_per_stream_kib']:>12.0f}{finals:>10}{final_lat:>18}",
                  flush=True)
            decoders_mib = max(decoders_mib, r["decoders_rss_mib"])
            if r["p99"] < TARGET_P99_MS:
                best[pipeline] = max(best.get(pipeline, 0), n)
    if decoders_mib:
        print(f"pocketsphinx decoder processes: {decoders_mib:.0f} MiB RSS in all (fixed, not per stream)")
    for pipeline in pipelines:
        print(f"largest N with p99 < {TARGET_P99_MS:.0f} ms, {pipeline}: {best.get(pipeline, 'none')}")


if __name__ == "__main__":
    main()
