"""The edge of the WebSocket stack: who may open a socket, and the shape of what goes out.

Two ASGI middlewares wrap every WebSocket route (tutor_project/asgi.py):

- `OriginOrTicketValidator`: a browser always sends `Origin`; if it is not one of ours
  (ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS, matched by Channels' own `OriginValidator` rules) the
  handshake is rejected before accept, which the server answers with HTTP 403. A connection
  without `Origin` is a native client and must carry `?ticket=`; one with neither is let through
  unauthenticated so the consumer can close it with 4401 (a close code needs an accepted socket).
- `WebSocketAuthMiddleware`: sets `scope["user"]`, from the session cookie (only when the Origin
  was checked: a cookie is what cross-site pages would ride on) or from a one-use ticket (which
  it verifies and uses up here, whatever the route: a ticket is burnt by its first handshake).
  The consumer then checks that the ticket was issued for its route and object.

Then the envelope every server message uses, `{"type", "seq", "ts", "data"}`, and
`broadcast_on_commit`, the one way services send an event to a group.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlparse

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.http.cookie import parse_cookie
from django.utils.module_loading import import_string

from courses.exceptions import DomainError, Unauthenticated
from sessions import tickets

logger = logging.getLogger(__name__)

# scope["ws_auth"]: which credential the handshake carries.
AUTH_COOKIE = "cookie"  # a browser from an allowed Origin, with (maybe) a session cookie
AUTH_TICKET = "ticket"  # `?ticket=...`, with or without an (allowed) Origin
AUTH_NONE = "none"  # no Origin and no ticket: refused by the consumer with 4401


def query_params(scope: dict) -> dict[str, str]:
    """The handshake's query string, first value of each name."""
    raw = scope.get("query_string", b"").decode("latin1")
    return {key: values[0] for key, values in parse_qs(raw).items() if values}


def header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


# --- Plain ASGI refusals ---------------------------------------------------------------------
# Not consumers: a consumer opens a channel on the layer (a Redis SUBSCRIBE with the pub/sub
# layer) for every connection, which a refusal has no use for.


async def refuse_handshake(scope, receive, send) -> None:
    """Close before accepting: the ASGI server answers the handshake with HTTP 403."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


async def close_unknown_route(scope, receive, send) -> None:
    """An unknown `/ws/...` path: accept and close with 4404 (a close code needs an accept)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4404, "reason": "not_found"})


# --- Origin policy --------------------------------------------------------------------------


class OriginOrTicketValidator(OriginValidator):
    """Reject a browser handshake from a foreign Origin; mark which credential is to be used.

    Allowed origins are read from settings at each handshake (not at import), so a deployment's
    ALLOWED_HOSTS and tests' `override_settings` both apply.
    """

    def __init__(self, application):
        super().__init__(application, allowed_origins=())

    @property
    def allowed_origins(self) -> list[str]:  # type: ignore[override]
        hosts = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not hosts:
            hosts = ["localhost", "127.0.0.1", "[::1]"]
        # CSRF_TRUSTED_ORIGINS use "https://*.example.org"; Channels spells that ".example.org".
        hosts += [origin.replace("://*.", "://.") for origin in settings.CSRF_TRUSTED_ORIGINS]
        return hosts

    @allowed_origins.setter
    def allowed_origins(self, value) -> None:
        pass  # the parent's __init__ assigns it; settings are the only source

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("OriginOrTicketValidator only guards WebSocket connections")
        raw_origin = header(scope, b"origin")
        has_ticket = bool(query_params(scope).get("ticket"))
        if raw_origin is None:
            scope = {**scope, "ws_auth": AUTH_TICKET if has_ticket else AUTH_NONE}
            return await self.application(scope, receive, send)
        try:
            parsed = urlparse(raw_origin.decode("latin1"))
        except (UnicodeDecodeError, ValueError):
            parsed = None
        if parsed is None or not self.validate_origin(parsed):
            logger.info("WebSocket refused: Origin %r is not allowed", raw_origin[:200])
            return await refuse_handshake(scope, receive, send)
        scope = {**scope, "ws_auth": AUTH_TICKET if has_ticket else AUTH_COOKIE}
        return await self.application(scope, receive, send)


# --- Authentication -------------------------------------------------------------------------


