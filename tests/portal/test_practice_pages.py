"""The student's practice pages (conversation list, chat page) and the professor's tutor status card:
access, the actions' effects, and constant query counts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from sessions.models import Conversation
from tests import factories
from tests.sessions.tutor_fixtures import *  # noqa: F403

pytestmark = pytest.mark.django_db


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
    return len(captured)


def test_practice_list_shows_the_students_conversations(client, logged_in, student, other_student, scoped_course, offline_chain):
    mine = factories.ConversationFactory(course=scoped_course, student=student, mode="teacher", title="Loops")
    factories.MessageFactory(conversation=mine, seq=1, text="What is a loop?")
    factories.ConversationFactory(course=scoped_course, student=other_student, title="Not mine")
    logged_in(student.user)

    response = client.get(reverse("practice-list", args=[scoped_course.pk]))

    assert response.status_code == 200
    assert [c.title for c in response.context["conversations"]] == ["Loops"]
    assert response.context["conversations"][0].message_count == 1
    assert response.context["offline_only"] is True
    html = response.content.decode()
    assert "Loops" in html and "Not mine" not in html


def test_practice_list_query_count_is_constant(client, logged_in, student, scoped_course, offline_chain):
    logged_in(student.user)
    url = reverse("practice-list", args=[scoped_course.pk])
    factories.ConversationFactory(course=scoped_course, student=student)
    one = queries(client, url)
    for n in range(15):
        conversation = factories.ConversationFactory(course=scoped_course, student=student, mode=["socratic", "qa"][n % 2])
        factories.MessageFactory(conversation=conversation, seq=1, text=f"question {n}")
    assert queries(client, url) == one


def test_new_conversation_reuses_an_empty_one_and_opens_it(client, logged_in, student, scoped_course):
    logged_in(student.user)
    url = reverse("practice-new", args=[scoped_course.pk])
    first = client.post(url, {"mode": "qa"})
    second = client.post(url, {"mode": "qa"})
    conversation = Conversation.objects.get()
    assert first.url == second.url == reverse("conversation-detail", args=[conversation.pk])
    assert conversation.mode == "qa"


def test_an_unknown_mode_is_a_form_message_not_an_error_page(client, logged_in, student, scoped_course):
    logged_in(student.user)
    response = client.post(reverse("practice-new", args=[scoped_course.pk]), {"mode": "quiz_lock"}, follow=True)
    assert response.status_code == 200
    assert "Choose a mode" in response.content.decode()
    assert not Conversation.objects.exists()


def test_chat_page_renders_the_persisted_messages_and_the_socket_config(client, logged_in, student, conversation, offline_chain):
    factories.MessageFactory(conversation=conversation, seq=1, text="<b>What</b> is a loop?")
    factories.MessageFactory(conversation=conversation, seq=2, role="tutor", text="What do you think?", offline=True)
    conversation.last_seq = 2
    conversation.save()
    logged_in(student.user)

    response = client.get(reverse("conversation-detail", args=[conversation.pk]))

    assert response.status_code == 200
    assert response.context["last_seq"] == 2
    assert response.context["ws_path"] == f"/ws/conversations/{conversation.pk}/"
    html = response.content.decode()
    assert "&lt;b&gt;What&lt;/b&gt; is a loop?" in html  # escaped, never markup
    assert "What do you think?" in html


def test_chat_page_query_count_is_constant_in_the_number_of_messages(client, logged_in, student, conversation, offline_chain):
    logged_in(student.user)
    url = reverse("conversation-detail", args=[conversation.pk])
    factories.MessageFactory(conversation=conversation, seq=1)
    one = queries(client, url)
    for seq in range(2, 40):
        factories.MessageFactory(conversation=conversation, seq=seq, role=["student", "tutor"][seq % 2], author=student.user)
    assert queries(client, url) == one


def test_another_student_gets_a_403_page(client, logged_in, conversation, other_student):
    logged_in(other_student.user)
    assert client.get(reverse("conversation-detail", args=[conversation.pk])).status_code == 403
    assert client.post(reverse("conversation-delete", args=[conversation.pk])).status_code == 403
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_a_professor_cannot_open_the_practice_pages(client, logged_in, professor, scoped_course):
    logged_in(professor.user)
    assert client.get(reverse("practice-list", args=[scoped_course.pk])).status_code == 403


def test_rename_switch_mode_delete_and_clear(client, logged_in, student, conversation, scoped_course):
    logged_in(student.user)
    client.post(reverse("conversation-rename", args=[conversation.pk]), {"title": "Recursion practice"})
    client.post(reverse("conversation-mode", args=[conversation.pk]), {"mode": "teacher"})
    conversation.refresh_from_db()
    assert (conversation.title, conversation.mode) == ("Recursion practice", "teacher")

    response = client.post(reverse("conversation-delete", args=[conversation.pk]))
    assert response.url == reverse("practice-list", args=[scoped_course.pk])
    assert not Conversation.objects.exists()

    for mode in ["qa", "qa", "teacher"]:
        factories.ConversationFactory(course=scoped_course, student=student, mode=mode)
    client.post(reverse("practice-clear", args=[scoped_course.pk]), {"mode": "qa"})
    assert list(Conversation.objects.values_list("mode", flat=True)) == ["teacher"]
    client.post(reverse("practice-clear", args=[scoped_course.pk]), {"mode": ""})
    assert not Conversation.objects.exists()


# --- The professor's tutor status card ------------------------------------------------------------


def test_tutor_status_names_a_missing_key_and_the_offline_fallback(client, logged_in, professor, scoped_course, settings):
    settings.MISSING_KEY_SETTING = ""
    factories.LLMModelFactory(tenant=None, position=1, provider="openai", model_name="gpt-x", api_key_setting="MISSING_KEY_SETTING")
    factories.LLMModelFactory(tenant=None, position=2, provider="offline", model_name="offline-socratic", api_key_setting="", base_url_setting="")
    logged_in(professor.user)

    response = client.get(reverse("course-tutor-status", args=[scoped_course.pk]))

    assert response.status_code == 200
    chain = response.context["chain"]
    assert [(row["model_name"], row["state"]) for row in chain] == [("gpt-x", "missing"), ("offline-socratic", "ready")]
    assert "MISSING_KEY_SETTING" in chain[0]["reason"]
    assert response.context["offline_only"] is True


def test_tutor_status_shows_budget_and_recent_failures(client, logged_in, professor, scoped_course, offline_chain):
    tenant = scoped_course.tenant
    tenant.monthly_budget = Decimal("1.00")
    tenant.save()
    factories.UsageEventFactory(tenant=tenant, cost=Decimal("1.50"), model="gpt-x")
    factories.UsageEventFactory(tenant=tenant, outcome="error", model="gpt-x", error="HTTP 401: invalid key")
    logged_in(professor.user)

    response = client.get(reverse("course-tutor-status", args=[scoped_course.pk]))

    budget = response.context["budget"]
    assert budget["over"] is True and budget["spent"] == Decimal("1.50")
    assert budget["notice"]
    assert response.context["recent_failures"][0]["error"] == "HTTP 401: invalid key"
    assert "invalid key" in response.content.decode()


def test_students_do_not_see_the_tutor_status(client, logged_in, student, scoped_course):
    logged_in(student.user)
    assert client.get(reverse("course-tutor-status", args=[scoped_course.pk])).status_code == 403
