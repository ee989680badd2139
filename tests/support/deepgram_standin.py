"""A local stand-in for Deepgram's live transcription WebSocket (`wss://api.deepgram.com/v1/listen`).

A real WebSocket server (the `websockets` package) on 127.0.0.1, on its own event loop in a thread,
so tests drive it through the real `deepgram` SDK with `DEEPGRAM_BASE_URL=standin.base_url`.

It speaks the live protocol: query parameters on the upgrade (recorded), binary PCM16 16 kHz mono
audio, JSON control messages (`KeepAlive`, `Finalize`, `CloseStream`), and back `Results`
(channel.alternatives[0].transcript, is_final, speech_final, from_finalize, start, duration) and a
`Metadata` on `CloseStream`. Like Deepgram it cuts speech on silence (endpointing): audio whose
samples stay under `silence_level` for `endpointing_ms` after speech ends a segment with an
`is_final` + `speech_final` result; `Finalize` flushes the audio not yet covered by a final with an
`is_final` + `from_finalize` result (an empty transcript when it held no speech), and when every
byte is already covered answers only if `answer_idle_finalize`. Finals tile the audio: each starts
where the previous one ended.

Each segment's transcript is the next of `transcripts` (FIFO), else `default_text`; an interim
(`is_final: false`, the first word) is sent once a segment has `interim_after_ms` of speech.
Each new connection takes the next scripted behaviour (FIFO), else a normal one:

    standin.script_connections(Drop(after_bytes=16_000), Refuse(401), HangHandshake(), HangFinalize())

Every connection is recorded in `connections` (path, params, headers, audio, control messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request

SAMPLE_RATE = 16_000
BYTES_PER_SECOND = SAMPLE_RATE * 2

# --- Connection behaviours ----------------------------------------------------------------------


@dataclass(frozen=True)
class Drop:
    """Cut the TCP connection (no close frame) once `after_bytes` of audio have arrived."""

    after_bytes: int


@dataclass(frozen=True)
class Refuse:
    """Answer the upgrade with an HTTP error, e.g. Refuse(401) for a bad key."""

    status: int = 401


@dataclass(frozen=True)
class HangHandshake:
    """Accept the TCP connection, never answer the upgrade."""


@dataclass(frozen=True)
class HangFinalize:
    """A working connection that ignores `Finalize` (no final ever comes)."""


Behaviour = Drop | Refuse | HangHandshake | HangFinalize | None


@dataclass
class ConnectionRecord:
    """One upgrade request and what happened on it, as the server saw it."""

    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    behaviour: Behaviour = None
    audio: bytearray = field(default_factory=bytearray)
    messages: list[str] = field(default_factory=list)  # control message types, in order
    results: list[dict] = field(default_factory=list)  # Results sent
    dropped: bool = False
    closed: threading.Event = field(default_factory=threading.Event)

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None

    def count(self, message_type: str) -> int:
        return self.messages.count(message_type)


class DeepgramStandin:
    """The stand-in server; start with `with DeepgramStandin() as standin:` or the fixture."""

    def __init__(
        self,
        transcripts: list[str] | None = None,
        *,
        default_text: str = "hello from the stand-in",
        endpointing_ms: int = 300,
        interim_after_ms: int = 100,
        silence_level: int = 300,
        answer_idle_finalize: bool = True,
    ):
        self.transcripts: deque[str] = deque(transcripts or [])
        self.default_text = default_text
        self.endpointing_ms = endpointing_ms
        self.interim_after_ms = interim_after_ms
        self.silence_level = silence_level
        # Deepgram answers Finalize with `from_finalize` "typically when there is a noticeable
        # amount of audio buffered": False models the case where nothing is left to flush.
        self.answer_idle_finalize = answer_idle_finalize
        self.connections: list[ConnectionRecord] = []
        self._behaviours: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # scripting and inspection

    def script(self, *transcripts: str) -> None:
        """Transcripts for the next segments, in order."""
        with self._lock:
            self.transcripts.extend(transcripts)

    def script_connections(self, *behaviours: Behaviour) -> None:
        """Behaviours for the next connections, in order (None: a normal one)."""
        with self._lock:
            self._behaviours.extend(behaviours)

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviours.popleft() if self._behaviours else None

    def _next_text(self, *, peek: bool = False) -> str:
        with self._lock:
            if not self.transcripts:
                return self.default_text
            return self.transcripts[0] if peek else self.transcripts.popleft()

    def drop_connections(self) -> None:
        """Cut every open connection now (as a network failure would)."""
        assert self._loop is not None and self._server is not None
        done = threading.Event()

        def cut() -> None:
            for connection in list(self._server.connections):
                connection.standin_record.dropped = True  # type: ignore[attr-defined]
                connection.transport.abort()
            done.set()

        self._loop.call_soon_threadsafe(cut)
        done.wait(5)

    @property
    def base_url(self) -> str:
        """For DEEPGRAM_BASE_URL: the SDK appends /v1/listen."""
        assert self._server is not None, "the stand-in is not running"
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    @property
    def last(self) -> ConnectionRecord:
        return self.connections[-1]

    # lifecycle

    def start(self) -> DeepgramStandin:
        self._thread = threading.Thread(target=self._run, name="deepgram-standin", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the Deepgram stand-in did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request, ping_interval=None
        ) as server:
            self._server = server
            self._ready.set()
            await self._stop.wait()
            server.close(close_connections=False)
            for connection in list(server.connections):
                connection.transport.abort()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> DeepgramStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # the protocol

    async def _process_request(self, connection: ServerConnection, request: Request) -> Any:
        url = urlsplit(request.path)
        record = ConnectionRecord(
            path=url.path,
            params=parse_qs(url.query),
            headers={key.lower(): value for key, value in request.headers.raw_items()},
            behaviour=self._next_behaviour(),
        )
        self.connections.append(record)
        connection.standin_record = record  # type: ignore[attr-defined]
        if url.path.rstrip("/") != "/v1/listen":
            record.closed.set()
            return connection.respond(HTTPStatus.NOT_FOUND, "Unknown path\n")
        if isinstance(record.behaviour, Refuse):
            record.closed.set()
            return connection.respond(HTTPStatus(record.behaviour.status), "Refused by the stand-in\n")
        if isinstance(record.behaviour, HangHandshake):
            assert self._stop is not None
            await self._stop.wait()
            record.closed.set()
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        record: ConnectionRecord = connection.standin_record  # type: ignore[attr-defined]
        session = _Session(self, connection, record)
        try:
            await session.run()
        finally:
            record.closed.set()


class _Session:
    """One live connection: the segmenter and the replies."""

    def __init__(self, standin: DeepgramStandin, connection: ServerConnection, record: ConnectionRecord):
        self.standin = standin
        self.connection = connection
        self.record = record
        self.request_id = str(uuid.uuid4())
        self.received = 0  # bytes of audio on this connection
        self.covered_to = 0  # byte offset where the last final result ended
        self.speech_bytes = 0  # speech in the segment in progress
        self.silence_run = 0  # bytes of silence since the last speech
        self.interim_sent = False

    async def run(self) -> None:
        try:
            async for message in self.connection:
                if isinstance(message, bytes):
                    if await self._audio(message):
                        return
                else:
                    if await self._control(message):
                        return
        except Exception:  # a client vanishing is normal here
            return

    async def _audio(self, data: bytes) -> bool:
        behaviour = self.record.behaviour
        if isinstance(behaviour, Drop) and self.received + len(data) >= behaviour.after_bytes:
            keep = max(0, behaviour.after_bytes - self.received)
            self.record.audio += data[:keep]
            self.record.dropped = True
            self.connection.transport.abort()
            return True
        self.record.audio += data
        samples = np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2")
        frame = 320  # 10 ms
        for offset in range(0, len(samples), frame):
            chunk = samples[offset : offset + frame]
            size = len(chunk) * 2
            loud = (
                bool(len(chunk)) and int(np.abs(chunk.astype(np.int32)).max()) >= self.standin.silence_level
            )
            self.received += size
            if loud:
                self.speech_bytes += size
                self.silence_run = 0
            else:
                self.silence_run += size
            if (
                self.speech_bytes
                and not self.interim_sent
                and self.speech_bytes * 1000 // BYTES_PER_SECOND >= self.standin.interim_after_ms
            ):
                self.interim_sent = True
                first_word = self.standin._next_text(peek=True).split(" ")[0]
                await self._result(first_word, is_final=False)
            if (
                self.speech_bytes
                and self.silence_run * 1000 // BYTES_PER_SECOND >= self.standin.endpointing_ms
            ):
                await self._final(speech_final=True)
        return False

    async def _control(self, text: str) -> bool:
        try:
            message = json.loads(text)
        except ValueError:
            message = {}
        kind = str(message.get("type", ""))
        self.record.messages.append(kind or "?")
        if kind == "Finalize" and not isinstance(self.record.behaviour, HangFinalize):
            if self.received > self.covered_to or self.standin.answer_idle_finalize:
                await self._final(from_finalize=True)
        elif kind == "CloseStream":
            if self.speech_bytes:
                await self._final()
            await self.connection.send(json.dumps(self._metadata()))
            await self.connection.close()
            return True
        return False

    async def _final(self, *, speech_final: bool = False, from_finalize: bool = False) -> None:
        text = self.standin._next_text() if self.speech_bytes else ""
        await self._result(text, is_final=True, speech_final=speech_final, from_finalize=from_finalize)
        self.covered_to = self.received
        self.speech_bytes = 0
        self.silence_run = 0
        self.interim_sent = False

    async def _result(
        self, text: str, *, is_final: bool, speech_final: bool = False, from_finalize: bool = False
    ) -> None:
        start = self.covered_to / BYTES_PER_SECOND
        duration = (self.received - self.covered_to) / BYTES_PER_SECOND
        words = text.split()
        step = duration / max(1, len(words))
        message: dict[str, Any] = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(duration, 3),
            "start": round(start, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {
                "alternatives": [
                    {
                        "transcript": text,
                        "confidence": 0.98 if text else 0.0,
                        "words": [
                            {
                                "word": word.lower().strip(".,?!"),
                                "start": round(start + i * step, 3),
                                "end": round(start + (i + 1) * step, 3),
                                "confidence": 0.98,
                                "punctuated_word": word,
                            }
                            for i, word in enumerate(words)
                        ],
                    }
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": "2-general-nova", "version": "2024-01-09.29447", "arch": "nova-3"},
                "model_uuid": "1dbdfb4d-85b2-4659-9e5d-1ec0f1f0f2b0",
            },
            "from_finalize": from_finalize,
        }
        self.record.results.append(message)
        await self.connection.send(json.dumps(message))

    def _metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "0" * 64,
            "created": datetime.now(UTC).isoformat(),
            "duration": round(self.received / BYTES_PER_SECOND, 3),
            "channels": 1,
        }


# --- Audio for tests ----------------------------------------------------------------------------


def speech(ms: int, amplitude: int = 3000) -> bytes:
    """`ms` of a 220 Hz tone: loud enough to count as speech for the stand-in."""
    t = np.arange(SAMPLE_RATE * ms // 1000) / SAMPLE_RATE
    return (np.sin(2 * np.pi * 220 * t) * amplitude).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return b"\x00\x00" * (SAMPLE_RATE * ms // 1000)


def frames(pcm: bytes, ms: int = 20) -> Iterator[bytes]:
    """`pcm` cut into frames of `ms`, as the ingest pipeline feeds it."""
    size = BYTES_PER_SECOND * ms // 1000
    for offset in range(0, len(pcm), size):
        yield pcm[offset : offset + size]


@pytest.fixture
def deepgram_standin() -> Iterator[DeepgramStandin]:
    """A running stand-in for one test."""
    with DeepgramStandin() as standin:
        yield standin
