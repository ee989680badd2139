"""One-use join tickets for WebSocket clients that send no Origin (mobile, Electron).

A ticket is `django.core.signing` output (HMAC with SECRET_KEY, timestamped), bound to one user
and one object (`kind` + `id`, e.g. room 3), valid `WS_TICKET_TTL_SECONDS` (at most 60) and
redeemable once: its random nonce is claimed with `cache.add`, which is atomic, and the cache is
Redis whenever REDIS_URL is set, so every Daphne process agrees on what was used.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.cache import cache

from courses.exceptions import Unauthenticated

SALT = "sessions.ws-ticket"
MAX_TTL_SECONDS = 60
# What a ticket can open; each WebSocket route declares one (RealtimeConsumer.object_kind).
KINDS = frozenset({"room", "monitor", "conversation", "tenant", "lecture"})


@dataclass(frozen=True, slots=True)
class TicketClaims:
    user_id: int
    kind: str
    object_id: int
    nonce: str


def ticket_ttl_seconds() -> int:
    """The lifetime of a ticket: the setting, never longer than a minute."""
    return max(1, min(int(settings.WS_TICKET_TTL_SECONDS), MAX_TTL_SECONDS))


def ticket_issue(*, user_id: int, kind: str, object_id: int) -> str:
    """A signed ticket letting `user_id` open the `kind` route of `object_id` once."""
    if kind not in KINDS:
        raise ValueError(f"unknown ticket kind {kind!r}")
    payload = {"u": int(user_id), "k": kind, "o": int(object_id), "n": secrets.token_urlsafe(16)}
    return signing.dumps(payload, salt=SALT, compress=False)


def ticket_verify(ticket: str) -> TicketClaims:
    """The claims of a genuine, unexpired ticket; Unauthenticated otherwise. Does not use it up."""
    try:
        payload = signing.loads(ticket, salt=SALT, max_age=ticket_ttl_seconds())
    except signing.SignatureExpired:
        raise Unauthenticated("The ticket has expired.", code="ticket_expired") from None
    except signing.BadSignature:
        raise Unauthenticated("The ticket is not valid.", code="ticket_invalid") from None
    try:
        claims = TicketClaims(
            user_id=int(payload["u"]), kind=str(payload["k"]),
            object_id=int(payload["o"]), nonce=str(payload["n"]),
        )
    except (KeyError, TypeError, ValueError):
        raise Unauthenticated("The ticket is not valid.", code="ticket_invalid") from None
    return claims


def ticket_claim(claims: TicketClaims) -> None:
    """Use the ticket up; Unauthenticated if it was used before (by any process)."""
    # The key outlives the ticket's validity window, so a used ticket can never come back.
    if not cache.add(f"ws-ticket:{claims.nonce}", 1, timeout=ticket_ttl_seconds() + 5):
        raise Unauthenticated("The ticket was already used.", code="ticket_used")


def ticket_redeem(ticket: str) -> TicketClaims:
    """Verify and use up a ticket in one step: what the WebSocket handshake does."""
    claims = ticket_verify(ticket)
    ticket_claim(claims)
    return claims
