"""`/ws/conversations/<id>/`: a student asks, the tutor's reply streams as `tutor.delta`s and is
persisted as `tutor.message`; stop, retry, replay after reconnect, access, and bad input."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from analytics.models import UsageEvent
from sessions.models import Conversation, Message
from sessions.tickets import ticket_issue
from tests import factories
from tests.sessions.conftest import open_socket, refusal
from tests.sessions.tutor_fixtures import *  # noqa: F403
from tests.sessions.tutor_fixtures import online_model
from tests.support.openai_standin import Reply, Status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]


def path(conversation) -> str:
    return f"/ws/conversations/{conversation.pk}/"


async def connect(conversation, user, **query) -> object:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    socket = await open_socket(path(conversation) + suffix, user=user)
    status = await socket.receive()
    assert status["type"] == "conversation.status"
    return socket


async def until_reply(socket, timeout: float = 5) -> list[dict]:
    """Every event up to and including the `tutor.message` that ends a turn."""
    events = []
    while True:
        message = await socket.receive(timeout)
        events.append(message)
        if message["type"] == "tutor.message":
            return events


def of_type(events: list[dict], event_type: str) -> list[dict]:
    return [e for e in events if e["type"] == event_type]


# --- A turn, end to end ----------------------------------------------------------------------


async def test_question_is_persisted_then_the_offline_reply_streams_and_is_persisted(
    conversation, student, notes, offline_chain
):
    socket = await connect(conversation, student.user)
    await socket.send({"type": "chat.message", "data": {"text": "How does a for loop know when to stop?"}})
    events = await until_reply(socket)
    await socket.close()

    question = events[0]
    assert question["type"] == "transcript.final"
    assert question["seq"] == 1
    assert question["data"]["text"] == "How does a for loop know when to stop?"
    assert question["data"]["speaker"]["kind"] == "student"
    assert question["data"]["source"] == "text"
    thinking = of_type(events, "tutor.thinking")
    deltas = of_type(events, "tutor.delta")
    final = events[-1]
    assert thinking and thinking[0]["seq"] is None
    assert len(deltas) > 3 and all(d["seq"] is None for d in deltas)
    assert final["seq"] == 2
    assert final["data"]["text"] == "".join(d["data"]["text"] for d in deltas)
    assert final["data"]["offline"] is True
    assert final["data"]["status"] == "complete"
    assert final["data"]["guardrail"] == "on_topic"
    # The offline tutor points to the passage that answers, and the reply cites it.
    assert any(c["heading"] == "Loops > for loops" for c in final["data"]["citations"])
    assert final["data"]["citations"][0]["url"].startswith(f"/courses/{conversation.course_id}/documents/")

    rows = await database_sync_to_async(
        lambda: list(Message.objects.filter(conversation=conversation).order_by("seq").values("seq", "role", "status", "guardrail"))
    )()
    assert rows == [
        {"seq": 1, "role": "student", "status": "complete", "guardrail": "on_topic"},
        {"seq": 2, "role": "tutor", "status": "complete", "guardrail": "on_topic"},
    ]


async def test_online_deltas_reach_the_socket_before_the_model_has_finished(
    conversation, student, notes, online_chain, openai_standin
):
    openai_standin.script(Reply("Good question. What does range(5) produce? Try it.", chunk_delay=0.15))
    socket = await connect(conversation, student.user)
    await socket.send({"type": "chat.message", "text": "How does a for loop know when to stop?"})

    first_delta = None
    while first_delta is None:
        message = await socket.receive(5)
        if message["type"] == "tutor.delta":
            first_delta = message
    # The stand-in is still writing chunks when the first one is on the student's socket.
    assert not openai_standin.streams[-1].finished
    events = await until_reply(socket)
    await socket.close()

    final = events[-1]
    assert final["data"]["model"] == "model-a"
    assert final["data"]["offline"] is False
    assert final["data"]["text"] == "Good question. What does range(5) produce? Try it."
    # The prompt carried the persona, the student's name and the retrieved passage.
    system = openai_standin.requests[-1]["json"]["messages"][0]["content"]
    assert "Professor Ada" in system
    assert student.first_name in system
    assert "A for loop repeats a block once for every item" in system


async def test_stop_cancels_the_upstream_stream_and_keeps_what_was_said(
    conversation, student, notes, online_chain, openai_standin
):
    words = " ".join(f"word{i}" for i in range(200))
    openai_standin.script(Reply(words, chunk_delay=0.05))
    socket = await connect(conversation, student.user)
    await socket.send({"type": "chat.message", "text": "Explain recursion slowly please"})
    seen = []
    while len(seen) < 3:
        message = await socket.receive(5)
        if message["type"] == "tutor.delta":
            seen.append(message["data"]["text"])
    await socket.send({"type": "tutor.interrupt"})
    events = await until_reply(socket)
    await socket.close()

    final = events[-1]
    assert final["data"]["status"] == "interrupted"
    assert final["data"]["text"].startswith("".join(seen))
    assert len(final["data"]["text"]) < len(words)
    stream = openai_standin.streams[-1]
    await asyncio.sleep(0.3)
    assert stream.client_disconnected
    assert stream.chunks_written < 100  # far fewer than the 200 words scripted
    outcomes = await database_sync_to_async(lambda: list(UsageEvent.objects.values_list("outcome", flat=True)))()
    assert "cancelled" in outcomes


async def test_off_topic_question_gets_a_redirect_without_a_model_call(
    conversation, student, online_chain, openai_standin
):
    socket = await connect(conversation, student.user)
    await socket.send({"type": "chat.message", "text": "Who will win the football match on Saturday?"})
    events = await until_reply(socket)
    await socket.close()

    final = events[-1]
    assert final["data"]["guardrail"] == "off_topic"
    assert final["data"]["model"] == "guardrail-redirect"
    assert conversation.course.title in final["data"]["text"]
    assert openai_standin.requests == []  # neither the main model nor the guardrail's LLM tier
    verdicts = await database_sync_to_async(
        lambda: list(Message.objects.filter(conversation=conversation).order_by("seq").values_list("guardrail", flat=True))
    )()
    assert verdicts == ["off_topic", "off_topic"]


async def test_uncertain_follow_up_asks_the_llm_tier_with_the_history(
    conversation, student, notes, online_chain, openai_standin
):
    await database_sync_to_async(factories.MessageFactory)(conversation=conversation, seq=1, role="student", text="What is recursion?")
    await database_sync_to_async(factories.MessageFactory)(conversation=conversation, seq=2, role="tutor", text="A function calling itself.")
    await database_sync_to_async(Conversation.objects.filter(pk=conversation.pk).update)(last_seq=2)

    def responder(body):
        prompt = body["messages"][-1]["content"]
        if "Reply with exactly one word: YES or NO" in prompt:
            return Reply("NO")
        return Reply("should not be asked")

    openai_standin.responder = responder
    socket = await connect(conversation, student.user)
    await socket.send({"type": "chat.message", "text": "Is there anything cheaper?"})
    events = await until_reply(socket)
    await socket.close()

    assert len(openai_standin.requests) == 1  # the YES/NO question only
    guard_prompt = openai_standin.requests[0]["json"]["messages"][-1]["content"]
    assert "What is recursion?" in guard_prompt  # the conversation so far
    assert openai_standin.requests[0]["json"]["max_tokens"] <= 5
    assert events[-1]["data"]["guardrail"] == "off_topic"


async def test_unreachable_provider_saves_the_message_and_says_the_tutor_is_unavailable(
    conversation, student, settings
):
    settings.DEAD_LLM_URL = "http://127.0.0.1:9/v1"  # discard port: connection refused
    settings.DEAD_LLM_KEY = "sk-dead"
    await database_sync_to_async(factories.LLMModelFactory)(
        tenant=None, position=1, provider="openai", model_name="model-dead",
        base_url_setting="DEAD_LLM_URL", api_key_setting="DEAD_LLM_KEY",
    )
    settings.LLM_BACKOFF_BASE_SECONDS = 0.01
    socket = await connect(conversation, student.user)
    await socket.send({"type": "chat.message", "text": "What is a variable?"})
    events = await until_reply(socket)
    await socket.close()

    final = events[-1]
    assert final["data"]["status"] == "failed"
    assert final["data"]["error"]["code"] == "tutor_unavailable"
    assert "your message is saved" in final["data"]["error"]["message"]
    question = await database_sync_to_async(Message.objects.get)(conversation=conversation, role="student")
    assert question.text == "What is a variable?"
    reply = await database_sync_to_async(Message.objects.get)(conversation=conversation, role="tutor")
    assert "model-dead" in reply.error  # the reason, kept for the professor


async def test_retry_answers_the_last_question_again(conversation, student, settings, openai_standin, notes):
    await database_sync_to_async(online_model)(settings, openai_standin)
    settings.LLM_RETRIES_PER_MODEL = 1  # two attempts, both answered 500
    openai_standin.script(Status(500), Status(500))
    settings.LLM_BACKOFF_BASE_SECONDS = 0.01
    socket = await connect(conversation, student.user)
    await socket.send({"type": "chat.message", "text": "What is a function?"})
    assert (await until_reply(socket))[-1]["data"]["status"] == "failed"

    openai_standin.script(Reply("A named block of code. What would you name yours?"))
    await socket.send({"type": "tutor.retry"})
    events = await until_reply(socket)
    await socket.close()
    assert of_type(events, "transcript.final") == []  # the question is not asked twice
    assert events[-1]["data"]["status"] == "complete"
    assert events[-1]["data"]["text"].startswith("A named block of code")
    assert events[-1]["seq"] == 3


async def test_a_new_question_while_the_tutor_talks_stops_the_old_reply_first(
    conversation, student, notes, online_chain, openai_standin
):
    openai_standin.script(Reply(" ".join(["slow"] * 100), chunk_delay=0.05), Reply("Second answer."))
    socket = await connect(conversation, student.user)
    await socket.send({"type": "chat.message", "text": "What is a loop?"})
    while (await socket.receive(5))["type"] != "tutor.delta":
        pass
    await socket.send({"type": "chat.message", "text": "Actually, what is a function?"})
    events = await until_reply(socket)
    events += await until_reply(socket)
    await socket.close()

    finals = of_type(events, "tutor.message")
    assert [f["data"]["status"] for f in finals] == ["interrupted", "complete"]
    persisted = [e["seq"] for e in events if e["seq"] is not None]
    assert persisted == sorted(persisted) and len(set(persisted)) == len(persisted)


# --- Replay after reconnect ---------------------------------------------------------------------


async def test_reconnect_with_after_seq_replays_every_missed_event_once_in_order(
    conversation, student, notes, offline_chain
):
    socket = await connect(conversation, student.user)
    for text in ["What is a loop?", "What is recursion?", "What is a function?"]:
        await socket.send({"type": "chat.message", "text": text})
        await until_reply(socket)
    await socket.close()

    socket = await open_socket(path(conversation) + "?after_seq=2", user=student.user)
    status = await socket.receive()
    assert status["type"] == "conversation.status" and status["data"]["last_seq"] == 6
    replayed = [await socket.receive() for _ in range(4)]
    assert await socket.nothing()
    await socket.close()
    assert [(m["type"], m["seq"]) for m in replayed] == [
        ("transcript.final", 3), ("tutor.message", 4), ("transcript.final", 5), ("tutor.message", 6),
    ]
    assert replayed[2]["data"]["text"] == "What is a function?"


async def test_without_after_seq_nothing_is_replayed(conversation, student, offline_chain):
    await database_sync_to_async(factories.MessageFactory)(conversation=conversation, seq=1, text="Earlier")
    socket = await connect(conversation, student.user)
    assert await socket.nothing()
    await socket.close()


# --- Access ----------------------------------------------------------------------------------


async def test_another_student_of_the_course_is_refused_with_4403(conversation, other_student):
    assert await refusal(path(conversation), user=other_student.user) == ("close", 4403)


async def test_the_professor_is_refused_with_4403(conversation, professor):
    assert await refusal(path(conversation), user=professor.user) == ("close", 4403)


async def test_a_user_of_another_tenant_gets_4404(conversation, outsider):
    assert await refusal(path(conversation), user=outsider.user) == ("close", 4404)


async def test_anonymous_gets_4401(conversation):
    assert await refusal(path(conversation)) == ("close", 4401)


async def test_a_ticket_opens_the_conversation_for_a_native_client(conversation, student):
    ticket = await database_sync_to_async(ticket_issue)(
        user_id=student.user_id, kind="conversation", object_id=conversation.pk
    )
    socket = await open_socket(path(conversation), origin=None, ticket=ticket)
    assert (await socket.receive())["type"] == "conversation.status"
    await socket.close()


async def test_a_room_ticket_does_not_open_a_conversation(conversation, student):
    ticket = await database_sync_to_async(ticket_issue)(user_id=student.user_id, kind="room", object_id=conversation.pk)
    assert await refusal(path(conversation), origin=None, ticket=ticket) == ("close", 4401)


async def test_deleting_the_conversation_closes_its_sockets_with_4404(conversation, student):
    from sessions.services import conversation_delete

    socket = await connect(conversation, student.user)
    await database_sync_to_async(conversation_delete)(conversation=conversation)
    await socket.expect_close(4404)


# --- Bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"text": ""}, "empty_message"),
        ({"text": "   \n\t "}, "empty_message"),
        ({"text": "x" * 4001}, "message_too_long"),
        ({"text": 42}, "invalid_message"),
        ({"text": ["a"]}, "invalid_message"),
        ({}, "invalid_message"),
        ("just a string", "invalid_message"),
    ],
)
async def test_bad_messages_get_an_error_and_nothing_is_stored(conversation, student, offline_chain, data, code, settings):
    settings.WS_MAX_TEXT_FRAME_BYTES = 64 * 1024
    socket = await connect(conversation, student.user)
    await socket.send({"type": "chat.message", "data": data})
    error = await socket.receive()
    assert (error["type"], error["data"]["code"]) == ("error", code)
    assert error["data"]["message"]
    await socket.send({"type": "ping"})
    assert (await socket.receive())["type"] == "pong"  # still open
    await socket.close()
    assert await database_sync_to_async(Message.objects.filter(conversation=conversation).count)() == 0


async def test_binary_frames_are_audio_and_malformed_ones_are_refused(conversation, student, offline_chain):
    # Conversations take voice (tests/voice): a frame that is not PCM16 gets an error.
    socket = await connect(conversation, student.user)
    await socket.comm.send_to(bytes_data=b"\x00\x01\x02")
    error = await socket.receive()
    assert error["data"]["code"] == "audio_malformed"
    await socket.close()


async def test_too_many_questions_a_minute_are_refused(conversation, student, offline_chain, settings):
    settings.TUTOR_TURNS_PER_MINUTE = 2
    socket = await connect(conversation, student.user)
    for text in ["What is a loop?", "What is a list?"]:
        await socket.send({"type": "chat.message", "text": text})
        await until_reply(socket)
    await socket.send({"type": "chat.message", "text": "What is a string?"})
    error = await socket.receive()
    assert (error["type"], error["data"]["code"]) == ("error", "rate_limited")
    await socket.close()