def _session_user(cookie_header: bytes | None) -> tuple[Any, Any]:
    """The session and its user, as Django's AuthenticationMiddleware would find them."""
    engine = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    cookies = parse_cookie(cookie_header.decode("latin1")) if cookie_header else {}
    session = engine(cookies.get(settings.SESSION_COOKIE_NAME))
    # get_user verifies the session hash (a password change logs out) and, through
    # ModelBackend, refuses inactive users.
    user = auth.get_user(SimpleNamespace(session=session))
    return session, user


def _ticket_user(ticket: str) -> tuple[tickets.TicketClaims, Any]:
    claims = tickets.ticket_redeem(ticket)
    user = (
        auth.get_user_model()._default_manager.filter(pk=claims.user_id, is_active=True).first()
    )
    if user is None:
        raise Unauthenticated("The ticket's user cannot log in.", code="ticket_invalid")
    return claims, user


@database_sync_to_async
def _authenticate(scope: dict) -> dict[str, Any]:
    mode = scope.get("ws_auth", AUTH_NONE)
    if mode == AUTH_COOKIE:
        session, user = _session_user(header(scope, b"cookie"))
        return {"session": session, "user": user}
    if mode == AUTH_TICKET:
        try:
            claims, user = _ticket_user(query_params(scope)["ticket"])
        except DomainError as exc:
            return {"user": AnonymousUser(), "ws_auth_error": exc.code}
        return {"user": user, "ws_ticket": claims}
    return {"user": AnonymousUser()}


class WebSocketAuthMiddleware:
    """Populate `scope["user"]` from the session cookie or a ticket (see the module docstring).

    It replaces Channels' Cookie/Session/AuthMiddleware stack on purpose: those wrap `send` to
    save sessions on HTTP responses, which costs a call per delivered message and does nothing
    for a WebSocket.
    """

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        scope = {**scope, **(await _authenticate(scope))}
        return await self.application(scope, receive, send)


# --- Envelope and broadcasts ----------------------------------------------------------------


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with milliseconds: `2025-01-31T12:00:00.123Z`."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(event_type: str, data: Any, *, seq: int | None = None, ts: datetime | None = None) -> dict:
    """The one shape of every server message. `seq`: the persisted event's, or None (ephemeral)."""
    return {"type": event_type, "seq": seq, "ts": utc_timestamp(ts), "data": data}


def encode(content: Any) -> str:
    return json.dumps(content, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)


def group_event(event_type: str, data: Any, *, seq: int | None = None) -> dict:
    """A channel-layer message carrying an event, encoded once for every socket of the group.

    The message `type` is the event type, so a consumer can forward it (`forward_events`) or give
    it a handler; `text` is the finished envelope, sent as-is by forwarding consumers.
    """
    return {"type": event_type, "seq": seq, "text": encode(envelope(event_type, data, seq=seq))}


def group_send_now(group: str, message: dict) -> None:
    """Send to a group from sync code. A failing layer (Redis down) is logged, never raised:
    live updates pause, the data is already persisted and `after_seq` replay repairs the gap."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.warning("group_send to %s failed; clients catch up on reconnect", group, exc_info=True)


async def group_send_async(group: str, message: dict) -> None:
    """`group_send_now` for async code (a tutor reply streaming): same rule, a failing layer is
    logged, never raised."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, message)
    except Exception:
        logger.warning("group_send to %s failed; clients catch up on reconnect", group, exc_info=True)


def broadcast_on_commit(*, groups: Iterable[str], event_type: str, data: Any, seq: int | None = None) -> None:
    """Send an event to groups once the current transaction commits (immediately outside one).
    One `async_to_sync` for all the groups: from a plain thread (Celery, a command) each one
    starts an event loop."""
    message = group_event(event_type, data, seq=seq)
    targets = list(groups)

    async def send_all() -> None:
        for group in targets:
            await group_send_async(group, message)

    def send() -> None:
        if get_channel_layer() is None:
            return
        async_to_sync(send_all)()

    transaction.on_commit(send)


def control_on_commit(*, group: str, message: dict) -> None:
    """Send a control message (e.g. `ws.close`) to a group after commit."""
    transaction.on_commit(lambda: group_send_now(group, message))
