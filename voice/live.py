"""The voice side of one WebSocket connection: audio in, spoken replies out.

`VoiceConnection` is what a consumer holds when its route takes audio (sessions/consumers.py).
It knows nothing of rooms, transcripts or tutors (STYLE.md: `voice` never imports `sessions`);
the consumer is its `VoiceHost` and decides what a heard utterance means there:

    binary frame -> budget (AudioBudget) -> frame_check -> VoiceInput (VAD -> STT chain)
        on_partial -> host.voice_partial (throttled)     on_final -> host.voice_final
        on_switch  -> host.voice_switch                  on_speech + tutor speaking -> barge-in
    tutor.delta / tutor.message (forwarded group events) -> ReplySpeaker (when TTS is on)

The VoiceInput is created on the first frame (or the first browser transcript), after the host
said who may speak and with what keywords (`VoiceScope`), so a listening-only socket costs
nothing. Every bad input answers an `error` {code, message}; nothing here raises to the socket.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from courses.exceptions import DomainError

logger = logging.getLogger(__name__)

TTS_MODES = ("server", "browser", "off")
CLIENT_TEXT_MAX_CHARS = 2000


@dataclass(frozen=True, slots=True)
class VoiceScope:
    """What the host allows and knows about this connection's speaker (read once, in a thread)."""

    keywords: list[str] = field(default_factory=list)
    usage: dict = field(default_factory=dict)  # tenant_id, course_id, session_id, user_id
    keep_audio: bool = False
    offset_ms: int = 0  # where the connection's audio starts on the session's clock


class VoiceHost(Protocol):
    """What a consumer provides to its VoiceConnection."""

    async def voice_scope(self) -> VoiceScope:
        """Who may speak here and how to hear them; raises DomainError when this user may not."""

    async def voice_partial(self, transcript: Any, *, offset_ms: int) -> None: ...

    async def voice_final(self, utterance: Any, *, offset_ms: int, answer: bool) -> None:
        """Persist the utterance; `answer`: whether it may start a tutor turn."""

    async def voice_switch(self, *, from_engine: str, to_engine: str | None, reason: str) -> None: ...

    async def voice_barge_in(self) -> None:
        """The speaker talked over the tutor: stop its reply and its speech everywhere."""

    def tutor_speaking(self) -> bool: ...

    async def send_event(self, event_type: str, data: Any, *, seq: int | None = None) -> None: ...

    async def send_error(self, code: str, message: str) -> None: ...

    async def limit_violation(self, code: str, message: str) -> None: ...


# Tests swap these for fakes (a scripted VoiceInput, a failing engine first in the chain).
def stt_chain_factory():
    from voice.providers import stt_chain_for

    return stt_chain_for()


def voice_input_factory(**kwargs: Any):
    from voice.pipeline import VoiceInput

    return VoiceInput(**kwargs)


def speaker_factory(**kwargs: Any):
    from voice.speech import ReplySpeaker

    return ReplySpeaker(**kwargs)


def tts_choice_factory(persona: Any = None, mode: str = "server", usage: dict | None = None):
    """A client's "server" means the operator's choice (settings.VOICE_TTS: "auto" puts OpenAI
    first when a key is set); "browser" and "off" are the client's own."""
    from voice.tts import tts_choice_for

    return tts_choice_for(persona=persona, mode=None if mode == "server" else mode, usage=usage)


def _barge_in_ms() -> int:
    return int(settings.VOICE_BARGE_IN_MS)


def _partial_interval() -> float:
    per_second = float(settings.VOICE_PARTIALS_PER_SECOND)
    return 1.0 / per_second if per_second > 0 else 0.0


def _is_backchannel(text: str) -> bool:
    from voice.vad import is_backchannel

    return is_backchannel(text)


