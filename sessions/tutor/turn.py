"""One tutor turn: from a student's persisted message to the persisted, broadcast reply.

    question, plan = await database_sync_to_async(turn_begin)(...)   # one thread hop: persist
    turn_start(plan)                                                # the reply runs as a task

`turn_begin` persists the student's message (broadcast as `transcript.final` after commit),
opens the tutor's reply row and prepares everything the reply needs in the same thread hop:
the context (persona, names, history within its token budget, retrieved passages), the rendered
prompts and the model chain (with the tenant's budget applied). `turn_run` then, on the event
loop: announces `tutor.thinking`, runs the guardrail (its LLM tier only for uncertain follow-ups),
streams the chain's deltas to the conversation's group as `tutor.delta`, and closes the reply
(`tutor.message`, persisted with its `seq`). An off-topic question gets the persona's redirect
and costs no main-model call. Cancelling the task (`turn_cancel`: the student pressed stop, or
sent a new message) stops the upstream generation and keeps what was said as `interrupted`.

Deltas are ephemeral (seq null); the closing `tutor.message` carries the full text, so a client
that missed deltas loses nothing. Running turns live in this process's registry; a stop pressed
on a socket of another process reaches this one through the group (`tutor.cancel`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse

from courses.exceptions import Conflict, RateLimited
from courses.models import User
from courses.retrieval import passages_search
from sessions import groups
from sessions.models import AvatarPersona, Conversation, Message
from sessions.providers.base import HistoryLine, LLMRequest, ModelSpec, Passage, TutorContext
from sessions.realtime import group_event, group_send_async
from sessions.selectors import message_event
from sessions.services import conversation_message_post, tutor_reply_close, tutor_reply_open
from sessions.tutor import prompts
from sessions.tutor.chain import ChainRun, TutorUnavailable, UsageScope, chain_apply_budget, chain_for_tenant
from sessions.tutor.guardrail import guardrail_check, guardrail_redirect

logger = logging.getLogger(__name__)

DEFAULT_PERSONA_NAME = "Tutor"
GUARDRAIL_REDIRECT_MODEL = "guardrail-redirect"

# (type, data, seq) of every event a turn emits, for a caller that relays them elsewhere (SSE).
Listener = Callable[[str, Any, "int | None"], None]


@dataclass(slots=True)
class TurnPlan:
    """Everything `turn_run` needs, prepared in one thread hop by `turn_begin`."""

    conversation_id: int
    tenant_id: int
    course_id: int
    user_id: int | None
    question_id: int | None  # None in a room: the question is the room's latest lines
    reply_id: int
    context: TutorContext
    messages: list[dict[str, str]]
    guardrail_messages: list[dict[str, str]]
    guardrail_enabled: bool
    off_topic_terms: list[str]
    chain: list[ModelSpec]
    notice: str = ""
    citation_urls: dict[int, str] = field(default_factory=dict)  # document id -> file URL
    room_id: int | None = None  # a breakout room's turn: events go to the room's group
    session_id: int | None = None

    @property
    def group(self) -> str:
        if self.room_id is not None:
            return groups.room_group(self.room_id)
        return groups.conversation_group(self.conversation_id)

    @property
    def scope(self) -> UsageScope:
        return UsageScope(
            tenant_id=self.tenant_id, course_id=self.course_id,
            conversation_id=self.conversation_id, user_id=self.user_id,
        )


# --- Preparation (sync: database) --------------------------------------------------------------


def turn_rate_check(*, user_id: int) -> None:
    """At most TUTOR_TURNS_PER_MINUTE questions a minute per student: every turn may cost money."""
    limit = int(settings.TUTOR_TURNS_PER_MINUTE)
    if limit <= 0:
        return
    key = f"tutor-turns:{user_id}:{int(time.time() // 60)}"
    cache.add(key, 0, timeout=120)
    if cache.incr(key) > limit:
        raise RateLimited(f"At most {limit} questions a minute; give the tutor a moment.", code="rate_limited")


def _persona(conversation: Conversation) -> AvatarPersona | None:
    return conversation.persona or conversation.course.default_persona


def _history(conversation: Conversation, *, before_seq: int, student_name: str, tutor_name: str) -> list[HistoryLine]:
    rows = (
        conversation.messages.filter(seq__isnull=False, seq__lt=before_seq)
        .exclude(text="")
        .order_by("-seq")
        .values_list("role", "text")[: int(settings.TUTOR_HISTORY_MESSAGES)]
    )
    names = {Message.Role.STUDENT: student_name, Message.Role.TUTOR: tutor_name}
    return [HistoryLine(role=role, name=names.get(role, role), text=text) for role, text in reversed(rows)]


def passages_for(*, conversation: Conversation, question: str, history: list[HistoryLine]) -> list[Passage]:
    hits = passages_search(
        course_id=conversation.course_id,
        tenant_id=conversation.tenant_id,
        query=question,
        limit=int(settings.TUTOR_PASSAGES),
        history=[line.text for line in history if line.role == Message.Role.STUDENT],
    )
    return [
        Passage(
            document=hit.document, text=hit.text, page=hit.page, heading=hit.heading,
            document_id=hit.document_id, chunk_id=hit.chunk_id, score=hit.score,
        )
        for hit in hits
    ]


def turn_prepare(*, conversation: Conversation, question: Message, reply: Message, user: User | None) -> TurnPlan:
    """Context, prompts and model chain for the reply to `question` (sync; a few queries)."""
    course = conversation.course
    persona = _persona(conversation)
    persona_name = persona.name if persona else DEFAULT_PERSONA_NAME
    student_name = conversation.student.first_name if conversation.student_id else ""
    history = prompts.history_within_budget(
        _history(conversation, before_seq=question.seq, student_name=student_name, tutor_name=persona_name)
    )
    context = TutorContext(
        tenant_id=conversation.tenant_id,
        course_id=course.pk,
        course_code=course.code,
        course_title=course.title,
        question=question.text,
        student_name=student_name,
        teaching_mode=conversation.mode,
        persona_name=persona_name,
        persona_style=persona.style_prompt if persona else "",
        scope_terms=[str(term) for term in course.scope_terms or []],
        history=history,
        passages=passages_for(conversation=conversation, question=question.text, history=history),
        conversation_id=conversation.pk,
    )
    return plan_build(
        conversation=conversation, context=context, reply=reply, question_id=question.pk,
        user_id=user.pk if user else None,
    )


def plan_build(
    *, conversation: Conversation, context: TutorContext, reply: Message, question_id: int | None,
    user_id: int | None, room_id: int | None = None, session_id: int | None = None,
) -> TurnPlan:
    """The plan of a reply from its context: prompts of the mode, guardrail prompt, the model
    chain with the tenant's budget applied, citation links. Shared by practice and room turns."""
    course = conversation.course
    mode_prompt = prompts.prompt_template_resolve(
        tenant_id=conversation.tenant_id, kind=prompts.MODE_TO_KIND.get(context.teaching_mode, "socratic")
    )
    guardrail_prompt = prompts.prompt_template_resolve(tenant_id=conversation.tenant_id, kind="guardrail")
    guardrail_context = replace(
        context, history=context.history[-int(settings.GUARDRAIL_HISTORY_MESSAGES) :], passages=[]
    )
    chain, notice = chain_apply_budget(chain=chain_for_tenant(tenant_id=conversation.tenant_id), tenant=course.tenant)
    return TurnPlan(
        conversation_id=conversation.pk,
        tenant_id=conversation.tenant_id,
        course_id=course.pk,
        user_id=user_id,
        question_id=question_id,
        reply_id=reply.pk,
        context=context,
        messages=prompts.tutor_messages(context=context, prompt=mode_prompt),
        guardrail_messages=[
            {"role": "user", "content": prompts.prompt_render(guardrail_prompt, guardrail_context)}
        ],
        guardrail_enabled=bool(course.guardrail_enabled),
        off_topic_terms=[str(term) for term in course.off_topic_terms or []],
        chain=chain,
        notice=notice,
        citation_urls={
            p.document_id: reverse("course-document-file", args=[course.pk, p.document_id])
            for p in context.passages
            if p.document_id
        },
        room_id=room_id,
        session_id=session_id,
    )


