"""A local stand-in for the OpenAI chat completions API: a real HTTP/1.1 server on 127.0.0.1.

Tests drive it through the real `openai.AsyncOpenAI` client. Each request takes the next scripted
behaviour (FIFO), else what `responder(body)` returns, else `default`:

    standin.script(Reply("Hi", chunk_delay=0.05), Status(429, retry_after=0.1), Hang(5), DropAfter(3, "a b c d e"))

Streamed replies are SSE over chunked transfer encoding, frame for frame like OpenAI's
(`data: {chunk}\\n\\n` ... optional usage chunk ... `data: [DONE]\\n\\n`); a `DropAfter` closes the
socket without the final chunk, which clients see as a cut stream. Every request is recorded in
`requests`, every streamed reply in `streams` (chunks written, finished, client disconnected).

Audio endpoints have queues of their own (so scripting them never disturbs chat replies):
`/v1/audio/transcriptions` (multipart with a WAV) answers the next of
`script_transcriptions(Transcription("text"), Status(500), Hang(5))`, else `transcription_default`,
and records model, prompt, language and the WAV's duration in `transcriptions`;
`/v1/audio/speech` answers the next of `script_speech(Speech(pcm, chunks=4))`, else a tone as long
as the input, in several chunks of a chunked body, and records model, voice and input in `speeches`.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import io
import json
import math
import re
import socket
import sys
import threading
import time
import uuid
import wave
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

# --- Behaviours ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A normal answer. `chunks` defaults to one chunk per word (spaces kept, so they join back)."""

    text: str
    chunk_delay: float = 0.0
    chunks: list[str] | None = None
    prompt_tokens: int = 12
    completion_tokens: int = 7
    finish_reason: str = "stop"
    send_usage: bool = True  # False: like servers that ignore `stream_options.include_usage`

    def pieces(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return [piece for piece in re.split(r"(?<=\s)(?=\S)", self.text) if piece]


@dataclass(frozen=True)
class Status:
    """An error response with OpenAI's error body, e.g. Status(429, retry_after=0.1)."""

    status: int
    retry_after: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Hang:
    """Accept the request, then say nothing for `seconds` (ends early when the server stops)."""

    seconds: float


@dataclass(frozen=True)
class DropAfter:
    """Stream the first `n_chunks` chunks of `text`, then cut the connection mid-body."""

    n_chunks: int
    text: str
    chunk_delay: float = 0.0


Behaviour = Reply | Status | Hang | DropAfter


@dataclass(frozen=True)
class Transcription:
    """A transcription answer: `{"text": text}`."""

    text: str


@dataclass(frozen=True)
class Speech:
    """A speech answer: `pcm` written in `chunks` pieces of a chunked body, `chunk_delay` apart."""

    pcm: bytes
    chunks: int = 4
    chunk_delay: float = 0.0


def tone_pcm(ms: int, sample_rate: int = 24_000, hz: float = 440.0) -> bytes:
    """PCM16 LE mono of a quiet tone: what the stand-in "says"."""
    count = sample_rate * ms // 1000
    return b"".join(
        int(2000 * math.sin(2 * math.pi * hz * i / sample_rate)).to_bytes(2, "little", signed=True)
        for i in range(count)
    )


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_denied",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


@dataclass
class StreamRecord:
    """What happened to one streamed reply, as the server saw it."""

    model: str
    chunks_scripted: int
    chunks_written: int = 0
    finished: bool = False  # [DONE] and the end of the body were written
    client_disconnected: bool = False
    ended: threading.Event = field(default_factory=threading.Event)

    def wait_ended(self, timeout: float = 5.0) -> bool:
        """Block until the server stopped writing this stream (finished, cut or disconnected)."""
        return self.ended.wait(timeout)


class _ClientGone(Exception):
    pass


class _Stopping(Exception):
    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its keep-alive connection between requests is normal, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


# --- The server ---------------------------------------------------------------------------------


class OpenAIStandin:
    """The stand-in server; start with `with OpenAIStandin() as standin:` or the fixture."""

    def __init__(self, default: Behaviour | None = None):
        self.default: Behaviour = default or Reply("Hello from the stand-in.")
        self.responder: Callable[[dict], Behaviour | None] | None = None
        self.requests: list[dict[str, Any]] = []
        self.streams: list[StreamRecord] = []
        self.transcriptions: list[dict[str, Any]] = []
        self.speeches: list[dict[str, Any]] = []
        self.transcription_default: Transcription | Status | Hang = Transcription("Hello from the stand-in.")
        self._transcription_queue: deque[Transcription | Status | Hang] = deque()
        self._speech_queue: deque[Speech | Status | Hang] = deque()
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # scripting and inspection

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    def script_transcriptions(self, *behaviours: Transcription | Status | Hang) -> None:
        """Queue answers for the next /v1/audio/transcriptions requests, in order."""
        with self._lock:
            self._transcription_queue.extend(behaviours)

    def script_speech(self, *behaviours: Speech | Status | Hang) -> None:
        """Queue answers for the next /v1/audio/speech requests, in order."""
        with self._lock:
            self._speech_queue.extend(behaviours)

    def _next_audio(self, queue: deque, default: Any) -> Any:
        with self._lock:
            return queue.popleft() if queue else default

    def _next_behaviour(self, body: dict) -> Behaviour:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            behaviour = self.responder(body)
            if behaviour is not None:
                return behaviour
        return self.default

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the stand-in is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # lifecycle

    def start(self) -> OpenAIStandin:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> OpenAIStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: OpenAIStandin
    timeout = 30  # idle keep-alive connections end by themselves

    def setup(self) -> None:
        super().setup()
        # Headers and body are separate writes: without this, Nagle + delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.owner._lock:
            self.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `requests` instead."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.rstrip("/")
        if path == "/v1/audio/transcriptions":
            self._transcribe(raw)
            return
        if path == "/v1/audio/speech":
            self._speak(raw)
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        self.owner.requests.append(
            {
                "path": self.path,
                "method": "POST",
                "headers": {key.lower(): value for key, value in self.headers.items()},
                "json": body,
                "model": body.get("model", ""),
                "client": self.client_address,  # (host, port): the same port means a reused connection
            }
        )
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_error(Status(404, message=f"Unknown path {self.path}"))
            return
        behaviour = self.owner._next_behaviour(body)
        if isinstance(behaviour, Status):
            self._send_error(behaviour)
        elif isinstance(behaviour, Hang):
            self.owner._stopping.wait(behaviour.seconds)
            self.close_connection = True
        elif body.get("stream"):
            self._stream(body, behaviour)
        else:
            self._complete(body, behaviour)

    # audio

    def _transcribe(self, raw: bytes) -> None:
        fields, files = _multipart(self.headers.get("Content-Type", ""), raw)
        wav = files.get("file", b"")
        record: dict[str, Any] = {
            "model": fields.get("model", ""),
            "prompt": fields.get("prompt"),
            "language": fields.get("language"),
            "response_format": fields.get("response_format"),
            "fields": fields,
            "headers": {key.lower(): value for key, value in self.headers.items()},
            **_wav_info(wav),
        }
        self.owner.transcriptions.append(record)
        self.owner.requests.append(
            {"path": self.path, "method": "POST", "model": record["model"], "json": {}}
        )
        behaviour = self.owner._next_audio(self.owner._transcription_queue, self.owner.transcription_default)
        if isinstance(behaviour, Status):
            self._send_error(behaviour)
        elif isinstance(behaviour, Hang):
            self.owner._stopping.wait(behaviour.seconds)
            self.close_connection = True
        else:
            self._send_json(200, {"text": behaviour.text, "usage": {"type": "duration", "seconds": 1}})

    def _speak(self, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        record: dict[str, Any] = {
            "model": body.get("model", ""),
            "voice": body.get("voice", ""),
            "input": body.get("input", ""),
            "response_format": body.get("response_format"),
            "json": body,
            "chunks_written": 0,
            "client_disconnected": False,
        }
        self.owner.speeches.append(record)
        self.owner.requests.append(
            {"path": self.path, "method": "POST", "model": record["model"], "json": body}
        )
        default = Speech(tone_pcm(min(3000, 60 * max(1, len(record["input"])))))
        behaviour = self.owner._next_audio(self.owner._speech_queue, default)
        if isinstance(behaviour, Status):
            self._send_error(behaviour)
            return
        if isinstance(behaviour, Hang):
            self.owner._stopping.wait(behaviour.seconds)
            self.close_connection = True
            return
        pieces = max(1, behaviour.chunks)
        size = math.ceil(len(behaviour.pcm) / pieces) or 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "audio/pcm")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for offset in range(0, len(behaviour.pcm), size):
                if behaviour.chunk_delay and offset and self.owner._stopping.wait(behaviour.chunk_delay):
                    raise _Stopping
                self._write_chunk(behaviour.pcm[offset : offset + size])
                record["chunks_written"] += 1
            self._write(b"0\r\n\r\n")
        except _ClientGone:
            record["client_disconnected"] = True
            self.close_connection = True
        except _Stopping:
            self.close_connection = True

    # responses

    def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: Status) -> None:
        headers = {} if status.retry_after is None else {"Retry-After": f"{status.retry_after:g}"}
        error = {
            "message": status.message or f"Stand-in error {status.status}",
            "type": ERROR_TYPES.get(status.status, "server_error"),
            "param": None,
            "code": None,
        }
        self._send_json(status.status, {"error": error}, headers)

    def _complete(self, body: dict, behaviour: Reply | DropAfter) -> None:
        reply = behaviour if isinstance(behaviour, Reply) else Reply(behaviour.text)
        self._send_json(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": _usage(reply.prompt_tokens, reply.completion_tokens),
            },
        )

    def _stream(self, body: dict, behaviour: Reply | DropAfter) -> None:
        reply = Reply(behaviour.text) if isinstance(behaviour, DropAfter) else behaviour
        pieces = reply.pieces()
        to_write = pieces[: behaviour.n_chunks] if isinstance(behaviour, DropAfter) else pieces
        record = StreamRecord(model=body.get("model", ""), chunks_scripted=len(pieces))
        self.owner.streams.append(record)
        self.close_connection = isinstance(behaviour, DropAfter)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for frame in self._frames(body, reply, to_write, behaviour.chunk_delay, record):
                self._write_chunk(frame)
            if isinstance(behaviour, DropAfter):
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                self._write(b"0\r\n\r\n")
                record.finished = True
        except _ClientGone:
            record.client_disconnected = True
            self.close_connection = True
        except _Stopping:
            self.close_connection = True
        finally:
            record.ended.set()

    def _frames(
        self, body: dict, reply: Reply, pieces: list[str], delay: float, record: StreamRecord
    ) -> Iterator[bytes]:
        chunk_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        model = body.get("model", "")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def frame(choices: list[dict], usage: dict | None = None) -> bytes:
            chunk: dict[str, Any] = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_standin",
                "choices": choices,
            }
            if include_usage:
                chunk["usage"] = usage
            return f"data: {json.dumps(chunk)}\n\n".encode()

        yield frame([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in pieces:
            if delay and self.owner._stopping.wait(delay):
                raise _Stopping
            yield frame([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            record.chunks_written += 1
        if len(pieces) < record.chunks_scripted:
            return  # a drop: no finish_reason, no usage, no [DONE]
        yield frame([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}])
        if include_usage and reply.send_usage:
            yield frame([], _usage(reply.prompt_tokens, reply.completion_tokens))
        yield b"data: [DONE]\n\n"

    def _write_chunk(self, data: bytes) -> None:
        self._write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise _ClientGone from exc


def _multipart(content_type: str, raw: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form fields and files of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    if not message.is_multipart():
        return fields, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[str(name)] = payload
        else:
            fields[str(name)] = payload.decode("utf-8", "replace")
    return fields, files


def _wav_info(wav: bytes) -> dict[str, Any]:
    """Duration and format of a WAV upload (zeros and an error when it is not one)."""
    try:
        with wave.open(io.BytesIO(wav)) as reader:
            frames = reader.getnframes()
            rate = reader.getframerate()
            return {
                "wav_bytes": len(wav),
                "sample_rate": rate,
                "channels": reader.getnchannels(),
                "sample_width": reader.getsampwidth(),
                "duration_ms": frames * 1000 // rate if rate else 0,
                "pcm": reader.readframes(frames),
                "wav_error": "",
            }
    except (wave.Error, EOFError) as exc:
        return {
            "wav_bytes": len(wav),
            "sample_rate": 0,
            "channels": 0,
            "sample_width": 0,
            "duration_ms": 0,
            "pcm": b"",
            "wav_error": str(exc),
        }


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@pytest.fixture
def openai_standin() -> Iterator[OpenAIStandin]:
    """A running stand-in for one test."""
    with OpenAIStandin() as standin:
        yield standin
