"""Voice on the session sockets: what a heard utterance means in a room, a practice
conversation and the lecture. The consumers (sessions/consumers.py) mix these in; the speech
toolkit itself is voice/live.py (`VoiceConnection`), which never imports `sessions`.

    frame -> VoiceConnection (budget, frame_check, VAD, STT chain) -> this mixin (the host):
      partial -> `transcript.partial` (not persisted, no seq) to the room and the monitor
      final   -> persisted line (`transcript.final`, source speech) -> room tutor / practice turn
      switch  -> UsageEvent (error) + session.degraded["stt"] + `voice.engine` to the monitor
      barge-in -> reply cancelled (as `tutor.interrupt`) + `tts.stop` {reason: barge_in} to the room
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.db import database_sync_to_async

from courses.exceptions import DomainError
from sessions import groups, live, selectors
from sessions.realtime import group_event, group_send_async
from sessions.tutor import room_tutor, turn
from voice.live import VoiceConnection, VoiceScope

logger = logging.getLogger(__name__)

TUTOR_EVENTS = frozenset({"tutor.thinking", "tutor.delta", "tutor.message"})
# Group events every voice-capable socket passes on as they are.
VOICE_EVENTS = frozenset({"transcript.partial", "tts.stop"})


def topic_words(topic: str) -> list[str]:
    """The words of a room topic worth hearing exactly (recognizer keywords)."""
    return [word for word in "".join(c if c.isalnum() else " " for c in topic or "").lower().split() if len(word) > 2]


def _keywords(course, extra: str = "") -> list[str]:
    words: list[str] = []
    for term in [*(str(t) for t in course.scope_terms or []), *topic_words(extra)]:
        if term and term.lower() not in (w.lower() for w in words):
            words.append(term)
    return words


def _wav(utterance: Any, keep: bool) -> bytes | None:
    audio = getattr(utterance, "audio", None)
    if not keep or not audio:
        return None
    from voice.audio import pcm_to_wav

    return pcm_to_wav(audio)


def _event_data(message: dict) -> dict:
    try:
        data = json.loads(message["text"]).get("data")
    except (KeyError, TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class VoiceMixin:
    """The voice side of a consumer: binary frames, `audio.end`, `transcript.client`,
    `voice.config`, `tts.done`; it is the `VoiceHost` of its `VoiceConnection`."""

    accepts_binary = True
    voice: VoiceConnection | None = None
    _tutor_streaming = False
    _tutor_reply_id: int | None = None
    _voice_speaker: dict[str, Any] | None = None
    _voice_usage: dict[str, Any] | None = None

    def _voice(self) -> VoiceConnection:
        if self.voice is None:
            self.voice = VoiceConnection(self, persona_loader=self._voice_persona)
            self.voice.bind_send_bytes(self._send_audio_bytes)
        return self.voice

    async def _send_audio_bytes(self, data: bytes) -> None:
        if not self._closed:
            await self.send(bytes_data=data)

    async def _voice_persona(self) -> Any:
        return await database_sync_to_async(self.voice_persona_sync)()

    def voice_persona_sync(self) -> tuple[Any, dict[str, Any]]:
        """(the persona whose voice speaks here, the usage context of its speech)."""
        return None, {}

    # --- commands ------------------------------------------------------------------------

    async def on_binary(self, data: bytes) -> None:
        try:
            await self._voice().receive_audio(data)
        except Exception:  # as for text commands (JsonCommandsMixin): an error, not a dead socket
            logger.exception("%s failed on an audio frame", type(self).__name__)
            await self.send_error("internal_error", "Something went wrong with the audio; try again.")

    async def on_audio_end(self, data: Any) -> None:
        await self._voice().audio_end()

    async def on_transcript_client(self, data: Any) -> None:
        await self._voice().client_transcript(data)

    async def on_voice_config(self, data: Any) -> None:
        await self._voice().configure(data)

    async def on_tts_done(self, data: Any) -> None:
        await self._voice().tts_done(data)

    # --- events ------------------------------------------------------------------------------

    def tutor_speaking(self) -> bool:
        return self._tutor_streaming

    def voice_cancel_stale(self, message: dict) -> bool:
        """A barge-in's `tutor.cancel` names the reply it stops: once that reply closed here (its
        `tutor.message` came first), the cancel must not stop the reply to the new utterance."""
        reply_id = message.get("message_id")
        return reply_id is not None and reply_id != self._tutor_reply_id

    def _cancel_event(self) -> dict:
        return {"type": "tutor.cancel", "message_id": self._tutor_reply_id}

    async def dispatch(self, message: dict) -> None:
        event_type = message["type"]
        if event_type in TUTOR_EVENTS:
            self._tutor_streaming = event_type != "tutor.message"
            if event_type == "tutor.thinking":  # once a reply: worth reading its id
                self._tutor_reply_id = _event_data(message).get("message_id")
            elif event_type == "tutor.message":
                self._tutor_reply_id = None
            if self.voice is not None and self.voice.speaking_on and event_type != "tutor.thinking":
                await super().dispatch(message)
                await self.voice.tutor_event(event_type, message["text"])
                return
        elif event_type == "tts.stop" and self.voice is not None and await self.voice.stop_speaking("barge_in"):
            return  # the speaker stopped its audio and sent `tts.stop` itself
        await super().dispatch(message)

    async def websocket_disconnect(self, message: dict) -> None:
        if self.voice is not None:
            self._closed = True  # the last utterance is still persisted; nothing is sent any more
            await self.voice.aclose()
        await super().websocket_disconnect(message)

    # --- VoiceHost, shared parts ---------------------------------------------------------------

    async def voice_scope(self) -> VoiceScope:
        scope, speaker = await database_sync_to_async(self.voice_scope_sync)()
        self._voice_speaker = speaker
        self._voice_usage = dict(scope.usage)
        return scope

    def voice_scope_sync(self) -> tuple[VoiceScope, dict[str, Any]]:
        """(who may speak here and with which keywords, the speaker's `transcript.*` identity).
        Each route's mixin below answers it (room, conversation, lecture), as consumers answer
        `AccessMixin.authorize`. Runs in a thread; raises a DomainError to refuse the speaker."""
        raise NotImplementedError

    async def voice_switch(self, *, from_engine: str, to_engine: str | None, reason: str) -> None:
        usage = self._voice_usage or {}
        try:
            await database_sync_to_async(live.stt_switch_record)(
                tenant_id=usage.get("tenant_id"), session_id=usage.get("session_id"), room_id=self.voice_room_id(),
                course_id=usage.get("course_id"), user_id=usage.get("user_id"),
                from_engine=from_engine, to_engine=to_engine, reason=reason,
            )
        except Exception:
            logger.exception("recording an STT switch failed")
        if usage.get("session_id") is None:
            # No monitor (a practice conversation): the speaker's own socket hears of it.
            await self.send_event(
                "voice.engine", {"room_id": None, "from": from_engine, "to": to_engine, "reason": reason}
            )

    def voice_room_id(self) -> int | None:
        return None

    async def _voice_post(self, run) -> Any:
        """Run a persisting step in a thread; a DomainError goes to the socket as `error`."""
        try:
            return await database_sync_to_async(run)()
        except DomainError as exc:
            await self.send_error(exc.code, exc.message)
            return _FAILED


_FAILED = object()


class RoomVoiceMixin(VoiceMixin):
    """A breakout room: a student's speech becomes the room's line and nudges the room tutor."""

    def voice_room_id(self) -> int | None:
        return self.object_id

    def voice_scope_sync(self) -> tuple[VoiceScope, dict[str, Any]]:
        # Only the room's students speak here (the professor broadcasts from the monitor).
        room = selectors.room_get_for_speaker(user=self.user, room_id=self.object_id)
        session = room.session
        course = session.course
        scope = VoiceScope(
            keywords=_keywords(course, room.topic),
            usage={"tenant_id": session.tenant_id, "course_id": course.pk, "session_id": session.pk, "user_id": self.user.pk},
            keep_audio=bool(course.tenant.keep_audio),
            offset_ms=live.session_offset_ms(session),
        )
        return scope, {"id": self.user.pk, "name": self.user.display_name, "kind": "student"}

    def voice_persona_sync(self) -> tuple[Any, dict[str, Any]]:
        session = self.target.session
        usage = {"tenant_id": session.tenant_id, "course_id": session.course_id, "session_id": session.pk, "user_id": self.user.pk}
        return session.persona or session.course.default_persona, usage

    async def voice_partial(self, transcript: Any, *, offset_ms: int) -> None:
        usage = self._voice_usage or {}
        await live.transcript_partial_send(
            session_id=usage.get("session_id"), room_id=self.object_id, speaker=self._voice_speaker or {},
            text=transcript.text, start_ms=offset_ms + int(transcript.start_ms),
            end_ms=offset_ms + int(transcript.end_ms), provider=transcript.provider,
        )

    async def voice_final(self, utterance: Any, *, offset_ms: int, answer: bool) -> None:
        keep = bool(self.voice and self.voice.scope and self.voice.scope.keep_audio)

        def run() -> bool | None:
            room = selectors.room_get_for_speaker(user=self.user, room_id=self.object_id)
            live.room_line_post(
                room=room, user=self.user, text=utterance.text, source="speech", provider=utterance.provider,
                start_ms=offset_ms + int(utterance.start_ms), end_ms=offset_ms + int(utterance.end_ms),
                audio=_wav(utterance, keep),
            )
            return room_tutor.room_tutor_mark_line(room.pk) if answer else None

        busy = await self._voice_post(run)
        if busy is _FAILED or not answer:
            return
        await room_tutor.room_tutor_nudge(self.object_id, busy=busy)

    async def voice_barge_in(self) -> None:
        """As `tutor.interrupt`, plus `tts.stop` to every socket of the room."""
        group = groups.room_group(self.object_id)
        # Speech first (it is what the room hears), then the reply, whose close follows.
        await group_send_async(group, group_event("tts.stop", {"reason": "barge_in"}))
        cancel = self._cancel_event()
        await room_tutor.room_tutor_stop(self.object_id)
        await group_send_async(group, cancel)


class ConversationVoiceMixin(VoiceMixin):
    """A practice conversation: a final utterance is the next question, as `chat.message`."""

    def voice_scope_sync(self) -> tuple[VoiceScope, dict[str, Any]]:
        conversation = selectors.conversation_get_for_student(user=self.user, conversation_id=self.object_id)
        course = conversation.course
        scope = VoiceScope(
            keywords=_keywords(course),
            usage={"tenant_id": conversation.tenant_id, "course_id": course.pk, "session_id": None, "user_id": self.user.pk},
            keep_audio=bool(course.tenant.keep_audio),
        )
        return scope, {"id": self.user.pk, "name": self.user.display_name, "kind": "student"}

    def voice_persona_sync(self) -> tuple[Any, dict[str, Any]]:
        conversation = self.target
        usage = {"tenant_id": conversation.tenant_id, "course_id": conversation.course_id,
                 "conversation_id": conversation.pk, "user_id": self.user.pk}
        return conversation.persona or conversation.course.default_persona, usage

    async def voice_partial(self, transcript: Any, *, offset_ms: int) -> None:
        await live.transcript_partial_send(
            session_id=None, room_id=None, conversation_id=self.object_id, speaker=self._voice_speaker or {},
            text=transcript.text, start_ms=int(transcript.start_ms), end_ms=int(transcript.end_ms),
            provider=transcript.provider,
        )

    async def voice_final(self, utterance: Any, *, offset_ms: int, answer: bool) -> None:
        keep = bool(self.voice and self.voice.scope and self.voice.scope.keep_audio)
        spoken = {"source": "speech", "provider": utterance.provider, "audio_wav": _wav(utterance, keep)}
        if not answer:
            from sessions.services import conversation_message_post

            def keep_only() -> None:
                conversation = selectors.conversation_get_for_student(user=self.user, conversation_id=self.object_id)
                conversation_message_post(conversation=conversation, author=self.user, text=utterance.text, **spoken)

            await self._voice_post(keep_only)
            return
        result = await self._voice_post(
            lambda: turn.turn_begin(conversation_id=self.object_id, user=self.user, text=utterance.text, **spoken)
        )
        if result is _FAILED:
            return
        _question, plan = result
        await turn.turn_start(plan)

    async def voice_barge_in(self) -> None:
        group = groups.conversation_group(self.object_id)
        await group_send_async(group, group_event("tts.stop", {"reason": "barge_in"}))
        cancel = self._cancel_event()
        await turn.turn_cancel(self.object_id)
        await group_send_async(group, cancel)


class LectureVoiceMixin(VoiceMixin):
    """The main-room lecture: the professor's speech becomes lecture lines (room empty), which
    the monitor shows and every room tutor reads into its prompt."""

    def voice_scope_sync(self) -> tuple[VoiceScope, dict[str, Any]]:
        session = selectors.session_get_for_lecturer(user=self.user, session_id=self.object_id)
        course = session.course
        scope = VoiceScope(
            keywords=_keywords(course, session.title),
            usage={"tenant_id": session.tenant_id, "course_id": course.pk, "session_id": session.pk, "user_id": self.user.pk},
            keep_audio=bool(course.tenant.keep_audio),
            offset_ms=live.session_offset_ms(session),
        )
        return scope, {"id": self.user.pk, "name": self.user.display_name, "kind": "professor"}

    async def voice_partial(self, transcript: Any, *, offset_ms: int) -> None:
        data = {
            "segment_id": None, "room_id": None, "speaker": self._voice_speaker or {}, "text": transcript.text,
            "source": "speech", "start_ms": offset_ms + int(transcript.start_ms),
            "end_ms": offset_ms + max(int(transcript.start_ms), int(transcript.end_ms)),
            "provider": transcript.provider,
        }
        await self.send_event("transcript.partial", data)
        await live.transcript_partial_send(
            session_id=self.object_id, room_id=None, speaker=data["speaker"], text=data["text"],
            start_ms=data["start_ms"], end_ms=data["end_ms"], provider=data["provider"],
        )

    async def voice_final(self, utterance: Any, *, offset_ms: int, answer: bool) -> None:
        keep = bool(self.voice and self.voice.scope and self.voice.scope.keep_audio)

        def run() -> dict[str, Any]:
            session = selectors.session_get_for_lecturer(user=self.user, session_id=self.object_id)
            segment = live.lecture_line_post(
                session=session, user=self.user, text=utterance.text, provider=utterance.provider,
                start_ms=offset_ms + int(utterance.start_ms), end_ms=offset_ms + int(utterance.end_ms),
                audio=_wav(utterance, keep),
            )
            return live.segment_event(segment)

        event = await self._voice_post(run)
        if event is not _FAILED:
            # The monitor group has it (after commit); the lecturer's own socket gets it here.
            await self.send_event(event["event_type"], event["data"], seq=event["seq"])

    async def voice_barge_in(self) -> None:
        """Nobody answers the lecture: nothing to interrupt."""

    def tutor_speaking(self) -> bool:
        return False
