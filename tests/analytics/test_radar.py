# ruff: noqa: F811  (pytest fixtures imported from live_fixtures are test arguments)
"""The live confusion radar: a confused student line alerts the session's monitor (and nothing
else), signals are grouped by topic across rooms, and a reconnecting monitor gets the radar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

from analytics import confusion
from analytics import live as radar
from analytics.models import SessionAnalytics
from sessions.models import Speaker, TranscriptSegment
from tests.analytics.live_fixtures import (  # noqa: F401  (fixtures)
    _radar_in_line,
    ada,
    ben,
    cleo,
    connect_monitor,
    connect_room,
    drain,
    live_session,
    observe_by_hand,
    other_session,
    post_line,
    room1,
    room2,
    say,
    until,
)

pytestmark = pytest.mark.django_db(transaction=True)

RADAR_EVENTS = {"alert.confusion", "analytics.update"}


async def test_a_confused_line_alerts_its_sessions_monitor_only(live_session, other_session, professor, room1, room2, ada, ben):
    monitor = await connect_monitor(live_session, professor.user)
    elsewhere = await connect_monitor(other_session, professor.user)
    ada_socket, ben_socket = await connect_room(room1, ada), await connect_room(room2, ben)

    await say(ada_socket, "I don't get recursion")

    alert, before = await until(monitor, "alert.confusion")
    assert [m["type"] for m in before] == ["transcript.final"]
    line = before[0]
    assert alert["seq"] is None  # ephemeral: the line it points at is the persisted event
    data = alert["data"]
    assert data["topic"] == "recursion" and data["signal"] == confusion.PHRASE
    assert data["evidence"] == "I don't get" and data["signal_label"] == "said so"
    assert data["student"] == {"id": ada.user_id, "name": ada.user.display_name}
    assert (data["session_id"], data["room_id"], data["room_name"]) == (live_session.pk, room1.pk, "Room 1")
    assert (data["seq"], data["segment_id"]) == (line["seq"], line["data"]["segment_id"])
    assert data["text"] == "I don't get recursion" and data["at"].endswith("Z")
    assert data["line_url"] == f"/rooms/{room1.pk}/#seq-{line['seq']}"
    update, _ = await until(monitor, "analytics.update")
    assert [row["topic"] for row in update["data"]["radar"]] == ["recursion"]

    # Rooms of the same session and the monitor of another session get none of it.
    assert not [m for m in await drain(ada_socket) if m["type"] in RADAR_EVENTS]
    assert not [m for m in await drain(ben_socket) if m["type"] in RADAR_EVENTS]
    assert await elsewhere.nothing(0.3)
    for socket in (monitor, elsewhere, ada_socket, ben_socket):
        await socket.close()


async def test_lines_without_confusion_send_nothing(live_session, professor, room1, ada):
    monitor = await connect_monitor(live_session, professor.user)
    ada_socket = await connect_room(room1, ada)
    for text in ("no problem", "I get it now", "Don't get me wrong, recursion is fun"):
        await say(ada_socket, text)
        line, _ = await until(monitor, "transcript.final")
        assert line["data"]["text"] == text
    assert await monitor.nothing(0.3)
    state = await database_sync_to_async(radar.radar_state)(live_session.pk)
    assert state["signals"] == []
    assert await database_sync_to_async(cache.get)(f"analytics:radar:{live_session.pk}:lines") == 3  # counted
    for socket in (monitor, ada_socket):
        await socket.close()


async def test_the_update_groups_two_rooms_under_one_topic(live_session, professor, room1, room2, ada, cleo, ben):
    monitor = await connect_monitor(live_session, professor.user)
    await post_line(room1, ada, "I'm confused about recursion")
    await post_line(room2, ben, "Recursion makes no sense to me")
    await post_line(room1, cleo, "I'm lost with recursion too")
    await post_line(room2, ben, "what is a list anyway? I'm stuck")

    def last_update(messages):
        return [m for m in messages if m["type"] == "analytics.update"][-1]["data"]

    data = last_update(await drain(monitor))
    assert data["session_id"] == live_session.pk and data["window_minutes"] == 15
    rows = {row["topic"]: row for row in data["radar"]}
    assert [row["topic"] for row in data["radar"]] == ["recursion", "list"]  # most signals first
    recursion = rows["recursion"]
    assert recursion["count"] == 3
    assert recursion["rooms"] == [
        {"room_id": room1.pk, "name": "Room 1", "count": 2},
        {"room_id": room2.pk, "name": "Room 2", "count": 1},
    ]
    assert sorted(s["name"] for s in recursion["students"]) == sorted(
        [ada.user.display_name, ben.user.display_name, cleo.user.display_name]
    )
    assert recursion["seqs"] == [1, 2, 3] and recursion["clarified"] is None
    assert rows["list"]["count"] == 1 and rows["list"]["rooms"][0]["room_id"] == room2.pk
    assert [a["seq"] for a in data["alerts"]] == [4, 3, 2, 1]  # newest first
    await monitor.close()


async def test_a_reconnecting_monitor_gets_the_radar_in_its_snapshot(live_session, professor, room1, ada):
    empty = await connect_monitor(live_session, professor.user)
    assert await empty.nothing(0.2)  # nothing on the radar: no update in the snapshot
    await empty.close()
    await post_line(room1, ada, "I still don't understand the base case")

    monitor = await connect_monitor(live_session, professor.user)
    snapshot = await monitor.receive()
    assert snapshot["type"] == "analytics.update" and snapshot["seq"] is None
    [row] = snapshot["data"]["radar"]
    assert (row["topic"], row["count"], row["seqs"]) == ("base case", 1, [1])
    assert snapshot["data"]["alerts"][0]["evidence"] == "I still don't understand"
    await monitor.close()


def test_a_line_naming_no_topic_takes_the_rooms_topic_so_far(observe_by_hand, live_session, room1, room2, ada, ben):
    from sessions import live

    live.room_line_post(room=room1, user=ada.user, text="Recursion stops at the base case.")
    live.room_line_post(room=room1, user=ada.user, text="ok")
    [alert] = radar.segment_observe(segment_id=live.room_line_post(room=room1, user=ada.user, text="wait, what?").pk)
    assert alert["topic"] == "recursion"
    # Nothing named in the room yet: the room's topic, else "general".
    [alert] = radar.segment_observe(segment_id=live.room_line_post(room=room2, user=ben.user, text="I'm lost").pk)
    assert alert["topic"] == "lists"


def test_a_question_repeated_by_the_same_student_on_one_topic_is_a_signal(observe_by_hand, live_session, room1, ada, cleo):
    from sessions import live

    first = live.room_line_post(room=room1, user=ada.user, text="How does a loop end?")
    assert radar.segment_observe(segment_id=first.pk) == []
    live.room_line_post(room=room1, user=cleo.user, text="How does a loop start?")  # another student
    again = live.room_line_post(room=room1, user=ada.user, text="But when does the loop end?")
    [alert] = radar.segment_observe(segment_id=again.pk)
    assert (alert["signal"], alert["topic"]) == (confusion.REPEATED_QUESTION, "loop")
    assert alert["signal_label"] == "asked again"
    assert alert["evidence"] == "But when does the loop end?"
    # Observing it again (a redelivered task) counts nothing twice.
    assert radar.segment_observe(segment_id=again.pk) == []
    assert len(radar.radar_state(live_session.pk)["signals"]) == 1


def test_observations_of_one_line():
    earlier = [
        TranscriptSegment(speaker_kind=Speaker.STUDENT, speaker_user_id=7, text="What is a list?"),
        TranscriptSegment(speaker_kind=Speaker.TUTOR, speaker_user_id=None, text="Think of recursion as a loop."),
    ]
    topic, found = radar.line_observations(
        text="I'm confused, I don't get it", speaker_id=7, earlier=earlier, terms=["recursion", "list"], room_topic="",
    )
    assert topic == "recursion"  # the room's topic so far (the tutor's line named it last)
    assert [(s.signal, s.evidence) for s in found] == [(confusion.PHRASE, "I'm confused")]  # one per kind
    topic, found = radar.line_observations(
        text="What is a list?", speaker_id=7, earlier=earlier, terms=["recursion", "list"], room_topic="",
    )
    assert (topic, [s.signal for s in found]) == ("list", [confusion.REPEATED_QUESTION])
    assert radar.line_observations(text="Not sure I follow", speaker_id=7, earlier=[], terms=[], room_topic="")[0] == "general"


def test_the_radar_and_the_report_agree_on_what_is_not_confusion():
    """Puzzlement about other people's opinions is no signal in the report (analytics.metrics);
    the radar must not alert on it either."""
    from analytics import metrics

    text = "I don't get why people dislike Python"
    assert metrics.student_line_signals(text) == []
    assert radar.line_observations(text=text, speaker_id=7, earlier=[], terms=[], room_topic="")[1] == []


def test_a_line_naming_the_rooms_topic_is_about_it_on_the_radar_as_in_the_report():
    """The computation counts the room's topic as a term a line can name (analytics.metrics);
    the radar gives such a line the same topic, not the topic named a line earlier."""
    earlier = [TranscriptSegment(speaker_kind=Speaker.TUTOR, speaker_user_id=None, text="Recursion calls itself.")]
    topic, found = radar.line_observations(
        text="I don't get loops", speaker_id=7, earlier=earlier, terms=["recursion"], room_topic="Loops",
    )
    assert (topic, [s.signal for s in found]) == ("loops", [confusion.PHRASE])


def test_signals_leave_the_radar_after_the_window(observe_by_hand, live_session, room1, ada, settings):
    from sessions import live

    settings.ANALYTICS_RADAR_WINDOW_MINUTES = 10
    radar.segment_observe(segment_id=live.room_line_post(room=room1, user=ada.user, text="I'm lost on recursion").pk)
    state = radar.radar_state(live_session.pk)
    now = datetime.now(UTC)
    assert [r["count"] for r in radar.radar_rows(state, now=now + timedelta(minutes=9))] == [1]
    assert radar.radar_rows(state, now=now + timedelta(minutes=11)) == []


def test_updates_are_debounced_and_the_last_change_is_always_sent(live_session, settings, monkeypatch):
    settings.ANALYTICS_RADAR_DEBOUNCE_SECONDS = 2
    sent, timers = [], []
    monkeypatch.setattr(radar, "_send_update", sent.append)

    class FakeTimer:
        def __init__(self, delay, function, args):
            timers.append((delay, function, args))
            self.daemon = False

        def start(self):
            pass

    monkeypatch.setattr(radar.threading, "Timer", FakeTimer)
    for _ in range(5):
        radar.radar_publish(session_id=live_session.pk)
    assert sent == [live_session.pk]  # the first at once
    assert [(delay, args) for delay, _f, args in timers] == [(2.0, [live_session.pk])]  # one trailing send
    _delay, flush, args = timers[0]
    flush(*args)
    assert sent == [live_session.pk, live_session.pk]
    radar.radar_publish(session_id=live_session.pk, force=True)  # a clarify goes out at once
    assert len(sent) == 3


def test_participation_is_recomputed_every_n_student_lines(live_session, professor, room1, ada, cleo, settings, monkeypatch):
    from sessions import live

    settings.ANALYTICS_LIVE_EVERY_LINES = 2
    updates = []
    monkeypatch.setattr(radar, "_send_update", updates.append)
    live.room_line_post(room=room1, user=ada.user, text="Recursion calls itself")
    assert updates == [] and not SessionAnalytics.objects.filter(session=live_session).exists()
    live.room_line_post(room=room1, user=cleo.user, text="Right")
    assert updates == [live_session.pk]
    participation = radar.radar_snapshot(session_id=live_session.pk)["participation"]
    assert participation["students"] == 2 and participation["silent"] == 0


def test_the_live_computation_is_not_final_when_the_service_knows_the_difference(live_session, room1, ada, settings, monkeypatch):
    from types import SimpleNamespace

    from analytics import services
    from sessions import live

    settings.ANALYTICS_LIVE_EVERY_LINES = 1
    calls = []

    def compute(*, session_id, final=True):
        calls.append((session_id, final))
        return SimpleNamespace(participation={"students": 1, "final": final})

    monkeypatch.setattr(services, "session_analytics_compute", compute)
    live.room_line_post(room=room1, user=ada.user, text="Hello")
    assert calls == [(live_session.pk, False)]
    assert radar.radar_snapshot(session_id=live_session.pk)["participation"] == {"students": 1, "final": False}

    def broken(*, session_id):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "session_analytics_compute", broken)
    live.room_line_post(room=room1, user=ada.user, text="I'm lost")  # logged; the radar goes on
    assert radar.radar_snapshot(session_id=live_session.pk)["radar"][0]["count"] == 1


async def test_the_trailing_update_of_a_debounce_reaches_the_monitor(live_session, professor, room1, room2, ada, ben, settings):
    """Embedded default (in-memory layer): the delayed update is sent from the server's loop."""
    settings.ANALYTICS_RADAR_DEBOUNCE_SECONDS = 0.3
    monitor = await connect_monitor(live_session, professor.user)
    await post_line(room1, ada, "I don't understand recursion at all")
    await post_line(room2, ben, "I'm lost, recursion again")
    first, _ = await until(monitor, "analytics.update")
    assert first["data"]["radar"][0]["count"] == 1  # sent at once
    trailing, seen = await until(monitor, "analytics.update")
    assert trailing["data"]["radar"][0]["count"] == 2  # the last change, after the debounce
    assert [m["type"] for m in seen].count("alert.confusion") >= 1
    await monitor.close()


