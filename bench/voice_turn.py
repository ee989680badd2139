"""A spoken question over a practice-conversation socket: end of speech to `transcript.final`,
and to the tutor's first `tutor.delta`.

espeak-ng says a question (16 kHz PCM16), the bench sends it as 20 ms binary frames as fast as
the socket takes them, then `audio.end` (the client's end of turn, as a push-to-talk release);
the clock starts at `audio.end`. What is measured is our path: VAD flush, pocketsphinx decoding
the utterance (the course's scope terms + the question's words as keywords), persisting the
question, the turn's preparation and the offline tutor's first delta, through the real ASGI
application (`WebsocketCommunicator`, in process) on a scratch SQLite database (or DATABASE_URL).

    .venv/bin/python bench/voice_turn.py --turns 20
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:<34} n={len(ms):<4} p50={percentile(ms, 0.5):7.1f} ms  p95={percentile(ms, 0.95):7.1f} ms  "
        f"max={max(ms):7.1f} ms  mean={statistics.fmean(ms):7.1f} ms"
    )


async def spoken_turns(conversation_id: int, user, turns: int) -> tuple[list[float], list[float], int]:
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.test import Client

    from tests.voice.audio_support import frames, silence, speak
    from tutor_project.asgi import application

    def cookie() -> bytes:
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    headers = [(b"origin", b"http://testserver"), (b"cookie", await database_sync_to_async(cookie)())]
    comm = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers=headers)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    await comm.receive_from(5)  # conversation.status
    to_final, to_delta, heard = [], [], 0
    for n in range(turns):
        question = QUESTIONS[n % len(QUESTIONS)]
        for frame in frames(silence(200) + speak(question), ms=20):
            await comm.send_to(bytes_data=frame)
        started = time.perf_counter()
        await comm.send_to(text_data=json.dumps({"type": "audio.end", "data": {}}))
        while True:
            message = json.loads(await comm.receive_from(30))
            if message["type"] == "transcript.final":
                to_final.append(time.perf_counter() - started)
                heard += message["data"]["text"] == question
            elif message["type"] == "tutor.delta" and len(to_delta) < len(to_final):
                to_delta.append(time.perf_counter() - started)
            elif message["type"] == "error":
                raise RuntimeError(message)
            elif message["type"] == "tutor.message":
                break
    await comm.disconnect()
    return to_final, to_delta, heard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("DATABASE_URL", f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        os.environ["DJANGO_SETTINGS_MODULE"] = "tutor_project.settings"
        os.environ["TUTOR_TURNS_PER_MINUTE"] = "0"
        os.environ["WS_MAX_AUDIO_SECONDS_PER_MINUTE"] = "0"
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        for key in ("OPENAI_API_KEY", "DEEPGRAM_API_KEY"):
            os.environ[key] = ""
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
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
        conversation = Conversation.objects.create(tenant=course.tenant, course=course, student=student, mode="socratic")
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # setup above ran in this thread

        async def run():
            await spoken_turns(conversation.pk, student.user, args.warmup)
            return await spoken_turns(conversation.pk, student.user, args.turns)

        to_final, to_delta, heard = asyncio.run(run())

    print(f"voice turn bench: {args.turns} spoken questions, pocketsphinx, offline tutor")
    print(summary("audio.end -> transcript.final", to_final))
    print(summary("audio.end -> first tutor.delta", to_delta))
    print(f"heard exactly: {heard}/{args.turns}")


if __name__ == "__main__":
    main()
