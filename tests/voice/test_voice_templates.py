"""Where the voice controls appear: a room's students and a practice conversation get the
microphone and the reply voice; the monitor gets the lecture mic while the session is not over;
a professor reading a room does not get a microphone."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_session(course, professor):
    return factories.LiveSessionFactory(course=course, professor=professor, title="Loops lab", status="live")


@pytest.fixture
def room(live_session):
    return factories.BreakoutRoomFactory(session=live_session, number=1, name="Room 1", topic="for loops")


def test_a_rooms_student_gets_the_microphone_and_the_reply_voice(client, room, student, live_session):
    factories.RoomAssignmentFactory(room=room, session=live_session, student=student)
    client.force_login(student.user)
    html = client.get(reverse("room-detail", args=[room.pk])).content.decode()
    assert "data-voice-mic" in html and ">Start microphone<" in html
    assert 'for="room-voice-speech">Replies aloud' in html
    assert 'aria-label="Microphone level"' in html
    assert "css/voice.css" in html


def test_the_professor_reading_a_room_gets_no_microphone(client, room, professor):
    client.force_login(professor.user)
    response = client.get(reverse("room-detail", args=[room.pk]))
    assert response.status_code == 200
    assert "data-voice-mic" not in response.content.decode()


def test_a_practice_conversation_gets_the_voice_bar_with_its_own_caption(client, course, student):
    conversation = factories.ConversationFactory(course=course, student=student)
    client.force_login(student.user)
    html = client.get(reverse("conversation-detail", args=[conversation.pk])).content.decode()
    assert "data-voice-mic" in html and "data-voice-caption" in html


def test_the_monitor_has_a_lecture_mic_until_the_session_ends(client, live_session, professor):
    client.force_login(professor.user)
    html = client.get(reverse("session-monitor", args=[live_session.pk])).content.decode()
    assert 'id="lecture-mic"' in html and ">Lecture mic<" in html
    assert "data-voice-speech" not in html  # the lecture mic only listens

    live_session.status = "ended"
    live_session.save(update_fields=["status"])
    html = client.get(reverse("session-monitor", args=[live_session.pk])).content.decode()
    assert 'id="lecture-mic"' not in html
