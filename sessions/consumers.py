"""WebSocket consumers: a base made of small mixins, and the routes built on it.

A concrete consumer only declares what is particular to it (Tabbycat style):

    class MonitorConsumer(RealtimeConsumer):
        object_kind = "monitor"          # what a ticket must be issued for
        url_kwarg = "session_id"         # where the object id comes from
        forward_events = frozenset()     # group events passed to the socket untouched

        def authorize(self, *, user, object_id): ...   # a selector; raises NotFound/Forbidden
        def get_groups(self, target): ...              # names from sessions.groups only
        def connect_events(self, target): ...          # what the client gets on connect

and `on_<type>` methods for the JSON messages it accepts (`chat.message` -> `on_chat_message`).
Everything else, in order of a connection's life, comes from the mixins:

1. `AccessMixin`: authenticate (cookie or ticket, see sessions/realtime.py) and authorise through
   the selector *before* joining any group; refusals accept then close with the error's
   `ws_close_code` (4401, 4403, 4404). Joins the declared groups plus the user's own group,
   through which services close a user's sockets (`ws.close`).
2. `FrameLimitsMixin`: frame size and message-rate limits (token bucket) from settings; each
   violation gets an `error`, and WS_VIOLATIONS_BEFORE_CLOSE of them within a minute close 4429.
3. `JsonCommandsMixin`: text frames as JSON `{"type", "data"}` dispatched to `on_<type>`;
   `error` for bad JSON, a bad shape or an unknown type; binary frames to `on_binary`.
4. `EnvelopeMixin`: every outgoing message as `{"type", "seq", "ts", "data"}`; group events
   listed in `forward_events` are sent as the pre-encoded envelope without any other work.

Channels 4.3 hops to a thread (`aclose_old_connections`) before *every* handler, ~65 µs a
message. Our consumers reach the database only through `database_sync_to_async`, which closes
stale connections itself on both sides of each call, so `dispatch` here skips that hop: a group
event that is only forwarded costs one `send` and touches no database (DESIGN.md, Performance).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import deque
from typing import Any, NamedTuple

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from courses.exceptions import DomainError, Unauthenticated
from sessions import groups, live, orchestration, selectors, services
from sessions.realtime import encode, envelope, group_send_async, query_params
from sessions.tutor import room_tutor, turn
from sessions.voice_live import VOICE_EVENTS, ConversationVoiceMixin, LectureVoiceMixin, RoomVoiceMixin

logger = logging.getLogger(__name__)

CLOSE_RATE_LIMITED = 4429
# The channel layer (Redis) is unreachable at connect. Not 1013: Daphne (autobahn) only lets an
# application send 1000 or 3000-4999.
CLOSE_TRY_AGAIN_LATER = 4503
VIOLATION_WINDOW_SECONDS = 60.0
_COMMAND_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
# Method names a client must not reach by choosing a `type`.
_RESERVED_COMMANDS = frozenset({"binary"})


async def close_unavailable(receive, send) -> None:
    """Plain ASGI: accept the handshake and close with CLOSE_TRY_AGAIN_LATER."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER, "reason": "unavailable"})


def is_layer_outage(exc: BaseException) -> bool:
    """A failure to reach the channel layer's server (Redis), as opposed to a bug."""
    return isinstance(exc, OSError | TimeoutError) or type(exc).__module__.startswith("redis")


class OutgoingEvent(NamedTuple):
    type: str
    data: Any
    seq: int | None = None


class EnvelopeMixin:
    """Outgoing messages, and the dispatch of channel-layer events."""

    # Group event types sent to the socket as they are (their `text` is the finished envelope).
    forward_events: frozenset[str] = frozenset()
    _closed = False

    async def send_event(self, event_type: str, data: Any, *, seq: int | None = None) -> None:
        if not self._closed:
            await self.send(text_data=encode(envelope(event_type, data, seq=seq)))

    async def send_error(self, code: str, message: str) -> None:
        await self.send_event("error", {"code": code, "message": message})

    async def close_with(self, code: int, reason: str = "") -> None:
        if not self._closed:
            self._closed = True
            await self.close(code=code, reason=reason or None)

    async def dispatch(self, message: dict) -> None:
        # No `aclose_old_connections` here: see the module docstring.
        event_type = message["type"]
        if event_type in self.forward_events:
            if not self._closed:
                await self.send(text_data=message["text"])
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            # An event meant for another kind of consumer in the same group: not worth a crash.
            logger.debug("%s ignores event %s", type(self).__name__, event_type)
            return
        await handler(message)