def test_the_monitor_page_renders_the_radar(client, live_session, professor, room1, room2, ada, ben):
    from sessions import live

    client.force_login(professor.user)
    page = client.get(f"/sessions/{live_session.pk}/monitor/")
    assert page.status_code == 200
    assert b"No signs of confusion yet." in page.content and b'data-topic="' not in page.content
    live.room_line_post(room=room1, user=ada.user, text="I don't get recursion <b>at all</b>")
    segment = live.room_line_post(room=room2, user=ben.user, text="Recursion makes no sense")
    html = client.get(f"/sessions/{live_session.pk}/monitor/").content.decode()
    assert 'data-topic="recursion"' in html and "2 signals" in html
    assert '<meter class="radar-bar" min="0" max="2" value="2"' in html
    assert "Room 1 · 1" in html and "Room 2 · 1" in html
    assert "“makes no sense”" in html and f'href="/rooms/{room2.pk}/#seq-{segment.seq}"' in html
    assert '<span class="muted small radar-signal">(said so)</span>' in html and ">(phrase)<" not in html
    assert "<b>at all</b>" not in html  # escaped
    assert f'action="/sessions/{live_session.pk}/clarify/"' in html
    form = html[html.index(f'action="/sessions/{live_session.pk}/clarify/"'):]
    assert form.index('name="csrfmiddlewaretoken"') < form.index("</form>")  # works as a plain POST
    room_page = client.get(f"/rooms/{room2.pk}/").content.decode()
    assert f'id="seq-{segment.seq}"' in room_page  # the alert's link lands on the line


