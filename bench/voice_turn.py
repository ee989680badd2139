"""A spoken question over a practice-conversation socket: end of speech to `transcript.final`, to
the tutor's first `tutor.delta`, and to the first byte of its spoken reply.

The socket sends `voice.config` {tts: "server"} first, so the tutor's reply comes back as
`tts.audio` + binary PCM frames on the same socket. espeak-ng says a question (16 kHz PCM16), the
bench sends it as 20 ms binary frames as fast as the socket takes them, waits until the server
has processed them (VAD, and the recognizer's incremental decoding: what a real-time client's
server has done by the time the speaker stops), then sends `audio.end` (the client's end of turn,
as a push-to-talk release); the clock starts at `audio.end` and stops at `transcript.final`, the
first `tutor.delta`, `tts.audio` and the first binary frame after it.

Each configuration runs on a socket of its own, through the real ASGI application
(`WebsocketCommunicator`, in process) on a scratch SQLite database (or DATABASE_URL), with the
offline tutor (guardrail off), the real VoiceInput (VAD) and the real ReplySpeaker:

- instant: an STT engine returning the question's text at once and a TTS engine yielding one
  20 ms chunk at once, so the figure is the server's own added latency;
- pocketsphinx + espeak-ng, pocketsphinx + piper: the real offline engines (pocketsphinx's
  keywords: the demo's CS101 scope terms + the questions' words), so a reader sees what they add.

The synthesis cache is cleared before every turn (each reply is synthesised, never a cache hit).
Baseline, same socket, same run, interleaved with the spoken turns: the same question typed
(`chat.message`) to the first `tutor.delta` and to the first audio byte.

    .venv/bin/python bench/voice_turn.py --turns 20
    REDIS_URL=redis://127.0.0.1:6379/4 .venv/bin/python bench/voice_turn.py --turns 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = ["what is a for loop", "how does recursion work", "python for loop range", "what is a while loop"]
CONFIGS = ("instant", "espeak", "piper")
LABELS = {
    "instant": "instant STT + instant TTS",
    "espeak": "pocketsphinx + espeak-ng",
    "piper": "pocketsphinx + piper",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<40} n=0"
    ms = [v * 1000 for v in values]
    return (
        f"{name:<40} n={len(ms):<4} p50={percentile(ms, 0.5):7.1f} ms  p95={percentile(ms, 0.95):7.1f} ms  "
        f"max={max(ms):7.1f} ms  mean={statistics.fmean(ms):7.1f} ms"
    )


# --- Instant stand-ins ------------------------------------------------------------------------

SAID = {"text": ""}  # what the instant recognizer "hears": the question being sent


class InstantStt:
    """Hears whatever the bench is saying, at once, whatever the audio."""

    name = "instant"

    async def open(self, options, *, on_partial=None):
        return _InstantSttStream()


class _InstantSttStream:
    provider = "instant"

    async def feed(self, pcm: bytes) -> None:
        pass

    async def finish(self):
        from voice.providers.base import Transcript

        return Transcript(text=SAID["text"], is_final=True, provider=self.provider)

    async def aclose(self) -> None:
        pass


class InstantTts:
    """Yields 20 ms of silence at once for any sentence."""

    name = "instant"
    sample_rate = 16_000

    async def synthesize(self, text: str, *, voice: str = ""):
        yield bytes(640)


def install(config: str) -> None:
    """Swap the voice factories of voice/live.py for this configuration's engines."""
    from voice import live
    from voice.providers import stt_chain_for
    from voice.providers.base import SttChain
    from voice.tts import TtsChoice, _espeak_engine, _piper_engine

    if config == "instant":
        live.stt_chain_factory = lambda: SttChain([InstantStt()])
        engine = InstantTts()
    else:
        live.stt_chain_factory = stt_chain_for  # no keys: pocketsphinx only
        engine = _espeak_engine() if config == "espeak" else _piper_engine()
        if config == "piper":
            engine.warm_up()  # the model loads once per process (bench/tts.py: ~0.65 s)
    live.tts_choice_factory = lambda persona=None, mode="server", usage=None: TtsChoice(
        engines=(engine,), mode="server"
    )


INPUTS: list = []  # the VoiceInput each socket creates, to wait for it to catch up


def record_inputs() -> None:
    from voice import live

    make = live.voice_input_factory

    def factory(**kwargs):
        created = make(**kwargs)
        INPUTS.append(created)
        return created

    live.voice_input_factory = factory


# --- The socket -------------------------------------------------------------------------------


class Turns:
    def __init__(self) -> None:
        self.final: list[float] = []
        self.delta: list[float] = []
        self.audio_event: list[float] = []
        self.first_byte: list[float] = []
        self.heard = 0
        self.first_sentence_chars: list[int] = []