def _conversation_for_turn(conversation_id: int) -> Conversation:
    """The conversation with everything `turn_prepare` reads from it, in one query."""
    return Conversation.objects.select_related(
        "course__tenant", "course__default_persona", "persona", "student__user"
    ).get(pk=conversation_id)


def turn_begin(
    *, conversation_id: int, user: User, text: Any, source: str = "text", provider: str = "",
    audio_wav: bytes | None = None,
) -> tuple[dict[str, Any], TurnPlan]:
    """Persist the student's message and prepare the reply: (the `transcript.final` event of the
    question, the plan). Raises DomainError (bad message, rate limit) before anything is kept.
    A spoken question: `source` "speech", the STT `provider`, `audio_wav` when the tenant keeps it."""
    turn_rate_check(user_id=user.pk)
    conversation = _conversation_for_turn(conversation_id)
    question = conversation_message_post(
        conversation=conversation, author=user, text=text, source=source, provider=provider, audio_wav=audio_wav
    )
    reply = tutor_reply_open(conversation=conversation)
    plan = turn_prepare(conversation=conversation, question=question, reply=reply, user=user)
    return message_event(question, conversation=conversation, author_name=user.display_name), plan


def turn_retry_begin(*, conversation_id: int, user: User) -> TurnPlan:
    """Answer the latest student message again (after a failed or stopped reply)."""
    turn_rate_check(user_id=user.pk)
    conversation = _conversation_for_turn(conversation_id)
    question = (
        conversation.messages.filter(role=Message.Role.STUDENT, seq__isnull=False).order_by("-seq").first()
    )
    if question is None:
        raise Conflict("There is no question to answer yet.", code="nothing_to_retry")
    reply = tutor_reply_open(conversation=conversation)
    return turn_prepare(conversation=conversation, question=question, reply=reply, user=user)