async def test_in_the_embedded_default_participation_is_computed_off_the_consumers_thread(
    live_session, professor, room1, ada, cleo, settings
):
    settings.ANALYTICS_LIVE_COMPUTE_IN_THREAD = True
    settings.ANALYTICS_LIVE_EVERY_LINES = 2
    monitor = await connect_monitor(live_session, professor.user)
    ada_socket, cleo_socket = await connect_room(room1, ada), await connect_room(room1, cleo)
    await say(ada_socket, "Recursion calls itself")
    await say(cleo_socket, "Right, with a smaller input")
    update, _ = await until(monitor, "analytics.update", where=lambda data: data["participation"])
    assert update["data"]["participation"]["students"] == 2 and update["data"]["radar"] == []
    assert await database_sync_to_async(SessionAnalytics.objects.filter(session=live_session).exists)()
    for socket in (monitor, ada_socket, cleo_socket):
        await socket.close()


async def test_only_the_sessions_professors_reach_its_radar(live_session, room1, ada, outsider):
    from tests.sessions.conftest import refusal

    path = f"/ws/sessions/{live_session.pk}/monitor/"
    assert await refusal(path, user=ada.user) == ("close", 4403)  # a student of the session
    assert await refusal(path, user=outsider.user) == ("close", 4404)  # another tenant


