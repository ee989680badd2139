"""Deepgram live transcription through deepgram-sdk 7 (`listen.v1.connect`, a WebSocket).

One upstream connection per speaking connection, across utterances: audio goes up as it comes,
interim results come back as partials, and at the end of each utterance `finish()` sends
`Finalize` and waits for the result marked `from_finalize`; the utterance's text is its `is_final`
pieces joined (Deepgram ends a piece at each pause of DEEPGRAM_ENDPOINTING_MS). While no audio
flows a `KeepAlive` goes up every DEEPGRAM_KEEPALIVE_SECONDS (Deepgram closes a stream idle 10 s).

A connection that drops is opened again once per utterance, with the utterance's audio replayed;
a second drop, a refused or timed-out connect, or no final in time raise `SttUnavailable`, and the
chain (base.py) replays the utterance into the next engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

with warnings.catch_warnings():
    # deepgram-sdk 7 is built on websockets' legacy client, deprecated since websockets 14.
    warnings.filterwarnings("ignore", "websockets.legacy is deprecated", DeprecationWarning)
    warnings.filterwarnings(
        "ignore", "websockets.exceptions.InvalidStatusCode is deprecated", DeprecationWarning
    )
    from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
    from deepgram.listen.v1.client import AsyncV1Client  # noqa: F401 - imported here, under the filter
    from deepgram.listen.v1.socket_client import AsyncV1SocketClient
    from deepgram.listen.v1.types import ListenV1Error, ListenV1Results

from voice.providers.base import (
    BYTES_PER_MS,
    SAMPLE_RATE,
    PartialCallback,
    StreamOptions,
    SttUnavailable,
    Transcript,
    pcm_ms,
)
from voice.providers.usage import UsageRecorder, usage_cost

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_SECONDS = 2.0
# Deepgram answers Finalize with `from_finalize` only when it had audio left to flush. When the
# finals already reach the end of the audio sent (within FINALIZE_SLACK), a missing answer is
# waited for FINALIZE_GRACE only, not the whole DEEPGRAM_FINALIZE_TIMEOUT_SECONDS.
FINALIZE_SLACK_SECONDS = 0.1
FINALIZE_GRACE_SECONDS = 0.25


def deepgram_environment(base_url: str) -> DeepgramClientEnvironment:
    """Deepgram's hosts, or every host at `base_url` ("wss://host" or "ws://127.0.0.1:port")."""
    if not base_url:
        return DeepgramClientEnvironment.PRODUCTION
    ws = base_url.rstrip("/")
    http = ws.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    return DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)


# Building an AsyncDeepgramClient costs ~85 ms here (its REST httpx client loads the CA bundle);
# the live WebSocket uses only its URL and headers, so one client per key and host is shared,
# across event loops too.
_clients: dict[tuple[str, str], AsyncDeepgramClient] = {}


def deepgram_client(*, api_key: str, base_url: str) -> AsyncDeepgramClient:
    client = _clients.get((api_key, base_url))
    if client is None:
        client = AsyncDeepgramClient(api_key=api_key, environment=deepgram_environment(base_url))
        _clients[(api_key, base_url)] = client
    return client


@dataclass(frozen=True, slots=True)
class _Piece:
    text: str
    start: float  # seconds from the start of the connection's audio
    end: float
    confidence: float


class DeepgramEngine:
    """An `SttEngine` streaming to Deepgram."""

    name = "deepgram"

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None):
        self.api_key = settings.DEEPGRAM_API_KEY if api_key is None else api_key
        self.base_url = settings.DEEPGRAM_BASE_URL if base_url is None else base_url

    async def open(
        self, options: StreamOptions, *, on_partial: PartialCallback | None = None
    ) -> DeepgramStream:
        if not self.api_key:
            raise SttUnavailable("DEEPGRAM_API_KEY is not set")
        stream = DeepgramStream(self, options, on_partial)
        await stream.connect()
        return stream