async def one_turn(comm, turns: Turns, *, question: str, spoken: bool) -> None:
    from tests.voice.audio_support import frames, silence, speak
    from voice.speech import synthesis_cache

    synthesis_cache.clear()
    SAID["text"] = question
    if spoken:
        for frame in frames(silence(200) + speak(question), ms=20):
            await comm.send_to(bytes_data=frame)
        await asyncio.sleep(0)
        while not INPUTS:
            await asyncio.sleep(0.001)
        await INPUTS[-1].idle()  # the server caught up with the audio, as at real pace
        started = time.perf_counter()
        await comm.send_to(text_data=json.dumps({"type": "audio.end", "data": {}}))
    else:
        started = time.perf_counter()
        await comm.send_to(text_data=json.dumps({"type": "chat.message", "text": question}))
    got_delta = got_audio = got_byte = done = ended = False
    reply_id = None
    while not (done and ended):
        message = await comm.receive_from(60)
        now = time.perf_counter() - started
        if isinstance(message, bytes):
            if got_audio and not got_byte:
                turns.first_byte.append(now)
                got_byte = True
            continue
        message = json.loads(message)
        kind, data = message["type"], message.get("data") or {}
        if kind == "transcript.final":  # the student's line (a tutor reply is `tutor.message`)
            turns.final.append(now)
            turns.heard += data.get("text") == question
        elif kind == "tutor.delta" and not got_delta:
            turns.delta.append(now)
            got_delta = True
        elif kind == "tts.audio" and not got_audio:
            turns.audio_event.append(now)
            turns.first_sentence_chars.append(len(data.get("text") or ""))
            got_audio = True
        elif kind == "tutor.message":
            reply_id = data.get("message_id")
            done = True
        elif kind == "tts.end":
            ended = True
        elif kind in ("error", "tts.stop", "tts.speak"):
            raise RuntimeError(message)
    # The client played it all: the speaker is idle before the next question (no barge-in).
    await comm.send_to(text_data=json.dumps({"type": "tts.done", "data": {"message_id": reply_id}}))


async def run_config(conversation_id: int, user, *, turns: int, warmup: int) -> tuple[Turns, Turns]:
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.test import Client

    from tutor_project.asgi import application

    def cookie() -> bytes:
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    INPUTS.clear()
    headers = [(b"origin", b"http://testserver"), (b"cookie", await database_sync_to_async(cookie)())]
    comm = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers=headers)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    await comm.receive_from(5)  # conversation.status
    await comm.send_to(text_data=json.dumps({"type": "voice.config", "data": {"tts": "server"}}))
    reply = json.loads(await comm.receive_from(5))
    assert reply == {**reply, "type": "voice.config"} and reply["data"]["tts"] == "server", reply
    spoken, typed = Turns(), Turns()
    for n in range(warmup + turns):
        question = QUESTIONS[n % len(QUESTIONS)]
        sink_spoken, sink_typed = (spoken, typed) if n >= warmup else (Turns(), Turns())
        await one_turn(comm, sink_spoken, question=question, spoken=True)
        await one_turn(comm, sink_typed, question=question, spoken=False)
    await comm.disconnect()
    return spoken, typed


# --- Setup and report -----------------------------------------------------------------------


def setup(workdir: Path) -> None:
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tutor_project.settings"
    os.environ["TUTOR_TURNS_PER_MINUTE"] = "0"
    os.environ["WS_MAX_AUDIO_SECONDS_PER_MINUTE"] = "0"
    os.environ["WS_MAX_MESSAGES_PER_SECOND"] = "0"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_MEDIA_ROOT"] = str(workdir / "media")
    for key in ("OPENAI_API_KEY", "DEEPGRAM_API_KEY"):
        os.environ[key] = ""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    if unknown := set(configs) - set(CONFIGS):
        parser.error(f"unknown configurations: {', '.join(sorted(unknown))}")

    with tempfile.TemporaryDirectory() as tmp:
        setup(Path(tmp))
        from django.conf import settings

        from courses.models import Course, Student
        from courses.services import demo_seed
        from sessions.models import Conversation, LLMModel

        demo_seed()
        course = Course.objects.get(code="CS101")
        words = sorted({w for q in QUESTIONS for w in q.split()})
        course.scope_terms = [*course.scope_terms, *words]
        course.guardrail_enabled = False
        course.save()
        if not LLMModel.objects.filter(provider="offline").exists():
            LLMModel.objects.create(tenant=None, position=9, provider="offline", model_name="offline-socratic")
        student = Student.objects.select_related("user").get(user__username="student1")
        layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        conversations = {
            config: Conversation.objects.create(tenant=course.tenant, course=course, student=student, mode="socratic")
            for config in configs
        }
        record_inputs()
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # setup above ran in this thread

        async def run() -> dict[str, tuple[Turns, Turns]]:
            results = {}
            for config in configs:
                install(config)
                results[config] = await run_config(
                    conversations[config].pk, student.user, turns=args.turns, warmup=args.warmup
                )
            return results

        results = asyncio.run(run())

    print(
        f"voice turn bench: {args.turns} spoken + {args.turns} typed questions a configuration, offline tutor, "
        f"database={database}, channel layer={layer}"
    )
    for config in configs:
        spoken, typed = results[config]
        print(f"\n[{LABELS[config]}]")
        print(summary("audio.end -> transcript.final", spoken.final))
        print(summary("audio.end -> first tutor.delta", spoken.delta))
        print(summary("audio.end -> tts.audio", spoken.audio_event))
        print(summary("audio.end -> first audio byte", spoken.first_byte))
        print(summary("chat.message -> transcript.final", typed.final))
        print(summary("baseline chat.message -> tutor.delta", typed.delta))
        print(summary("chat.message -> first audio byte", typed.first_byte))
        print(f"heard exactly: {spoken.heard}/{args.turns}; first spoken piece: "
              f"{statistics.fmean(spoken.first_sentence_chars):.0f} characters on average")
        base = percentile(typed.delta, 0.5)
        print(
            f"ratio first audio byte (spoken) / baseline, p50: {percentile(spoken.first_byte, 0.5) / base:.1f}x, "
            f"p95: {percentile(spoken.first_byte, 0.95) / percentile(typed.delta, 0.95):.1f}x"
        )


if __name__ == "__main__":
    main()