def test_every_signal_kind_has_a_human_label_and_alerts_stored_without_one_get_it(live_session):
    assert confusion.SIGNAL_LABELS == {
        confusion.PHRASE: "said so",
        confusion.REPEATED_QUESTION: "asked again",
        confusion.SILENCE_AFTER_QUESTION: "silent after a question",
        confusion.GUARDRAIL_REDIRECT: "off-topic redirect",
        confusion.LLM_CLASSIFIED: "model: stuck",
    }
    assert confusion.signal_label("repeated_question") == "asked again"
    assert confusion.signal_label("explicit_confusion") == "explicit confusion"  # older data: its words
    assert confusion.signal_label(None) == ""
    # A radar state cached before labels existed: the snapshot (the monitor page, analytics.update) adds them.
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    old = {
        "session_id": live_session.pk, "room_id": 1, "room_name": "Room 1", "student": {"id": 1, "name": "Ada"},
        "topic": "loops", "signal": confusion.PHRASE, "evidence": "I'm lost", "seq": 1, "segment_id": 1,
        "text": "I'm lost", "at": now, "line_url": "/rooms/1/#seq-1",
    }
    with radar._state_locked(live_session.pk) as state:
        state["signals"] = [old]
    [alert] = radar.radar_snapshot(session_id=live_session.pk)["alerts"]
    assert (alert["signal"], alert["signal_label"]) == (confusion.PHRASE, "said so")