# --- The reply (async) -------------------------------------------------------------------------


def citations_for_reply(plan: TurnPlan, text: str) -> list[dict]:
    """Passages the reply points to: by heading, or by document and page; a reply that names a
    document without a page cites that document's best passage."""
    cited: list[Passage] = []
    for passage in plan.context.passages:
        by_heading = bool(passage.heading) and passage.heading in text
        by_page = passage.page is not None and passage.document in text and f"p. {passage.page}" in text
        if by_heading or by_page:
            cited.append(passage)
    if not cited:
        for passage in plan.context.passages:
            if passage.document in text:
                cited.append(passage)
                break
    citations = []
    seen: set[tuple] = set()
    for passage in cited:
        key = (passage.document_id, passage.page, passage.heading)
        if key in seen:
            continue
        seen.add(key)
        citation = passage.citation()
        url = plan.citation_urls.get(passage.document_id or 0, "")
        citation["url"] = f"{url}#page={passage.page}" if url and passage.page else url
        citations.append(citation)
    return citations


class _Emitter:
    """Sends a turn's events to the conversation's group, and to a listener if there is one."""

    def __init__(self, plan: TurnPlan, listener: Listener | None):
        self.group = plan.group
        self.listener = listener

    async def ephemeral(self, event_type: str, data: dict) -> None:
        if self.listener:
            self.listener(event_type, data, None)
        await group_send_async(self.group, group_event(event_type, data))

    def persisted(self, event: dict) -> None:
        """A persisted event was broadcast by its service after commit; relay it to the listener."""
        if self.listener:
            self.listener(event["event_type"], event["data"], event["seq"])


async def _ask_guardrail_llm(plan: TurnPlan) -> str | None:
    """The guardrail's LLM tier: the chain's online models answer YES or NO (None: none could)."""
    online = [spec for spec in plan.chain if spec.provider != "offline" and not spec.missing]
    if not online:
        return None
    request = LLMRequest(messages=plan.guardrail_messages, model="", temperature=0.0, max_tokens=3, purpose="guardrail")
    answer: list[str] = []
    try:
        async with asyncio.timeout(float(settings.GUARDRAIL_LLM_TIMEOUT_SECONDS)):
            async with ChainRun(chain=online, request=request, scope=plan.scope) as run:
                async for event in run:
                    if event.kind == "delta":
                        answer.append(event.text)
                    elif event.kind == "restart":
                        answer.clear()
    except (TutorUnavailable, TimeoutError) as exc:
        logger.warning("guardrail LLM tier unavailable for conversation %s: %s", plan.conversation_id, exc)
        return None
    return "".join(answer)


async def _close(plan: TurnPlan, emitter: _Emitter, **fields: Any) -> Message:
    message = await database_sync_to_async(tutor_reply_close)(
        message_id=plan.reply_id, question_id=plan.question_id, **fields
    )
    if plan.room_id is None:
        conversation = Conversation(pk=plan.conversation_id)
        emitter.persisted(message_event(message, conversation=conversation))
    return message


