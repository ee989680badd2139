"""A local stand-in for the OpenAI chat completions API: a real HTTP/1.1 server on 127.0.0.1.

Tests drive it through the real `openai.AsyncOpenAI` client. Each request takes the next scripted
behaviour (FIFO), else what `responder(body)` returns, else `default`:

    standin.script(Reply("Hi", chunk_delay=0.05), Status(429, retry_after=0.1), Hang(5), DropAfter(3, "a b c d e"))

Streamed replies are SSE over chunked transfer encoding, frame for frame like OpenAI's
(`data: {chunk}\\n\\n` ... optional usage chunk ... `data: [DONE]\\n\\n`); a `DropAfter` closes the
socket without the final chunk, which clients see as a cut stream. Every request is recorded in
`requests`, every streamed reply in `streams` (chunks written, finished, client disconnected).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
import uuid
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