class VoiceConnection:
    """The voice state of one socket (see the module docstring). Also the VoiceInput's listener."""

    def __init__(self, host: VoiceHost, *, persona_loader: Callable[[], Awaitable[Any]] | None = None):
        self.host = host
        self.input: Any = None
        self.scope: VoiceScope | None = None
        self.budget: Any = None
        self.speaker: Any = None
        self.tts = "off"
        self._persona_loader = persona_loader
        self._refused: DomainError | None = None
        self._refused_told_at = 0.0
        self._partial_sent_at = 0.0
        self._barge_candidate = False
        self._barged = False
        self._closed = False
        # The session's clock: read with the scope at `_scope_at`; audio heard so far and when
        # its last frame came (utterance offsets count audio, which stops while the mic is off).
        self._scope_at = 0.0
        self._heard_ms = 0
        self._heard_at: float | None = None

    # --- audio in ------------------------------------------------------------------------

    async def _ensure_input(self) -> bool:
        """Create the VoiceInput on first use; False (the speaker told) when not allowed."""
        if self.input is not None:
            return True
        if self._refused is not None:
            now = time.monotonic()
            if now - self._refused_told_at >= 1.0:  # said again at most once a second
                self._refused_told_at = now
                await self.host.send_error(self._refused.code, self._refused.message)
            return False
        try:
            self.scope = await self.host.voice_scope()
            self._scope_at = time.monotonic()
        except DomainError as exc:
            self._refused, self._refused_told_at = exc, time.monotonic()
            await self.host.send_error(exc.code, exc.message)
            return False
        from voice.providers.base import StreamOptions

        options = StreamOptions(keywords=tuple(self.scope.keywords), usage=dict(self.scope.usage))
        try:
            self.input = voice_input_factory(
                chain=stt_chain_factory(), options=options, listener=self, keep_audio=self.scope.keep_audio
            )
        except Exception:
            logger.exception("cannot start voice input")
            await self.host.send_error("stt_unavailable", "Speech recognition is not available; type instead.")
            self._refused = DomainError("Speech recognition is not available; type instead.", code="stt_unavailable")
            return False
        return True

    def _take_budget(self, ms: int) -> bool:
        if self.budget is None:
            from voice.audio import AudioBudget

            self.budget = AudioBudget(seconds_per_minute=int(settings.WS_MAX_AUDIO_SECONDS_PER_MINUTE))
        return bool(self.budget.take(ms))

    async def receive_audio(self, data: bytes) -> None:
        """One binary frame: PCM16 LE mono 16 kHz."""
        from voice.audio import AudioError, frame_check
        from voice.providers.base import pcm_ms

        try:
            frame_check(data)
        except AudioError as exc:
            await self.host.send_error(exc.code, exc.message)
            return
        if not self._take_budget(pcm_ms(data)):
            await self.host.limit_violation(
                "audio_rate_limited",
                f"At most {settings.WS_MAX_AUDIO_SECONDS_PER_MINUTE} seconds of audio a minute.",
            )
            return
        if not await self._ensure_input():
            return
        self._heard_ms += pcm_ms(data)
        self._heard_at = time.monotonic()
        try:
            await self.input.feed(data)
        except AudioError as exc:
            await self.host.send_error(exc.code, exc.message)

    async def audio_end(self) -> None:
        """`audio.end`: the client stopped its microphone; the utterance in progress ends now."""
        if self.input is not None:
            await self.input.end()

    async def client_transcript(self, data: Any) -> None:
        """`transcript.client` {text, is_final}: the browser's own recognition (no server STT)."""
        text = data.get("text") if isinstance(data, dict) else None
        is_final = data.get("is_final", True) if isinstance(data, dict) else True
        if not isinstance(text, str) or not isinstance(is_final, bool):
            await self.host.send_error("invalid", "transcript.client is {text: string, is_final: boolean}.")
            return
        if len(text) > CLIENT_TEXT_MAX_CHARS:
            await self.host.send_error(
                "message_too_long", f"A transcript has at most {CLIENT_TEXT_MAX_CHARS} characters."
            )
            return
        if not text.strip():
            return  # the browser heard nothing: not an error
        if not await self._ensure_input():
            return
        if self._tutor_speaking() and not _is_backchannel(text):
            # No audio reaches the server's VAD here: the browser's words over a talking tutor
            # are the barge-in.
            self._barge_candidate = True
        await self.input.text_result(text, is_final=is_final)

    # --- the VoiceInput's listener ---------------------------------------------------------

    async def on_speech_start(self, start_ms: int = 0) -> None:
        self._barge_candidate = False
        self._barged = False

    async def on_speech(self, voiced_ms: int = 0) -> None:
        if voiced_ms >= _barge_in_ms() and self._tutor_speaking():
            self._barge_candidate = True

    def _tutor_speaking(self) -> bool:
        return bool(self.host.tutor_speaking() or (self.speaker is not None and self.speaker.speaking))

    async def _maybe_barge_in(self, text: str) -> None:
        if self._barge_candidate and not self._barged and text.strip() and not _is_backchannel(text):
            self._barged = True
            self._barge_candidate = False
            # The host's `tts.stop` to the room comes back to this socket too, and stops its speaker.
            await self.host.voice_barge_in()

    async def on_partial(self, transcript: Any) -> None:
        await self._maybe_barge_in(transcript.text)
        now = time.monotonic()
        if now - self._partial_sent_at < _partial_interval():
            return  # the next partial or the final carries the text
        self._partial_sent_at = now
        await self.host.voice_partial(transcript, offset_ms=self._offset_ms(transcript.provider, transcript.end_ms))

    async def on_final(self, utterance: Any) -> None:
        text = (utterance.text or "").strip()
        if not text:
            return
        await self._maybe_barge_in(text)
        backchannel = bool(getattr(utterance, "backchannel", False)) or _is_backchannel(text)
        # "mhm" over a talking tutor is listening, not a turn; "yes" to a silent tutor (say, after
        # "Shall I show an example?") is an answer.
        answer = not (backchannel and self._tutor_speaking())
        self._barge_candidate = False
        self._barged = False
        self._partial_sent_at = 0.0
        if self.scope is not None and not self.scope.offset_ms and self.scope.usage.get("session_id"):
            # Read before the session started: its clock runs now, perhaps. (A refusal: the line
            # is refused with the same error below.)
            with contextlib.suppress(DomainError):
                self.scope, self._scope_at = await self.host.voice_scope(), time.monotonic()
        await self.host.voice_final(
            utterance, offset_ms=self._offset_ms(utterance.provider, utterance.end_ms),
            answer=answer,
        )

    def _offset_ms(self, provider: str, end_ms: int) -> int:
        """Where this connection's audio position 0 lies on the session's clock, for an utterance
        (or partial) ending at audio position `end_ms`: the clock when the last frame came, less
        the audio heard, so a muted minute is a minute on the clock too. A browser transcript
        (no audio of its own) ends now. 0 without a session clock (a practice conversation, a
        session not started)."""
        if self.scope is None or not self.scope.offset_ms:
            return 0
        if provider == "browser" or self._heard_at is None:
            return self._clock_ms(time.monotonic()) - int(end_ms)
        return self._clock_ms(self._heard_at) - self._heard_ms

    def _clock_ms(self, at: float) -> int:
        """The session's clock (scope.offset_ms when the scope was read) at monotonic time `at`."""
        return self.scope.offset_ms + int((at - self._scope_at) * 1000)

    async def on_switch(self, from_engine: str = "", to_engine: str | None = None, reason: str = "") -> None:
        await self.host.voice_switch(from_engine=from_engine, to_engine=to_engine, reason=reason)
        if to_engine is None:
            await self.host.send_error(
                "stt_unavailable", "Speech recognition is unavailable; your browser's recognition takes over."
            )

    # --- speech out ------------------------------------------------------------------------

    async def configure(self, data: Any) -> None:
        """`voice.config` {tts: "server"|"browser"|"off"}."""
        tts = data.get("tts") if isinstance(data, dict) else None
        if tts not in TTS_MODES:
            await self.host.send_error("invalid", 'voice.config is {tts: "server" | "browser" | "off"}.')
            return
        if self.speaker is not None and tts != self.tts:
            await self.speaker.aclose()
            self.speaker = None
        self.tts = tts
        if tts != "off" and self.speaker is None:
            # (persona, usage context) of this socket: its tutor's voice, who pays for the speech.
            persona, usage = await self._persona_loader() if self._persona_loader else (None, {})
            self.speaker = speaker_factory(
                choice=tts_choice_factory(persona=persona, mode=tts, usage=usage),
                send_event=self.host.send_event,
                send_bytes=self._send_bytes,
                usage=usage,
            )
        await self.host.send_event("voice.config", {"tts": self.tts})

    _send_bytes: Callable[[bytes], Awaitable[None]] | None = None

    def bind_send_bytes(self, send_bytes: Callable[[bytes], Awaitable[None]]) -> None:
        self._send_bytes = send_bytes

    @property
    def speaking_on(self) -> bool:
        return self.speaker is not None

    async def tutor_event(self, event_type: str, text: str) -> None:
        """A forwarded `tutor.delta` / `tutor.message` (its finished envelope): speak it."""
        if self.speaker is None:
            return
        try:
            data = json.loads(text).get("data") or {}
        except ValueError:
            return
        message_id = data.get("message_id")
        try:
            if event_type == "tutor.delta":
                if data.get("restart") and self.speaker.speaking:
                    await self.speaker.stop("restart")
                elif data.get("text"):
                    await self.speaker.feed(message_id, data["text"])
            elif event_type == "tutor.message":
                # complete: the rest, then tts.end; interrupted: tts.stop if any of it was spoken;
                # failed: what was complete, then tts.end (ReplySpeaker.finish).
                await self.speaker.finish(message_id, data.get("text") or "", status=data.get("status") or "complete")
        except Exception:
            logger.warning("speaking the tutor's reply failed", exc_info=True)

    async def stop_speaking(self, reason: str) -> bool:
        """A `tts.stop` for the room: True when this socket's speaker stopped and told its client."""
        if self.speaker is None or not self.speaker.speaking:
            return False
        await self.speaker.stop(reason)
        return True

    async def tts_done(self, data: Any) -> None:
        """`tts.done` {message_id?}: the client finished playing what it was sent."""
        message_id = data.get("message_id") if isinstance(data, dict) else None
        if self.speaker is not None:
            self.speaker.acknowledge(message_id if isinstance(message_id, int) else None)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.speaker is not None:
            try:
                await self.speaker.aclose()
            except Exception:
                logger.warning("stopping the speaker failed", exc_info=True)
        if self.input is not None:
            try:
                await self.input.aclose()
            except Exception:
                logger.warning("closing the voice input failed", exc_info=True)
