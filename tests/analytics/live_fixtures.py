"""Fixtures of the live radar's tests: a live session of two rooms (Ada and Cleo in room 1, Ben
in room 2), sockets through the real ASGI application, and the radar observing lines in line."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from sessions import live
from sessions.models import BreakoutRoom
from tests import factories
from tests.sessions.conftest import Socket, open_socket


@pytest.fixture(autouse=True)
def _radar_in_line(settings):
    """Send every update at once (no debounce); quiet participation."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ANALYTICS_RADAR_DEBOUNCE_SECONDS = 0
    settings.ANALYTICS_LIVE_EVERY_LINES = 1000
    settings.ANALYTICS_LIVE_COMPUTE_IN_THREAD = False


@pytest.fixture
def live_session(course, professor):
    course.scope_terms = ["recursion", "loop", "list", "base case"]
    course.save()
    return factories.LiveSessionFactory(
        course=course, professor=professor, title="Recursion lab", status="live", started_at=timezone.now()
    )


def _student(course, room, username: str, first_name: str):
    student = factories.EnrollmentFactory(
        course=course, student__user__username=username, student__user__first_name=first_name,
        student__user__last_name="Test",
    ).student
    factories.RoomAssignmentFactory(room=room, student=student)
    return student


@pytest.fixture
def room1(live_session):
    return factories.BreakoutRoomFactory(
        session=live_session, number=1, name="Room 1", topic="", tutor_status=BreakoutRoom.TutorStatus.READY
    )


@pytest.fixture
def room2(live_session):
    return factories.BreakoutRoomFactory(
        session=live_session, number=2, name="Room 2", topic="lists", tutor_status=BreakoutRoom.TutorStatus.READY
    )


@pytest.fixture
def ada(course, room1):
    return _student(course, room1, "ada", "Ada")


@pytest.fixture
def cleo(course, room1):
    return _student(course, room1, "cleo", "Cleo")


@pytest.fixture
def ben(course, room2):
    return _student(course, room2, "ben", "Ben")


@pytest.fixture
def other_session(course, professor):
    session = factories.LiveSessionFactory(
        course=course, professor=professor, title="Another lab", status="live", started_at=timezone.now()
    )
    factories.BreakoutRoomFactory(session=session, number=1, name="Elsewhere")
    return session


async def connect_monitor(session, user):
    socket = await open_socket(f"/ws/sessions/{session.pk}/monitor/", user=user)
    assert (await socket.receive())["type"] == "session.status"
    return socket


async def connect_room(room, student):
    socket = await open_socket(f"/ws/rooms/{room.pk}/", user=student.user)
    assert (await socket.receive())["type"] == "room.status"
    return socket


until = Socket.until
drain = Socket.drain


async def say(socket, text: str) -> None:
    await socket.send({"type": "chat.message", "data": {"text": text}})


@database_sync_to_async
def post_line(room, student, text: str):
    """A student's line through the service (commits; the radar observes it after the commit)."""
    return live.room_line_post(room=BreakoutRoom.objects.select_related("session").get(pk=room.pk), user=student.user, text=text)


@pytest.fixture
def observe_by_hand():
    """Lines are not observed on commit: the test calls `segment_observe` itself."""
    from analytics.live import segment_recorded_queue
    from sessions.signals import segment_recorded

    uid = "analytics.segment_recorded_queue"
    segment_recorded.disconnect(dispatch_uid=uid)
    yield
    segment_recorded.connect(segment_recorded_queue, dispatch_uid=uid)
