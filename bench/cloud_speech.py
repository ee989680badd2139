"""What the cloud speech engines add on top of the bare protocol, against the local stand-ins.

Deepgram (tests/support/deepgram_standin.py): per utterance of 1 s fed in 20 ms frames, the CPU
time of `feed()` per frame, and `finish()` (Finalize sent to final Transcript back) through
`DeepgramStream`, against a bare `websockets` client doing the same on the same stand-in.
OpenAI (tests/support/openai_standin.py): `OpenAITranscriptionStream.finish()` against the bare
SDK call with the same WAV, and `OpenAISpeechEngine` to its first chunk against the bare SDK's
`with_streaming_response`. The stand-ins answer at once, so what is measured is our path.

    .venv/bin/python bench/cloud_speech.py --utterances 100

Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float], unit: str = "ms") -> str:
    return (
        f"{name:<40} p50 {percentile(values, 0.5):7.2f} {unit}  p95 {percentile(values, 0.95):7.2f} {unit}"
        f"  mean {statistics.fmean(values):7.2f} {unit}  (n={len(values)})"
    )


async def deepgram(utterances: int) -> list[str]:
    from django.conf import settings
    from websockets.asyncio.client import connect

    from tests.support.deepgram_standin import DeepgramStandin, frames, speech
    from voice.providers.base import StreamOptions
    from voice.providers.deepgram import DeepgramEngine

    settings.DEEPGRAM_API_KEY = "bench"
    utterance = list(frames(speech(1000)))
    lines = []
    with DeepgramStandin(default_text="a one second question") as standin:
        stream = await DeepgramEngine(base_url=standin.base_url).open(StreamOptions())
        feed_us, finish_ms = [], []
        for _ in range(utterances):
            started = time.perf_counter()
            for frame in utterance:
                await stream.feed(frame)
            feed_us.append((time.perf_counter() - started) * 1e6 / len(utterance))
            started = time.perf_counter()
            await stream.finish()
            finish_ms.append((time.perf_counter() - started) * 1000)
        await stream.aclose()

        bare_feed_us, bare_ms = [], []
        url = f"{standin.base_url}/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000"
        async with connect(url, additional_headers={"Authorization": "Token bench"}) as ws:
            for _ in range(utterances):
                started = time.perf_counter()
                for frame in utterance:
                    await ws.send(frame)
                bare_feed_us.append((time.perf_counter() - started) * 1e6 / len(utterance))
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "Finalize"}))
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("from_finalize"):
                        break
                bare_ms.append((time.perf_counter() - started) * 1000)
    lines.append(summary("deepgram feed() per 20 ms frame", feed_us, "us"))
    lines.append(summary("bare websockets send per 20 ms frame", bare_feed_us, "us"))
    lines.append(summary("deepgram finish() -> final", finish_ms))
    lines.append(summary("bare Finalize -> from_finalize", bare_ms))
    return lines


async def openai_audio(utterances: int) -> list[str]:
    import openai
    from django.conf import settings

    from tests.support.deepgram_standin import speech
    from tests.support.openai_standin import OpenAIStandin, Speech, tone_pcm
    from voice.providers.base import StreamOptions
    from voice.providers.openai_audio import OpenAISpeechEngine, OpenAITranscriptionEngine, wav_bytes

    pcm = speech(1000)
    lines = []
    with OpenAIStandin() as standin:
        settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "sk-bench", standin.base_url
        stream = await OpenAITranscriptionEngine().open(StreamOptions(keywords=["mitosis", "meiosis"]))
        engine_ms, bare_ms = [], []
        bare = openai.AsyncOpenAI(api_key="sk-bench", base_url=standin.base_url, max_retries=0)
        for _ in range(utterances):
            await stream.feed(pcm)
            started = time.perf_counter()
            await stream.finish()
            engine_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await bare.audio.transcriptions.create(
                file=("u.wav", wav_bytes(pcm), "audio/wav"), model="m", prompt="Terms: mitosis, meiosis."
            )
            bare_ms.append((time.perf_counter() - started) * 1000)
        lines.append(summary("openai transcription finish() (1 s WAV)", engine_ms))
        lines.append(summary("bare SDK transcriptions.create", bare_ms))

        audio = tone_pcm(1000)
        tts = OpenAISpeechEngine()
        first_ms, bare_first_ms = [], []
        for _ in range(utterances):
            standin.script_speech(Speech(audio, chunks=8), Speech(audio, chunks=8))
            started = time.perf_counter()
            chunks = tts.synthesize("The cell divides twice in meiosis.", voice="alloy")
            await anext(chunks)
            first_ms.append((time.perf_counter() - started) * 1000)
            async for _chunk in chunks:
                pass
            started = time.perf_counter()
            async with bare.audio.speech.with_streaming_response.create(
                model="m", voice="alloy", input="The cell divides twice in meiosis.", response_format="pcm"
            ) as response:
                first = None
                async for _chunk in response.iter_bytes():
                    first = first or time.perf_counter()
            bare_first_ms.append((first - started) * 1000)
        lines.append(summary("openai speech to first chunk", first_ms))
        lines.append(summary("bare SDK speech to first chunk", bare_first_ms))
    return lines


async def main(utterances: int) -> None:
    import django

    django.setup()
    for line in await deepgram(utterances) + await openai_audio(utterances):
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=100)
    asyncio.run(main(parser.parse_args().utterances))