class DeepgramStream:
    """One speaking connection's live stream (an `SttStream`)."""

    provider = "deepgram"

    def __init__(self, engine: DeepgramEngine, options: StreamOptions, on_partial: PartialCallback | None):
        self.engine = engine
        self.options = options
        self.on_partial = on_partial
        self.model = settings.DEEPGRAM_MODEL
        self.usage = UsageRecorder(options.usage)
        self._client = deepgram_client(api_key=engine.api_key, base_url=engine.base_url)
        self._context: AbstractAsyncContextManager[AsyncV1SocketClient] | None = None
        self._socket: AsyncV1SocketClient | None = None
        self._reader: asyncio.Task | None = None
        self._keepalive: asyncio.Task | None = None
        self._alive = False
        self._closed = False
        self._changed = asyncio.Event()  # a result arrived or the connection dropped
        self._last_send = time.monotonic()
        self.connects = 0  # connections opened, for the logs and tests
        # the current utterance
        self._utterance: list[bytes] = []
        self._utterance_bytes = 0
        self._utterance_offset = 0.0  # seconds of audio sent on this connection before it
        self._sent_bytes = 0  # audio sent on this connection
        self._final_end = 0.0  # seconds: where the last final result on this connection ended
        self._pieces: list[_Piece] = []
        self._finalized = False
        self._reconnected = False

    # --- connection ---------------------------------------------------------------------------

    def _connect_params(self) -> dict:
        params: dict = {
            "model": self.model,
            "encoding": "linear16",
            "sample_rate": SAMPLE_RATE,
            "channels": 1,
            "interim_results": True,
            "endpointing": int(settings.DEEPGRAM_ENDPOINTING_MS),
            "smart_format": True,
            "language": self.options.language or "en",
        }
        terms = [term.strip() for term in self.options.keywords if term and term.strip()]
        if terms:
            # nova-3 boosts with `keyterm`; nova-2 and older with `keywords`.
            params["keyterm" if self.model.startswith("nova-3") else "keywords"] = terms
        return params

    async def connect(self) -> None:
        """Open the upstream connection; SttUnavailable when refused or too slow."""
        timeout = float(settings.DEEPGRAM_CONNECT_TIMEOUT_SECONDS)
        context = self._client.listen.v1.connect(**self._connect_params())
        try:
            socket = await asyncio.wait_for(context.__aenter__(), timeout)
        except TimeoutError as exc:
            raise SttUnavailable(f"deepgram: no connection within {timeout:g} s") from exc
        except Exception as exc:  # ApiError (401, 4xx/5xx on the upgrade), OSError, handshake errors
            raise SttUnavailable(f"deepgram: connect failed: {_describe(exc)}") from exc
        self._context, self._socket, self._alive = context, socket, True
        self._sent_bytes, self._final_end = 0, 0.0
        self._last_send = time.monotonic()
        self.connects += 1
        self._reader = asyncio.create_task(self._read(socket), name="deepgram-read")
        if self._keepalive is None:
            self._keepalive = asyncio.create_task(self._keep_alive(), name="deepgram-keepalive")

    async def _disconnect(self) -> None:
        """Drop the current connection (quietly, quickly)."""
        context, socket, reader = self._context, self._socket, self._reader
        self._context, self._socket, self._reader, self._alive = None, None, None, False
        if reader is not None:
            reader.cancel()
        if context is None:
            return
        try:
            await asyncio.wait_for(context.__aexit__(None, None, None), CLOSE_TIMEOUT_SECONDS)
        except Exception:  # a dead or hung peer: just cut the TCP connection
            transport = getattr(getattr(socket, "_websocket", None), "transport", None)
            if transport is not None:
                transport.abort()
        if reader is not None:
            with contextlib.suppress(BaseException):
                await reader

    async def _recover(self, reason: str, *, during_utterance: bool = True) -> None:
        """The connection is gone: open a new one and replay the utterance. Once per utterance;
        a drop found between utterances (nothing of this one was sent yet) does not count."""
        if self._closed:
            raise SttUnavailable("deepgram: the stream is closed")
        if during_utterance and self._reconnected:
            raise SttUnavailable(f"deepgram: connection lost again ({reason})")
        logger.warning("deepgram connection lost (%s), reconnecting", reason)
        self._reconnected = self._reconnected or during_utterance
        await self._disconnect()
        self._pieces, self._utterance_offset = [], 0.0
        await self.connect()
        for chunk in list(self._utterance):
            if not await self._send_media(chunk):
                raise SttUnavailable("deepgram: connection lost again while replaying the utterance")

    async def _send_media(self, pcm: bytes) -> bool:
        """Send audio; False when the connection turned out to be gone."""
        if not self._alive or self._socket is None:
            return False
        try:
            await self._socket.send_media(pcm)
        except Exception as exc:
            logger.info("deepgram send failed: %s", _describe(exc))
            self._alive = False
            return False
        self._sent_bytes += len(pcm)
        self._last_send = time.monotonic()
        return True

    # --- results ------------------------------------------------------------------------------

    async def _read(self, socket: AsyncV1SocketClient) -> None:
        try:
            async for message in socket:
                if isinstance(message, ListenV1Results):
                    await self._on_results(message)
                elif isinstance(message, ListenV1Error):
                    logger.warning("deepgram error message: %s", message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.info("deepgram connection ended: %s", _describe(exc))
        if socket is self._socket:
            self._alive = False
            self._changed.set()

    async def _on_results(self, message: ListenV1Results) -> None:
        alternatives = message.channel.alternatives if message.channel else []
        best = alternatives[0] if alternatives else None
        text = (best.transcript if best else "").strip()
        if message.is_final:
            end = message.start + message.duration
            self._final_end = max(self._final_end, end)
            if text:
                self._pieces.append(_Piece(text, message.start, end, float(best.confidence or 0.0)))
            if message.from_finalize:
                self._finalized = True
            self._changed.set()
        elif text and self.on_partial is not None:
            start = self._pieces[0].start if self._pieces else message.start
            partial = Transcript(
                text=" ".join([piece.text for piece in self._pieces] + [text]),
                is_final=False,
                provider=self.provider,
                start_ms=self._ms(start),
                end_ms=self._ms(message.start + message.duration),
                confidence=float(best.confidence) if best and best.confidence is not None else None,
            )
            try:
                await self.on_partial(partial)
            except Exception:  # the caller's callback must not end the stream
                logger.warning("on_partial failed", exc_info=True)

    def _ms(self, seconds: float) -> int:
        """Stream seconds to milliseconds from the start of the utterance."""
        return max(0, round((seconds - self._utterance_offset) * 1000))

    async def _keep_alive(self) -> None:
        interval = float(settings.DEEPGRAM_KEEPALIVE_SECONDS)
        while not self._closed:
            delay = self._last_send + interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if not self._alive or self._socket is None:
                await asyncio.sleep(interval)  # gone while idle: the next feed reconnects
                continue
            try:
                await self._socket.send_keep_alive()
                self._last_send = time.monotonic()
            except Exception as exc:
                logger.info("deepgram keep-alive failed: %s", _describe(exc))
                self._alive = False

    # --- SttStream ----------------------------------------------------------------------------

    async def feed(self, pcm: bytes) -> None:
        if self._closed:
            raise SttUnavailable("deepgram: the stream is closed")
        if not pcm:
            return
        first = not self._utterance
        self._utterance.append(pcm)
        self._utterance_bytes += len(pcm)
        if not await self._send_media(pcm):
            await self._recover("send failed", during_utterance=not first)  # replays this chunk too

    async def finish(self) -> Transcript:
        if self._closed:
            raise SttUnavailable("deepgram: the stream is closed")
        if not self._utterance_bytes:
            return Transcript(text="", is_final=True, provider=self.provider)
        started = time.monotonic()
        timeout = float(settings.DEEPGRAM_FINALIZE_TIMEOUT_SECONDS)
        while True:
            if not self._alive:
                await self._recover("connection closed before Finalize")
            self._finalized = False
            try:
                assert self._socket is not None
                await self._socket.send_finalize()
                self._last_send = time.monotonic()
            except Exception as exc:
                self._alive = False
                await self._recover(f"Finalize failed: {_describe(exc)}")
                continue
            outcome = await self._wait_final(time.monotonic() + timeout)
            if outcome in ("final", "covered"):
                break
            if outcome == "dropped":
                await self._recover("connection closed before the final")
                continue
            if self._pieces:  # no from_finalize in time, but the finals cover the utterance
                logger.warning("deepgram: no from_finalize result within %g s; using the finals", timeout)
                break
            await self._fail_utterance(started, f"no final within {timeout:g} s", "timeout")
        return await self._complete(started)

    async def _wait_final(self, deadline: float) -> str:
        """ "final" (from_finalize came), "covered" (finals reach the end of the audio and no
        from_finalize came within the grace), "dropped" or "timeout"."""
        grace_until: float | None = None
        while True:
            if self._finalized:
                return "final"
            if not self._alive:
                return "dropped"
            now = time.monotonic()
            remaining = deadline - now
            if self._final_end >= self._sent_bytes / (BYTES_PER_MS * 1000) - FINALIZE_SLACK_SECONDS:
                grace_until = grace_until or now + FINALIZE_GRACE_SECONDS
                if now >= grace_until:
                    return "covered"
                remaining = min(remaining, grace_until - now)
            if remaining <= 0:
                return "timeout"
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _complete(self, started: float) -> Transcript:
        pieces, seconds = self._pieces, Decimal(pcm_ms(self._utterance_bytes)) / 1000
        latency_ms = round((time.monotonic() - started) * 1000)
        transcript = Transcript(
            text=" ".join(piece.text for piece in pieces),
            is_final=True,
            provider=self.provider,
            start_ms=self._ms(pieces[0].start) if pieces else 0,
            end_ms=self._ms(pieces[-1].end) if pieces else pcm_ms(self._utterance_bytes),
            confidence=min(piece.confidence for piece in pieces) if pieces else None,
            latency_ms=latency_ms,
        )
        self._next_utterance()
        self._record(seconds, latency_ms)
        return transcript

    async def _fail_utterance(self, started: float, reason: str, outcome: str) -> None:
        latency_ms = round((time.monotonic() - started) * 1000)
        self.usage.record(
            kind="stt",
            provider=self.provider,
            model=self.model,
            units=Decimal(0),
            cost=Decimal(0),
            latency_ms=latency_ms,
            outcome=outcome,
            error=reason,
        )
        raise SttUnavailable(f"deepgram: {reason}")

    def _next_utterance(self) -> None:
        self._utterance, self._utterance_bytes, self._pieces = [], 0, []
        self._utterance_offset = self._sent_bytes / (BYTES_PER_MS * 1000)
        self._reconnected = False

    def _record(self, seconds: Decimal, latency_ms: int) -> None:
        self.usage.record(
            kind="stt",
            provider=self.provider,
            model=self.model,
            units=seconds,
            cost=usage_cost(settings.DEEPGRAM_COST_PER_MINUTE, seconds / 60),
            latency_ms=latency_ms,
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(BaseException):
                await self._keepalive
        if self._alive and self._socket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._socket.send_close_stream(), CLOSE_TIMEOUT_SECONDS)
        try:
            await self._disconnect()
        except Exception:
            logger.warning("closing the deepgram stream failed", exc_info=True)
        await self.usage.drain()


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if status is not None:
        return f"HTTP {status}: {body}" if body else f"HTTP {status}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
