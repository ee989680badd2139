"""Speech out: how soon the first audio of a sentence is ready, and what ReplySpeaker adds.

For each offline engine (piper, espeak-ng), over tutor-like sentences:
- first chunk: `engine.synthesize(sentence)` to its first PCM chunk (the baseline);
- real-time factor: synthesis time / duration of the audio made (under 1: faster than speech);
- speaker: `ReplySpeaker.feed()` of the sentence as a reply's first text to the first binary frame
  sent (engine + queueing + framing; a long first sentence goes out from its first clause, so
  this can beat the whole-sentence baseline); speaker-added = speaker p50 - first chunk p50;
- cache hit: the same sentence again, from the per-process cache.

    .venv/bin/python bench/tts.py --sentences 30
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = [
    "A for loop stops when the sequence it walks through runs out of items.",
    "Think about what the condition of your while loop checks on each pass.",
    "Good question.",
    "Recursion needs a base case, or the function never stops calling itself.",
    "What do you expect the list to contain after the second iteration?",
    "Dictionaries map keys to values, and looking a key up takes about the same time however big they get.",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"{percentile(values, 0.5) * 1000:.0f} / {percentile(values, 0.95) * 1000:.0f} ms"


async def bench_engine(engine, sentences: list[str]) -> dict:
    from voice.speech import ReplySpeaker, SynthesisCache
    from voice.tts import TtsChoice

    first, factors, speaker_first, hits = [], [], [], []
    async for _ in engine.synthesize("Warm up."):
        pass
    for text in sentences:
        started = time.perf_counter()
        got_first = None
        size = 0
        async for chunk in engine.synthesize(text):
            if got_first is None:
                got_first = time.perf_counter() - started
            size += len(chunk)
        total = time.perf_counter() - started
        first.append(got_first or total)
        factors.append(total / (size / 2 / engine.sample_rate))

        cache = SynthesisCache()
        frame_at = asyncio.get_running_loop().create_future()

        async def send_event(type_, payload):
            pass

        async def send_bytes(data, frame_at=frame_at):
            if not frame_at.done():
                frame_at.set_result(time.perf_counter())

        speaker = ReplySpeaker(
            choice=TtsChoice(engines=(engine,), browser=False), send_event=send_event, send_bytes=send_bytes,
            cache=cache,
        )
        started = time.perf_counter()
        await speaker.feed(1, text + " ")
        speaker_first.append(await frame_at - started)
        await speaker.finish(1)
        while speaker._busy or not speaker._queue.empty():
            await asyncio.sleep(0.005)

        started = time.perf_counter()
        async for _ in cache.stream(engine, text, voice="", usage=None):
            break
        hits.append(time.perf_counter() - started)
    return {"first": first, "rtf": factors, "speaker": speaker_first, "hit": hits}


async def main(count: int) -> None:
    import django

    django.setup()
    from voice.providers.espeak import EspeakEngine
    from voice.providers.piper import PiperEngine

    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(count)]
    sentences = [s if i < len(SENTENCES) else f"{s[:-1]}, again {i}." for i, s in enumerate(sentences)]
    print(f"{count} sentences, {statistics.mean(len(s) for s in sentences):.0f} characters on average")
    print("| engine | first chunk p50 / p95 | real-time factor p50 | speaker first frame p50 / p95 | speaker-added p50 | cache hit p50 |")
    print("|---|---|---|---|---|---|")
    for engine in (PiperEngine(), EspeakEngine()):
        r = await bench_engine(engine, sentences)
        added = (percentile(r["speaker"], 0.5) - percentile(r["first"], 0.5)) * 1000
        print(
            f"| {engine.name} | {ms(r['first'])} | {percentile(r['rtf'], 0.5):.3f} | {ms(r['speaker'])} "
            f"| {added:.1f} ms | {percentile(r['hit'], 0.5) * 1e6:.0f} µs |"
        )


if __name__ == "__main__":
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=30)
    asyncio.run(main(parser.parse_args().sentences))
