"""Who may open which socket: cookie + Origin for browsers, one-use tickets for native clients,
and the selectors' verdicts as close codes (4401 unauthenticated, 4403 not yours, 4404 unknown)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from channels.db import database_sync_to_async
from django.test import override_settings

from sessions.tickets import ticket_issue
from tests import factories
from tests.sessions.conftest import browser_headers, open_socket, refusal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]


def monitor_path(session) -> str:
    return f"/ws/sessions/{session.id}/monitor/"


def room_path(room) -> str:
    return f"/ws/rooms/{room.id}/"


# --- Browsers: Origin + session cookie --------------------------------------------------------


async def test_professor_opens_monitor_with_cookie_and_gets_session_status(live_session, professor, room):
    socket = await open_socket(monitor_path(live_session), user=professor.user)
    message = await socket.receive()
    assert message["type"] == "session.status"
    assert message["data"]["id"] == live_session.id
    await socket.close()


async def test_anonymous_browser_is_closed_4401(live_session):
    assert await refusal(monitor_path(live_session)) == ("close", 4401)


async def test_foreign_origin_is_rejected_at_the_handshake_even_with_a_valid_cookie(live_session, professor):
    outcome = await refusal(monitor_path(live_session), user=professor.user, origin=b"http://evil.example")
    assert outcome == ("handshake", None)


async def test_origin_null_is_rejected_at_the_handshake(live_session, professor):
    assert await refusal(monitor_path(live_session), user=professor.user, origin=b"null") == ("handshake", None)


@override_settings(ALLOWED_HOSTS=["app.example.org"])
async def test_allowed_hosts_are_read_at_each_handshake(live_session, professor):
    assert await refusal(monitor_path(live_session), user=professor.user) == ("handshake", None)
    socket = await open_socket(monitor_path(live_session), user=professor.user, origin=b"https://app.example.org")
    assert (await socket.receive())["type"] == "session.status"
    await socket.close()


async def test_cookie_without_origin_is_not_enough(live_session, professor):
    """No Origin means a native client: it must bring a ticket, a cookie does not count."""
    assert await refusal(monitor_path(live_session), user=professor.user, origin=None) == ("close", 4401)


async def test_no_origin_and_no_ticket_is_closed_4401(live_session):
    assert await refusal(monitor_path(live_session), origin=None) == ("close", 4401)


async def test_inactive_users_session_is_refused(live_session, professor):
    # Log in first, then deactivate: the old session cookie must no longer open anything.
    headers = await database_sync_to_async(browser_headers)(professor.user)
    professor.user.is_active = False
    await database_sync_to_async(professor.user.save)()
    assert await refusal(monitor_path(live_session), headers=headers) == ("close", 4401)


# --- Authorisation: 4403 and 4404 -------------------------------------------------------------


async def test_student_of_another_room_is_closed_4403(room, student_of_other_room):
    assert await refusal(room_path(room), user=student_of_other_room.user) == ("close", 4403)


async def test_student_enrolled_but_unassigned_is_closed_4403(room, student):
    assert await refusal(room_path(room), user=student.user) == ("close", 4403)


async def test_professor_of_another_session_is_closed_4403(live_session, other_professor):
    assert await refusal(monitor_path(live_session), user=other_professor.user) == ("close", 4403)


async def test_student_cannot_monitor(live_session, assigned_student):
    assert await refusal(monitor_path(live_session), user=assigned_student.user) == ("close", 4403)


async def test_user_of_another_tenant_learns_nothing_4404(live_session, room, outsider):
    """Another tenant's ids are unknown objects, as in the REST API: nothing says they exist."""
    assert await refusal(monitor_path(live_session), user=outsider.user) == ("close", 4404)
    assert await refusal(room_path(room), user=outsider.user) == ("close", 4404)


async def test_unknown_session_and_room_are_closed_4404(professor):
    assert await refusal("/ws/sessions/999999/monitor/", user=professor.user) == ("close", 4404)
    assert await refusal("/ws/rooms/999999/", user=professor.user) == ("close", 4404)


async def test_unknown_path_is_closed_4404(professor):
    assert await refusal("/ws/nowhere/", user=professor.user) == ("close", 4404)


async def test_staff_of_the_tenant_may_monitor(live_session, staff_user):
    socket = await open_socket(monitor_path(live_session), user=staff_user)
    assert (await socket.receive())["type"] == "session.status"
    await socket.close()


async def test_assigned_student_and_professor_open_the_room(room, assigned_student, professor):
    for user in (assigned_student.user, professor.user):
        socket = await open_socket(room_path(room), user=user)
        message = await socket.receive()
        assert message["type"] == "room.status"
        assert message["data"]["id"] == room.id
        await socket.close()


async def test_superuser_without_tenant_is_refused_the_tenant_route(superuser):
    assert await refusal("/ws/tenant/", user=superuser) == ("close", 4403)


