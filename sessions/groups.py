"""The one place channel-layer group names are built.

Every `group_add`, `group_send` and `group_discard` in the project takes its name from a function
here, so a typo cannot split a room's audience in two and a test can prove nothing else formats
one (tests/sessions/test_groups.py scans the source). Names are built from primary keys only,
dot-separated, and stay well under Channels' 100-character limit.
"""

from __future__ import annotations

import re

# What Channels accepts in a group name (channels.layers.BaseChannelLayer), minus "-" and "_",
# which we never need: keeping to digits, letters and dots makes names easy to grep in Redis.
_VALID_NAME = re.compile(r"^[a-z0-9.]{1,99}$")


def _primary_key(value: int) -> int:
    # bool is an int subclass; True would silently become "room.1".
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"group names are built from integer primary keys, not {value!r}")
    if value < 1:
        raise ValueError(f"a primary key is positive, not {value!r}")
    return value


def _name(*parts: str | int) -> str:
    name = ".".join(str(part) for part in parts)
    if not _VALID_NAME.match(name):
        raise ValueError(f"invalid group name {name!r}")
    return name


def room_group(room_id: int) -> str:
    """Everyone connected to a breakout room: its students and the professor on its page."""
    return _name("room", _primary_key(room_id))


def session_monitor_group(session_id: int) -> str:
    """The professor's monitor of a live session (every room's events, summarised)."""
    return _name("session", _primary_key(session_id), "monitor")


def conversation_group(conversation_id: int) -> str:
    """The sockets of one conversation with the tutor (a practice conversation)."""
    return _name("conversation", _primary_key(conversation_id))


def tenant_group(tenant_id: int) -> str:
    """Every socket of a tenant's users: admin broadcasts."""
    return _name("tenant", _primary_key(tenant_id))


def user_group(user_id: int) -> str:
    """Every socket of one user, on any route: used to close them (deactivation, room move)."""
    return _name("user", _primary_key(user_id))
