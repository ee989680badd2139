"""Writes of the sessions app. Broadcasts leave from here, after the transaction commits."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

from courses.exceptions import DomainError
from sessions import groups
from sessions.realtime import broadcast_on_commit, control_on_commit

ANNOUNCEMENT_MAX_CHARS = 2000


def tenant_announce(*, tenant_id: int, text: str, author: AbstractBaseUser | None) -> None:
    """Broadcast an announcement to every open socket of a tenant's users (ephemeral: seq null)."""
    text = (text or "").strip()
    if not text:
        raise DomainError("Write something to announce.", code="invalid", fields={"text": ["Required."]})
    if len(text) > ANNOUNCEMENT_MAX_CHARS:
        raise DomainError(
            f"An announcement has at most {ANNOUNCEMENT_MAX_CHARS} characters.",
            code="invalid", fields={"text": ["Too long."]},
        )
    data = {
        "tenant_id": tenant_id,
        "text": text,
        "author": (
            {"id": author.pk, "name": getattr(author, "display_name", str(author))} if author else None
        ),
    }
    broadcast_on_commit(groups=[groups.tenant_group(tenant_id)], event_type="tenant.announcement", data=data)


def user_sockets_close(
    *, user_id: int, code: int = 4401, kind: str | None = None, object_id: int | None = None
) -> None:
    """Close a user's open sockets after commit: all of them, or only those of one route object
    (`kind="room", object_id=3` when a student is moved out of room 3)."""
    control_on_commit(
        group=groups.user_group(user_id),
        message={"type": "ws.close", "code": int(code), "kind": kind, "object_id": object_id},
    )