class FrameLimitsMixin:
    """Per-connection limits on frame size and message rate (settings WS_*)."""

    # Routes that take audio set this: binary frames then count against the audio budget (voice)
    # rather than the message rate, which a 25-frames-a-second stream would exceed.
    accepts_binary = False

    def init_limits(self) -> None:
        self.max_text_bytes = int(settings.WS_MAX_TEXT_FRAME_BYTES)
        self.max_binary_bytes = int(settings.WS_MAX_BINARY_FRAME_BYTES)
        self.rate_per_second = float(settings.WS_MAX_MESSAGES_PER_SECOND)
        self.burst = max(1.0, float(settings.WS_MESSAGE_BURST))
        self.violations_before_close = max(1, int(settings.WS_VIOLATIONS_BEFORE_CLOSE))
        self._tokens = self.burst
        self._refilled_at = time.monotonic()
        self._violations: deque[float] = deque()

    def take_message_token(self) -> bool:
        """Token bucket: `burst` messages at once, then `rate_per_second` on average."""
        if self.rate_per_second <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled_at) * self.rate_per_second)
        self._refilled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def limit_violation(self, code: str, message: str) -> None:
        now = time.monotonic()
        self._violations.append(now)
        while self._violations and now - self._violations[0] > VIOLATION_WINDOW_SECONDS:
            self._violations.popleft()
        await self.send_error(code, message)
        if len(self._violations) >= self.violations_before_close:
            await self.close_with(CLOSE_RATE_LIMITED, "rate_limited")

    async def websocket_receive(self, message: dict) -> None:
        if self._closed:
            return
        text = message.get("text")
        if text is not None:
            # A character is at most 4 bytes in UTF-8: most frames skip the encoding.
            if len(text) * 4 > self.max_text_bytes and len(text.encode()) > self.max_text_bytes:
                await self.limit_violation(
                    "frame_too_large", f"Text frames are limited to {self.max_text_bytes} bytes."
                )
                return
            if not self.take_message_token():
                await self.limit_violation("rate_limited", "Too many messages; slow down.")
                return
            await self.receive_text(text)
            return
        data = message.get("bytes") or b""
        if len(data) > self.max_binary_bytes:
            await self.limit_violation(
                "frame_too_large", f"Binary frames are limited to {self.max_binary_bytes} bytes."
            )
            return
        if not self.accepts_binary and not self.take_message_token():
            await self.limit_violation("rate_limited", "Too many messages; slow down.")
            return
        await self.on_binary(data)


class JsonCommandsMixin:
    """Incoming text frames: JSON `{"type": "a.b", "data": {...}}` -> `on_a_b(data)`."""

    async def receive_text(self, text: str) -> None:
        try:
            content = json.loads(text)
        except ValueError:
            await self.send_error("bad_json", "The message is not valid JSON.")
            return
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_error("bad_message", 'Messages are JSON objects: {"type": ..., "data": ...}.')
            return
        command = content["type"]
        handler = self.command_handler(command)
        if handler is None:
            await self.send_error("unknown_type", f"Unknown message type {command[:60]!r}.")
            return
        # Either {"type", "data": {...}} or the fields next to "type".
        data = content["data"] if "data" in content else {k: v for k, v in content.items() if k != "type"}
        try:
            await handler(data)
        except DomainError as exc:
            await self.send_error(exc.code, exc.message)
        except Exception:
            logger.exception("%s failed on a %r message", type(self).__name__, command)
            await self.send_error("internal_error", "Something went wrong; try again.")

    def command_handler(self, command: str):
        if len(command) > 60 or not _COMMAND_TYPE.match(command) or command in _RESERVED_COMMANDS:
            return None
        return getattr(self, "on_" + command.replace(".", "_"), None)

    async def on_ping(self, data: Any) -> None:
        """Keep-alive and latency probe: `pong` echoes the client's `data`."""
        await self.send_event("pong", data)

    async def on_binary(self, data: bytes) -> None:
        """Binary frames (audio on routes that take it). Default: not supported here."""
        await self.send_error("binary_not_supported", "This connection does not take binary frames.")


