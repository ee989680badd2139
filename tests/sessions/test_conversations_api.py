"""The conversations API (`/api/v1/conversations/...`): create (reusing an empty one), list,
rename, delete, clear by mode, join ticket, messages (JSON and server-sent events), stop; access
per student and tenant; bad input in the error shape."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import UsageEvent
from sessions.models import Conversation, Message
from tests import factories
from tests.sessions.tutor_fixtures import *  # noqa: F403
from tests.support.openai_standin import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_password_hashing")]

BASE = "/api/v1/conversations/"


def sse_events(body: bytes) -> list[dict]:
    """Parse a text/event-stream body into [{event, id, data}]."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        event = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            event[name] = value
        event["data"] = json.loads(event["data"])
        events.append(event)
    return events


# --- Create, list, rename, delete, clear -------------------------------------------------------


def test_a_student_creates_a_conversation_and_an_empty_one_is_reused(client, api_headers, student, scoped_course):
    headers = api_headers(student.user)
    first = client.post(BASE, {"course": scoped_course.pk, "mode": "teacher"}, content_type="application/json", **headers)
    assert first.status_code == 201
    body = first.json()
    assert (body["course"], body["mode"], body["reused"], body["last_seq"]) == (scoped_course.pk, "teacher", False, 0)

    again = client.post(BASE, {"course": scoped_course.pk, "mode": "teacher"}, content_type="application/json", **headers)
    assert again.status_code == 201
    assert again.json()["id"] == body["id"] and again.json()["reused"] is True

    other_mode = client.post(BASE, {"course": scoped_course.pk, "mode": "qa"}, content_type="application/json", **headers)
    assert other_mode.json()["id"] != body["id"]
    fresh = client.post(
        BASE, {"course": scoped_course.pk, "mode": "teacher", "reuse_empty": False},
        content_type="application/json", **headers,
    )
    assert fresh.json()["id"] not in (body["id"], other_mode.json()["id"])


def test_mode_defaults_to_the_course_default(client, api_headers, student, scoped_course):
    scoped_course.default_teaching_mode = "qa"
    scoped_course.save()
    response = client.post(BASE, {"course": scoped_course.pk}, content_type="application/json", **api_headers(student.user))
    assert response.json()["mode"] == "qa"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"mode": "socratic"}, "course"),
        ({"course": "x", "mode": "socratic"}, "course"),
        ({"course": 1, "mode": "quiz_lock"}, "mode"),
        ({"course": 1, "mode": "nonsense"}, "mode"),
        ({"course": 1, "title": 5}, "title"),
    ],
)
def test_bad_create_input_is_a_400_naming_the_field(client, api_headers, student, assert_api_error, payload, field):
    response = client.post(BASE, payload, content_type="application/json", **api_headers(student.user))
    error = assert_api_error(response, 400, "invalid")
    assert field in error["fields"]


def test_a_course_the_student_is_not_enrolled_in_is_a_404(client, api_headers, student, tenant, assert_api_error):
    elsewhere = factories.CourseFactory(tenant=tenant)
    response = client.post(BASE, {"course": elsewhere.pk}, content_type="application/json", **api_headers(student.user))
    assert_api_error(response, 404, "not_found")


def test_professors_cannot_start_practice_conversations(client, api_headers, professor, scoped_course, assert_api_error):
    response = client.post(BASE, {"course": scoped_course.pk}, content_type="application/json", **api_headers(professor.user))
    assert_api_error(response, 403, "forbidden")


def test_list_shows_only_the_callers_conversations_with_counts(client, api_headers, student, other_student, scoped_course):
    mine = factories.ConversationFactory(course=scoped_course, student=student, mode="qa", title="Mine")
    factories.MessageFactory(conversation=mine, seq=1, text="Hello")
    factories.MessageFactory(conversation=mine, seq=2, role="tutor", text="Hi, what shall we study?")
    factories.ConversationFactory(course=scoped_course, student=other_student, title="Theirs")

    body = client.get(BASE, **api_headers(student.user)).json()
    assert body["count"] == 1
    row = body["results"][0]
    assert (row["title"], row["message_count"], row["preview"]) == ("Mine", 2, "Hi, what shall we study?")
    assert client.get(f"{BASE}?mode=teacher", **api_headers(student.user)).json()["count"] == 0


def test_list_query_count_does_not_grow_with_conversations(client, api_headers, student, scoped_course):
    headers = api_headers(student.user)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(BASE, **headers).status_code == 200
        return len(captured)

    factories.ConversationFactory(course=scoped_course, student=student)
    one = queries()
    for n in range(20):
        conversation = factories.ConversationFactory(course=scoped_course, student=student)
        factories.MessageFactory(conversation=conversation, seq=1, text=f"q{n}")
    assert queries() == one


def test_rename_switch_mode_and_delete(client, api_headers, student, conversation):
    headers = api_headers(student.user)
    url = f"{BASE}{conversation.pk}/"
    response = client.patch(url, {"title": "Loops revision", "mode": "qa"}, content_type="application/json", **headers)
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert (conversation.title, conversation.mode) == ("Loops revision", "qa")

    assert client.delete(url, **headers).status_code == 204
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def test_clear_by_mode_deletes_only_that_mode(client, api_headers, student, other_student, scoped_course):
    for mode in ["socratic", "socratic", "qa"]:
        factories.ConversationFactory(course=scoped_course, student=student, mode=mode)
    theirs = factories.ConversationFactory(course=scoped_course, student=other_student, mode="socratic")
    response = client.post(
        f"{BASE}clear/", {"course": scoped_course.pk, "mode": "socratic"},
        content_type="application/json", **api_headers(student.user),
    )
    assert response.json() == {"deleted": 2}
    assert list(Conversation.objects.filter(student=student).values_list("mode", flat=True)) == ["qa"]
    assert Conversation.objects.filter(pk=theirs.pk).exists()