# --- Native clients: tickets ------------------------------------------------------------------


async def test_ticket_opens_the_room_once(room, assigned_student):
    ticket = ticket_issue(user_id=assigned_student.user.id, kind="room", object_id=room.id)
    socket = await open_socket(room_path(room), origin=None, ticket=ticket)
    assert (await socket.receive())["type"] == "room.status"
    await socket.close()
    assert await refusal(room_path(room), origin=None, ticket=ticket) == ("close", 4401)


async def test_ticket_works_from_an_allowed_origin_too(room, assigned_student):
    ticket = ticket_issue(user_id=assigned_student.user.id, kind="room", object_id=room.id)
    socket = await open_socket(room_path(room), ticket=ticket)
    assert (await socket.receive())["type"] == "room.status"
    await socket.close()


async def test_ticket_from_a_foreign_origin_is_rejected_at_the_handshake(room, assigned_student):
    ticket = ticket_issue(user_id=assigned_student.user.id, kind="room", object_id=room.id)
    outcome = await refusal(room_path(room), origin=b"https://evil.example", ticket=ticket)
    assert outcome == ("handshake", None)


async def test_expired_ticket_is_refused(room, assigned_student, settings):
    settings.WS_TICKET_TTL_SECONDS = 30
    with time_machine.travel(datetime.now(UTC) - timedelta(seconds=31), tick=False):
        ticket = ticket_issue(user_id=assigned_student.user.id, kind="room", object_id=room.id)
    assert await refusal(room_path(room), origin=None, ticket=ticket) == ("close", 4401)


async def test_ticket_just_inside_its_lifetime_works(room, assigned_student, settings):
    settings.WS_TICKET_TTL_SECONDS = 30
    with time_machine.travel(datetime.now(UTC) - timedelta(seconds=25), tick=False):
        ticket = ticket_issue(user_id=assigned_student.user.id, kind="room", object_id=room.id)
    socket = await open_socket(room_path(room), origin=None, ticket=ticket)
    await socket.close()


async def test_ttl_setting_is_capped_at_a_minute(room, assigned_student, settings):
    settings.WS_TICKET_TTL_SECONDS = 3600
    with time_machine.travel(datetime.now(UTC) - timedelta(seconds=61), tick=False):
        ticket = ticket_issue(user_id=assigned_student.user.id, kind="room", object_id=room.id)
    assert await refusal(room_path(room), origin=None, ticket=ticket) == ("close", 4401)


async def test_ticket_for_room_1_cannot_open_room_2(room, other_room, assigned_student, professor):
    # The professor may open both rooms; the ticket is still only good for the one it names.
    ticket = ticket_issue(user_id=professor.user.id, kind="room", object_id=room.id)
    assert await refusal(room_path(other_room), origin=None, ticket=ticket) == ("close", 4401)


async def test_ticket_is_bound_to_its_route_kind(live_session, professor):
    # Same id, other kind: a room ticket whose id happens to be the session's.
    ticket = ticket_issue(user_id=professor.user.id, kind="room", object_id=live_session.id)
    assert await refusal(monitor_path(live_session), origin=None, ticket=ticket) == ("close", 4401)


async def test_ticket_of_a_deactivated_user_is_refused(room, assigned_student):
    ticket = ticket_issue(user_id=assigned_student.user.id, kind="room", object_id=room.id)
    assigned_student.user.is_active = False
    await database_sync_to_async(assigned_student.user.save)()
    assert await refusal(room_path(room), origin=None, ticket=ticket) == ("close", 4401)


async def test_tampered_ticket_is_refused(room, assigned_student):
    ticket = ticket_issue(user_id=assigned_student.user.id, kind="room", object_id=room.id)
    forged = ticket[:-2] + ("AA" if not ticket.endswith("AA") else "BB")
    assert await refusal(room_path(room), origin=None, ticket=forged) == ("close", 4401)


async def test_valid_ticket_still_needs_access(room, student_of_other_room):
    """A ticket authenticates; the selector still decides (a ticket issued by mistake is useless)."""
    ticket = ticket_issue(user_id=student_of_other_room.user.id, kind="room", object_id=room.id)
    assert await refusal(room_path(room), origin=None, ticket=ticket) == ("close", 4403)


async def test_tenant_ticket_must_name_the_users_own_tenant(tenant, other_tenant):
    user = await database_sync_to_async(factories.UserFactory)(tenant=tenant)
    ticket = ticket_issue(user_id=user.id, kind="tenant", object_id=other_tenant.id)
    assert await refusal("/ws/tenant/", origin=None, ticket=ticket) == ("close", 4401)
    ticket = ticket_issue(user_id=user.id, kind="tenant", object_id=tenant.id)
    socket = await open_socket("/ws/tenant/", origin=None, ticket=ticket)
    await socket.close()