class AccessMixin:
    """Authenticate, authorise, join groups, accept: in that order (see the module docstring)."""

    object_kind: str = ""  # a sessions.tickets.KINDS value
    url_kwarg: str | None = None
    _started = False  # the first message (websocket.connect) reached us

    def get_object_id(self, user) -> int | None:
        return int(self.scope["url_route"]["kwargs"][self.url_kwarg])

    def authorize(self, *, user, object_id: int | None) -> Any:
        """Return the object this socket is about, or raise a DomainError. Runs in a thread."""
        raise NotImplementedError

    def get_groups(self, target: Any) -> list[str]:
        """Groups to join besides the user's own, from sessions.groups functions."""
        return []

    def connect_events(self, target: Any) -> list[OutgoingEvent]:
        """Events sent right after accept (a snapshot). Runs in a thread, after the group joins,
        so nothing that happens meanwhile is missed."""
        return []

    def authenticate_and_authorize(self) -> tuple[Any, int | None, Any]:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            raise Unauthenticated(
                "Log in, or connect with a join ticket.",
                code=self.scope.get("ws_auth_error") or "unauthenticated",
            )
        object_id = self.get_object_id(user)
        claims = self.scope.get("ws_ticket")
        if claims is not None and (claims.kind != self.object_kind or claims.object_id != object_id):
            raise Unauthenticated("The ticket was issued for another connection.", code="ticket_mismatch")
        return user, object_id, self.authorize(user=user, object_id=object_id)

    async def websocket_connect(self, message: dict) -> None:
        self._started = True
        self.groups = []
        self.init_limits()
        after_seq = query_params(self.scope).get("after_seq", "")
        # Reconnecting clients ask for the persisted events they missed (replay: later routes).
        self.after_seq = int(after_seq) if after_seq.isdigit() else None
        try:
            self.user, self.object_id, self.target = await database_sync_to_async(
                self.authenticate_and_authorize
            )()
        except DomainError as exc:
            await self.refuse(exc)
            return
        try:
            for group in [*self.get_groups(self.target), groups.user_group(self.user.pk)]:
                self.groups.append(group)
                await self.channel_layer.group_add(group, self.channel_name)
        except Exception as exc:
            if not is_layer_outage(exc):
                raise
            logger.warning("cannot join groups; is the channel layer (Redis) up? %r", exc)
            await self.leave_groups()
            await self.accept()
            await self.close_with(CLOSE_TRY_AGAIN_LATER, "unavailable")
            return
        try:
            events = await database_sync_to_async(self.connect_events)(self.target)
        except DomainError as exc:
            await self.leave_groups()
            await self.refuse(exc)
            return
        await self.accept()
        for event in events:
            await self.send_event(event.type, event.data, seq=event.seq)

    async def refuse(self, exc: DomainError) -> None:
        # A close code only reaches the client on an accepted socket; before accept it is a 403.
        await self.accept()
        await self.close_with(exc.ws_close_code, exc.code)

    async def leave_groups(self) -> None:
        for group in self.groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                logger.warning("group_discard(%s) failed", group, exc_info=True)
        self.groups = []

    async def ws_close(self, message: dict) -> None:
        """`ws.close` {code, kind?, object_id?} on the user's group: close this socket if it
        matches (no kind: every socket of the user)."""
        kind = message.get("kind")
        object_id = message.get("object_id")
        if kind and (kind != self.object_kind or (object_id is not None and object_id != self.object_id)):
            return
        await self.close_with(int(message.get("code") or 4401), "closed_by_server")


class RealtimeConsumer(
    AccessMixin, JsonCommandsMixin, FrameLimitsMixin, EnvelopeMixin, AsyncJsonWebsocketConsumer
):
    """The base of every WebSocket route of the project."""

    async def __call__(self, scope, receive, send):
        try:
            return await super().__call__(scope, receive, send)
        except Exception as exc:
            if not is_layer_outage(exc):
                raise
            # Redis down: with the pub/sub layer Channels fails opening the consumer's channel
            # (a SUBSCRIBE) before connect; with the list-based layer its receive loop fails
            # later. Either way the client is told to come back (4503), not left with a 1011.
            logger.warning("channel layer unavailable, closing with %s: %r", CLOSE_TRY_AGAIN_LATER, exc)
            if not self._started:
                await close_unavailable(receive, send)
            elif not self._closed:
                self._closed = True
                await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER, "reason": "unavailable"})

    async def websocket_disconnect(self, message: dict) -> None:
        self._closed = True
        await super().websocket_disconnect(message)


# --- Routes -----------------------------------------------------------------------------------


class ReplayMixin:
    """`?after_seq=N`: the persisted events after N are sent from the database right after the
    snapshot; live events of the group with a seq already replayed are dropped, so each arrives
    exactly once and in order (events reaching the group during the replay wait in the
    consumer's queue until connect is done)."""

    replayed_seq = 0

    def replay_events(self, *, session_id: int, room_id: int | None) -> list[OutgoingEvent]:
        if self.after_seq is None:
            return []
        events = [
            OutgoingEvent(e["event_type"], e["data"], e["seq"])
            for e in selectors.segment_events_after(session_id=session_id, room_id=room_id, after_seq=self.after_seq)
        ]
        if events:
            self.replayed_seq = events[-1].seq
        return events

    async def dispatch(self, message: dict) -> None:
        seq = message.get("seq")
        if seq is not None and seq <= self.replayed_seq and message["type"] in self.forward_events:
            return
        await super().dispatch(message)