# --- Access ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "messages/", "join/"])
def test_another_student_can_neither_read_nor_join(client, api_headers, conversation, other_student, assert_api_error, suffix):
    headers = api_headers(other_student.user)
    url = f"{BASE}{conversation.pk}/{suffix}"
    response = client.post(url, **headers) if suffix == "join/" else client.get(url, **headers)
    assert_api_error(response, 403, "forbidden")


def test_another_student_cannot_post_rename_or_delete(client, api_headers, conversation, other_student, assert_api_error):
    headers = api_headers(other_student.user)
    url = f"{BASE}{conversation.pk}/"
    assert_api_error(client.post(f"{url}messages/", {"text": "hi"}, content_type="application/json", **headers), 403)
    assert_api_error(client.patch(url, {"title": "x"}, content_type="application/json", **headers), 403)
    assert_api_error(client.delete(url, **headers), 403)
    assert Message.objects.count() == 0 and Conversation.objects.filter(pk=conversation.pk).exists()


def test_other_tenants_conversations_are_unknown(client, api_headers, conversation, outsider, assert_api_error):
    assert_api_error(client.get(f"{BASE}{conversation.pk}/", **api_headers(outsider.user)), 404, "not_found")


def test_join_gives_a_ticket_for_the_conversation_socket(client, api_headers, conversation, student):
    body = client.post(f"{BASE}{conversation.pk}/join/", **api_headers(student.user)).json()
    assert body["ws_url"] == f"ws://testserver/ws/conversations/{conversation.pk}/"
    assert body["ticket"] and body["expires_in"] <= 60


# --- Messages ------------------------------------------------------------------------------


def test_posting_without_event_stream_answers_with_question_and_reply(
    client, api_headers, conversation, student, notes, offline_chain
):
    response = client.post(
        f"{BASE}{conversation.pk}/messages/", {"text": "What does a base case do in recursion?"},
        content_type="application/json", **api_headers(student.user),
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["message"]["seq"], body["message"]["role"]) == (1, "student")
    reply = body["reply"]
    assert (reply["seq"], reply["role"], reply["status"], reply["offline"]) == (2, "tutor", "complete", True)
    assert "base case" in reply["text"].lower()

    listed = client.get(f"{BASE}{conversation.pk}/messages/", **api_headers(student.user)).json()
    assert [m["seq"] for m in listed["results"]] == [1, 2]
    assert [(m["source"], m["provider"]) for m in listed["results"]] == [("text", ""), ("text", "")]  # typed


async def test_posting_with_event_stream_streams_the_reply(
    async_client, conversation, student, notes, online_chain, openai_standin
):
    from rest_framework_simplejwt.tokens import AccessToken

    openai_standin.script(Reply("Think about range(3). How many times will it run?", chunk_delay=0.01))
    token = await _access_token(AccessToken, student.user)
    response = await async_client.post(
        f"{BASE}{conversation.pk}/messages/", {"text": "How does a for loop stop?"},
        content_type="application/json", headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    body = b"".join([chunk async for chunk in response.streaming_content])
    events = sse_events(body)
    types = [e["event"] for e in events]
    assert types[0] == "transcript.final" and types[1] == "tutor.thinking" and types[-1] == "tutor.message"
    assert types.count("tutor.delta") > 3
    final = events[-1]["data"]
    assert set(final) == {"type", "seq", "ts", "data"}  # the WebSocket envelope
    assert final["data"]["text"] == "Think about range(3). How many times will it run?"
    assert events[-1]["id"] == str(final["seq"])


async def _access_token(token_class, user) -> str:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(lambda: str(token_class.for_user(user)))()


@pytest.mark.parametrize(
    ("payload", "code"),
    [({"text": ""}, "empty_message"), ({"text": "y" * 4001}, "message_too_long"), ({"text": 7}, "invalid_message"), ({}, "invalid")],
)
def test_bad_messages_are_a_400_and_nothing_is_stored(client, api_headers, conversation, student, assert_api_error, payload, code):
    response = client.post(
        f"{BASE}{conversation.pk}/messages/", payload, content_type="application/json", **api_headers(student.user)
    )
    assert_api_error(response, 400, code)
    assert Message.objects.count() == 0


def test_an_unreachable_provider_keeps_the_question_and_reports_the_failure(
    client, api_headers, conversation, student, settings
):
    settings.DEAD_LLM_URL = "http://127.0.0.1:9/v1"
    settings.DEAD_LLM_KEY = "sk-dead"
    settings.LLM_BACKOFF_BASE_SECONDS = 0.01
    factories.LLMModelFactory(
        tenant=None, position=1, provider="openai", model_name="model-dead",
        base_url_setting="DEAD_LLM_URL", api_key_setting="DEAD_LLM_KEY",
    )
    response = client.post(
        f"{BASE}{conversation.pk}/messages/", {"text": "What is a list?"},
        content_type="application/json", **api_headers(student.user),
    )
    assert response.status_code == 201
    assert response.json()["reply"]["status"] == "failed"
    assert Message.objects.get(role="student").text == "What is a list?"
    assert UsageEvent.objects.filter(model="model-dead").exclude(outcome="ok").exists()


def test_interrupt_with_nothing_running_is_accepted(client, api_headers, conversation, student):
    assert client.post(f"{BASE}{conversation.pk}/interrupt/", **api_headers(student.user)).status_code == 202


def test_schema_documents_the_conversation_endpoints(client):
    schema = client.get("/api/schema/?format=json").json()
    for route in ["/api/v1/conversations/", "/api/v1/conversations/{conversation_id}/messages/",
                  "/api/v1/conversations/{conversation_id}/join/"]:
        assert route in schema["paths"], route
