"""Join tickets as a unit: signed claims, a lifetime capped at a minute, one use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from courses.exceptions import Unauthenticated
from sessions import tickets


def test_claims_round_trip():
    claims = tickets.ticket_verify(tickets.ticket_issue(user_id=7, kind="room", object_id=3))
    assert (claims.user_id, claims.kind, claims.object_id) == (7, "room", 3)
    assert len(claims.nonce) >= 16


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="kind"):
        tickets.ticket_issue(user_id=1, kind="admin", object_id=1)


def test_redeem_works_once():
    ticket = tickets.ticket_issue(user_id=7, kind="room", object_id=3)
    tickets.ticket_redeem(ticket)
    with pytest.raises(Unauthenticated) as used:
        tickets.ticket_redeem(ticket)
    assert used.value.code == "ticket_used"


def test_verify_does_not_use_it_up():
    ticket = tickets.ticket_issue(user_id=7, kind="room", object_id=3)
    tickets.ticket_verify(ticket)
    tickets.ticket_redeem(ticket)


@pytest.mark.parametrize(("setting", "expected"), [(30, 30), (60, 60), (3600, 60), (0, 1)])
def test_ttl_is_the_setting_capped_at_a_minute(settings, setting, expected):
    settings.WS_TICKET_TTL_SECONDS = setting
    assert tickets.ticket_ttl_seconds() == expected


def test_expired(settings):
    settings.WS_TICKET_TTL_SECONDS = 10
    with time_machine.travel(datetime.now(UTC) - timedelta(seconds=11), tick=False):
        ticket = tickets.ticket_issue(user_id=7, kind="room", object_id=3)
    with pytest.raises(Unauthenticated) as expired:
        tickets.ticket_verify(ticket)
    assert expired.value.code == "ticket_expired"


@pytest.mark.parametrize("ticket", ["", "garbage", "a:b:c"])
def test_garbage_is_invalid(ticket):
    with pytest.raises(Unauthenticated) as invalid:
        tickets.ticket_verify(ticket)
    assert invalid.value.code == "ticket_invalid"


def test_a_ticket_signed_for_something_else_is_invalid():
    from django.core import signing

    other = signing.dumps({"u": 7, "k": "room", "o": 3, "n": "x"}, salt="another.purpose")
    with pytest.raises(Unauthenticated):
        tickets.ticket_verify(other)