# Persisted events of a session, forwarded as they are to room and monitor sockets.
SESSION_EVENTS = frozenset({"transcript.final", "tutor.message", "room.broadcast", "room.status", "session.status"})
# The confusion radar's events (analytics/live.py), for the session's monitor only; not persisted.
MONITOR_ANALYTICS_EVENTS = frozenset({"alert.confusion", "analytics.update"})


class MonitorConsumer(ReplayMixin, RealtimeConsumer):
    """`/ws/sessions/<session_id>/monitor/`: the professor watching every room of a session,
    and the steering console (broadcast, teaching mode, hint, moves, end)."""

    object_kind = "monitor"
    url_kwarg = "session_id"
    forward_events = SESSION_EVENTS | MONITOR_ANALYTICS_EVENTS | frozenset({"transcript.partial", "voice.engine"})

    def authorize(self, *, user, object_id):
        return selectors.session_get_for_monitor(user=user, session_id=object_id)

    def get_groups(self, session) -> list[str]:
        return [groups.session_monitor_group(session.id)]

    def connect_events(self, session) -> list[OutgoingEvent]:
        session.refresh_from_db()
        snapshot = OutgoingEvent("session.status", selectors.session_status_for_monitor(session=session))
        extras = [OutgoingEvent(kind, data) for kind, data in live.monitor_snapshot_events(session_id=session.id)]
        return [snapshot, *extras, *self.replay_events(session_id=session.id, room_id=None)]

    def _session(self):
        return selectors.session_get_for_monitor(user=self.user, session_id=self.object_id)

    async def on_room_broadcast(self, data: Any) -> None:
        data = data if isinstance(data, dict) else {}

        def run():
            live.room_broadcast(
                session=self._session(), by=self.user, text=data.get("text"), room_id=data.get("room_id", "all")
            )

        await database_sync_to_async(run)()

    async def on_session_mode(self, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        await database_sync_to_async(
            lambda: live.session_mode_switch(session=self._session(), mode=data.get("mode"), room_id=data.get("room_id", "all"))
        )()

    async def on_tutor_hint(self, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        await database_sync_to_async(lambda: live.session_hint_set(session=self._session(), text=data.get("text", "")))()

    async def on_assignment_move(self, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        await database_sync_to_async(
            lambda: orchestration.assignment_move_by_ids(
                session=self._session(), student_id=data.get("student_id"), room_id=data.get("room_id"), by=self.user
            )
        )()

    async def on_session_end(self, data: Any) -> None:
        await database_sync_to_async(lambda: orchestration.session_end(session=self._session(), by=self.user))()

    async def on_confusion_clarify(self, data: Any) -> None:
        """"Clarify for everyone" {topic, text?}: a hint to every tutor and a broadcast to every
        room (sessions.live.session_clarify); the radar marks the topic."""
        data = data if isinstance(data, dict) else {}
        await database_sync_to_async(
            lambda: live.session_clarify(session=self._session(), by=self.user, topic=data.get("topic"), text=data.get("text"))
        )()


class RoomConsumer(RoomVoiceMixin, ReplayMixin, RealtimeConsumer):
    """`/ws/rooms/<room_id>/`: a breakout room's students (each on their own socket) and whoever
    may monitor its session. A student's `chat.message` becomes the room's next line; the room
    tutor answers the room (sessions/tutor/room_tutor.py)."""

    object_kind = "room"
    url_kwarg = "room_id"
    forward_events = SESSION_EVENTS | frozenset({"tutor.thinking", "tutor.delta"}) | VOICE_EVENTS

    def authorize(self, *, user, object_id):
        return selectors.room_get_for_participant(user=user, room_id=object_id)

    def get_groups(self, room) -> list[str]:
        return [groups.room_group(room.id)]

    def connect_events(self, room) -> list[OutgoingEvent]:
        live.room_open(room)
        snapshot = OutgoingEvent("room.status", selectors.room_status(room=room))
        return [snapshot, *self.replay_events(session_id=room.session_id, room_id=room.id)]

    def _post_line(self, text: Any):
        room = selectors.room_get_for_speaker(user=self.user, room_id=self.object_id)
        turn.turn_rate_check(user_id=self.user.pk)
        live.room_line_post(room=room, user=self.user, text=text)
        # In the same thread hop: is the tutor replying already (then this line waits its turn)?
        return room_tutor.room_tutor_mark_line(room.pk)

    async def on_chat_message(self, data: Any) -> None:
        text = data.get("text") if isinstance(data, dict) else None
        busy = await database_sync_to_async(self._post_line)(text)
        await room_tutor.room_tutor_nudge(self.object_id, busy=busy)

    async def on_tutor_interrupt(self, data: Any) -> None:
        await room_tutor.room_tutor_stop(self.object_id)
        await group_send_async(groups.room_group(self.object_id), {"type": "tutor.cancel"})

    async def tutor_cancel(self, message: dict) -> None:
        """A stop pressed in another process, or the session ending: the reply may run here."""
        if self.voice_cancel_stale(message):
            return
        await room_tutor.room_tutor_stop(self.object_id)

    async def room_moved(self, message: dict) -> None:
        """This student was moved (user group): tell the client where to, then close (4409)."""
        if message.get("from_room") != self.object_id:
            return
        from sessions.routing import room_ws_path

        to_room = message.get("to_room")
        await self.send_event(
            "room.moved",
            {"from_room": self.object_id, "to_room": to_room, "ws_url": room_ws_path(to_room) if to_room else None},
        )
        await self.close_with(int(message.get("code") or 4409), "moved")


class TenantConsumer(RealtimeConsumer):
    """`/ws/tenant/`: announcements to every user of the caller's tenant."""

    object_kind = "tenant"
    forward_events = frozenset({"tenant.announcement"})

    def get_object_id(self, user) -> int | None:
        return user.tenant_id

    def authorize(self, *, user, object_id):
        return selectors.tenant_get_for_member(user=user)

    def get_groups(self, tenant) -> list[str]:
        return [groups.tenant_group(tenant.id)]



class ConversationConsumer(ConversationVoiceMixin, RealtimeConsumer):
    """`/ws/conversations/<conversation_id>/`: a student's practice conversation with the tutor.

    `chat.message` persists the question and starts the reply as a task of its own, so the
    socket keeps reading and `tutor.interrupt` gets through while the reply streams. Every event
    of the conversation, this socket's own included, arrives through the conversation's group.
    """

    object_kind = "conversation"
    url_kwarg = "conversation_id"
    forward_events = frozenset({"transcript.final", "tutor.thinking", "tutor.delta", "tutor.message"}) | VOICE_EVENTS

    def authorize(self, *, user, object_id):
        return selectors.conversation_get_for_student(user=user, conversation_id=object_id)

    def get_groups(self, conversation) -> list[str]:
        return [groups.conversation_group(conversation.id)]

    def connect_events(self, conversation) -> list[OutgoingEvent]:
        services.conversation_open(conversation=conversation)
        events = [OutgoingEvent("conversation.status", selectors.conversation_status(conversation=conversation))]
        if self.after_seq is not None:
            for message in selectors.conversation_messages(conversation=conversation, after_seq=self.after_seq):
                event = selectors.message_event(message, conversation=conversation)
                events.append(OutgoingEvent(event["event_type"], event["data"], event["seq"]))
        return events

    async def on_chat_message(self, data: Any) -> None:
        text = data.get("text") if isinstance(data, dict) else None
        _question, plan = await database_sync_to_async(turn.turn_begin)(
            conversation_id=self.object_id, user=self.user, text=text
        )
        await turn.turn_start(plan)

    async def on_tutor_interrupt(self, data: Any) -> None:
        await turn.turn_cancel_everywhere(self.object_id)

    async def on_tutor_retry(self, data: Any) -> None:
        plan = await database_sync_to_async(turn.turn_retry_begin)(conversation_id=self.object_id, user=self.user)
        await turn.turn_start(plan)

    async def tutor_cancel(self, message: dict) -> None:
        """A stop pressed on a socket of another process: the reply may be running here."""
        if self.voice_cancel_stale(message):
            return
        await turn.turn_cancel(self.object_id)


class LectureConsumer(LectureVoiceMixin, RealtimeConsumer):
    """`/ws/sessions/<session_id>/lecture/`: the professor's microphone in the main room. Binary
    audio frames become lecture lines (sessions/voice_live.py), shown on the monitor and read by
    every room tutor; the socket gets its own `transcript.partial` / `transcript.final`."""

    object_kind = "lecture"
    url_kwarg = "session_id"

    def authorize(self, *, user, object_id):
        return selectors.session_get_for_lecturer(user=user, session_id=object_id)

    def connect_events(self, session) -> list[OutgoingEvent]:
        return [OutgoingEvent("lecture.status", {"session_id": session.pk, "status": session.status})]