async def turn_run(plan: TurnPlan, *, listener: Listener | None = None) -> Message:
    """Guardrail, then the model chain, streamed to the conversation; returns the closed reply."""
    emitter = _Emitter(plan, listener)
    await emitter.ephemeral("tutor.thinking", {"message_id": plan.reply_id})
    text: list[str] = []
    verdict_label = ""
    try:
        verdict = await guardrail_check(
            text=plan.context.question,
            scope_terms=plan.context.scope_terms,
            off_topic_terms=plan.off_topic_terms,
            history=plan.context.history,
            enabled=plan.guardrail_enabled,
            room_topic=plan.context.room_topic,
            ask_llm=lambda: _ask_guardrail_llm(plan),
        )
        verdict_label = verdict.label if plan.guardrail_enabled else ""
        if not verdict.on_topic:
            logger.info(
                "conversation %s: off-topic question redirected (%s tier: %s)",
                plan.conversation_id, verdict.tier, verdict.reason,
            )
            redirect = guardrail_redirect(
                text=plan.context.question,
                persona_name=plan.context.persona_name,
                student_name=plan.context.student_name,
                course_title=plan.context.course_title,
                scope_terms=plan.context.scope_terms,
                room_topic=plan.context.room_topic,
            )
            await emitter.ephemeral("tutor.delta", {"message_id": plan.reply_id, "text": redirect})
            return await _close(
                plan, emitter, text=redirect, status=Message.Status.COMPLETE,
                model=GUARDRAIL_REDIRECT_MODEL, guardrail=verdict.label,
            )

        request = LLMRequest(messages=plan.messages, model="", context=plan.context, purpose="reply")
        async with ChainRun(chain=plan.chain, request=request, scope=plan.scope) as run:
            async for event in run:
                if event.kind == "delta":
                    text.append(event.text)
                    await emitter.ephemeral("tutor.delta", {"message_id": plan.reply_id, "text": event.text})
                elif event.kind == "restart":
                    text.clear()
                    await emitter.ephemeral(
                        "tutor.delta", {"message_id": plan.reply_id, "text": "", "restart": True}
                    )
            result = run.result
        reply = result.text if result and result.text else "".join(text)
        return await _close(
            plan, emitter,
            text=reply,
            status=Message.Status.COMPLETE,
            model=result.spec.model_name if result else "",
            offline=bool(result and result.offline),
            guardrail=verdict_label,
            citations=citations_for_reply(plan, reply),
            prompt_tokens=result.usage.prompt_tokens if result else 0,
            completion_tokens=result.usage.completion_tokens if result else 0,
            notice=plan.notice,
        )
    except TutorUnavailable as exc:
        logger.warning("conversation %s: tutor unavailable: %s", plan.conversation_id, exc)
        return await _close(
            plan, emitter, text="".join(text), status=Message.Status.FAILED,
            guardrail=verdict_label, error=str(exc), notice=plan.notice,
        )
    except asyncio.CancelledError:
        # Stopped: keep what was said. Shielded, so a second cancel cannot lose the close.
        await asyncio.shield(
            _close(
                plan, emitter, text="".join(text), status=Message.Status.INTERRUPTED,
                guardrail=verdict_label, error="Stopped before the reply was complete.",
                notice=plan.notice,
            )
        )
        raise
    except Exception as exc:
        logger.exception("conversation %s: the tutor turn failed", plan.conversation_id)
        return await asyncio.shield(
            _close(
                plan, emitter, text="".join(text), status=Message.Status.FAILED,
                guardrail=verdict_label, error=f"Internal error: {type(exc).__name__}", notice=plan.notice,
            )
        )


# --- Running turns of this process ---------------------------------------------------------------

_running: dict[int, asyncio.Task] = {}


async def turn_cancel(conversation_id: int) -> bool:
    """Stop this process's running reply of a conversation, if any, and wait until it is closed."""
    task = _running.get(conversation_id)
    if task is None or task.done():
        return False
    task.cancel()
    await asyncio.wait([task])
    return True


async def turn_start(plan: TurnPlan, *, listener: Listener | None = None) -> asyncio.Task:
    """Run the reply as a task of its own (the socket keeps reading: stop must get through).
    A reply still running in this conversation is stopped first, so replies never overlap."""
    await turn_cancel(plan.conversation_id)
    task = asyncio.create_task(turn_run(plan, listener=listener), name=f"tutor-turn-{plan.conversation_id}")
    _running[plan.conversation_id] = task

    def forget(done: asyncio.Task) -> None:
        if _running.get(plan.conversation_id) is done:
            del _running[plan.conversation_id]

    task.add_done_callback(forget)
    return task


async def turn_cancel_everywhere(conversation_id: int) -> None:
    """Stop the conversation's reply in whichever process runs it (here first, then the group)."""
    await turn_cancel(conversation_id)
    await group_send_async(groups.conversation_group(conversation_id), {"type": "tutor.cancel"})


def turn_is_running(conversation_id: int) -> bool:
    task = _running.get(conversation_id)
    return task is not None and not task.done()
