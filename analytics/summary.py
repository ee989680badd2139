"""The summary of a session: written by the LLM chain, or extracted offline from the transcript.

`session_summary()` tries the tenant's model chain (sessions/tutor/chain.py) with the active
PromptTemplate of kind "summary" (the tenant's own, else the global one, else the built-in
default, as for the tutor's prompts). Any failure (no model, every model failing, the offline
tutor, which writes no summaries, an empty reply) falls back to `extractive_summary()`: the
transcript's most telling student lines, ranked by the topics they name and the confusion they
show. The result says which it is (`offline=True` for the extractive one); it never raises.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.template import Context, Engine

from analytics import confusion
from analytics.metrics import (
    STUDENT,
    Line,
    SessionMetrics,
    is_explanation,
    is_question,
    student_line_signals,
)

logger = logging.getLogger(__name__)

KEY_LINES = 5
LINE_CHARS = 200
HISTORY_CHARS = 12_000  # transcript characters sent to the model (see _history)
SUMMARY_MAX_TOKENS = 600
_ENGINE = Engine(autoescape=False, debug=False)


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    offline: bool
    model: str = ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 1] + "\u2026"


def line_score(line: Line, *, terms: list[str]) -> int:
    """How much a student line tells the professor: topics named, confusion, explanation, question."""
    return (
        2 * len(confusion.line_topics(line.text, terms=terms))
        + 3 * bool(student_line_signals(line.text))
        + 2 * is_explanation(line.text)
        + is_question(line.text)
    )


def extractive_summary(
    *, lines: list[Line], result: SessionMetrics, names: dict[int, str], terms: list[str]
) -> str:
    """Topics, confusion and the top student lines, in transcript order; no model involved."""
    covered: Counter[str] = Counter()
    for student in result.students.values():
        for topic in student.topics_covered:
            covered[topic["topic"]] += len(topic["segments"])
    student_lines = [line for line in lines if line.speaker == STUDENT and line.text.strip()]
    parts = ["Offline summary (extracted from the transcript, no language model)."]
    parts.append(
        f"{len(result.students)} students, {result.participation.get('total_turns', 0)} student turns, "
        f"{sum(1 for s in result.students.values() if s.turns == 0)} silent."
    )
    if covered:
        parts.append("Topics covered: " + ", ".join(f"{t} ({n})" for t, n in covered.most_common()) + ".")
    if result.confusion_topics:
        parts.append(
            "Confusion points: "
            + ", ".join(f"{row['topic']} ({row['count']})" for row in result.confusion_topics)
            + "."
        )
    scores = {line.seq: line_score(line, terms=terms) for line in student_lines}
    ranked = sorted(student_lines, key=lambda line: (-scores[line.seq], line.seq))
    chosen = sorted((line for line in ranked[:KEY_LINES] if scores[line.seq] > 0), key=lambda kept: kept.seq)
    if chosen:
        parts.append("Key lines:")
        parts.extend(f"- #{line.seq} {names.get(line.student_id or 0, 'Student')}: {_short(line.text)}" for line in chosen)
    elif not student_lines:
        parts.append("No student said anything.")
    return "\n".join(parts)


def _history(
    lines: list[Line], *, names: dict[int, str], room_names: dict[int, str], terms: list[str]
) -> list[dict[str, str]]:
    """The transcript for the prompt, within HISTORY_CHARS: everything if it fits, else the most
    telling student lines first (`line_score`), then the rest newest first; in seq order."""
    rows: dict[int, dict[str, str]] = {}
    for line in lines:
        if not line.text.strip():
            continue
        who = names.get(line.student_id or 0) if line.speaker == STUDENT else line.speaker.capitalize()
        room = room_names.get(line.room_id or 0, "Main room")
        rows[line.seq] = {"name": f"{who or 'Student'} [{room}]", "role": line.speaker, "text": _short(line.text)}
    size = {seq: len(row["name"]) + len(row["text"]) + 4 for seq, row in rows.items()}
    if sum(size.values()) <= HISTORY_CHARS:
        return [rows[seq] for seq in sorted(rows)]
    by_seq = {line.seq: line for line in lines}
    scored = {
        seq: line_score(by_seq[seq], terms=terms) if by_seq[seq].speaker == STUDENT else 0 for seq in rows
    }
    order = sorted(rows, key=lambda seq: (-scored[seq], -seq))
    kept, used = [], 0
    for seq in order:
        if used + size[seq] > HISTORY_CHARS:
            continue
        kept.append(seq)
        used += size[seq]
    return [rows[seq] for seq in sorted(kept)]


def summary_prompt(*, tenant_id: int, course: Any, lines: list[Line], names: dict[int, str],
                   room_names: dict[int, str], room_topics: dict[int, str], terms: list[str]) -> str:
    from sessions.models import PromptTemplate
    from sessions.tutor.prompts import prompt_template_resolve

    template = prompt_template_resolve(tenant_id=tenant_id, kind=PromptTemplate.Kind.SUMMARY)
    topics = "; ".join(f"{room_names.get(r, r)}: {t}" for r, t in sorted(room_topics.items()) if t)
    context = {
        "course": {"code": course.code, "title": course.title},
        "room_topic": topics,
        "lecture": [],
        "history": _history(
            [line for line in lines if line.room_id is not None], names=names, room_names=room_names, terms=terms
        ),
    }
    lecture = [line for line in lines if line.room_id is None and line.speaker == "professor"]
    context["lecture"] = [{"at": f"{line.start_ms // 60000:02d}:{line.start_ms // 1000 % 60:02d}",
                           "text": _short(line.text)} for line in lecture[-20:]]
    return _ENGINE.from_string(template.body).render(Context(context)).strip()


async def _llm_summary(*, session: Any, prompt: str) -> Summary:
    from sessions.providers.base import LLMRequest
    from sessions.tutor.chain import ChainRun, UsageScope

    request = LLMRequest(
        messages=[{"role": "user", "content": prompt}], model="", temperature=0.3,
        max_tokens=SUMMARY_MAX_TOKENS, purpose="summary",
    )
    from sessions.providers.openai_llm import openai_clients_close

    scope = UsageScope(tenant_id=session.tenant_id, course_id=session.course_id, session_id=session.pk)
    try:
        async with ChainRun(chain=session.summary_chain, request=request, scope=scope) as run:
            async for _event in run:
                pass
    finally:
        await openai_clients_close()  # this loop (async_to_sync's) ends with the call: so do its connections
    result = run.result
    if result is None or result.offline or not result.text.strip():
        raise ValueError("no usable summary from the model chain")
    return Summary(text=result.text.strip(), offline=False, model=result.spec.model_name)


def _chain(session: Any) -> list:
    """The tenant's model chain without the offline tutor (it writes no summaries), budget applied."""
    from sessions.models import LLMModel
    from sessions.tutor.chain import chain_apply_budget, chain_for_tenant

    chain = [spec for spec in chain_for_tenant(tenant_id=session.tenant_id) if spec.provider != LLMModel.Provider.OFFLINE]
    if chain:
        chain, _notice = chain_apply_budget(chain=chain, tenant=session.tenant)
    return chain


def session_summary(
    *, session: Any, lines: list[Line], result: SessionMetrics, names: dict[int, str],
    room_names: dict[int, str], room_topics: dict[int, str], terms: list[str], use_llm: bool = True,
) -> Summary:
    """The LLM's summary if the chain answers, else the extractive one. Never raises."""
    if use_llm and any(line.text.strip() for line in lines):
        try:
            prompt = summary_prompt(
                tenant_id=session.tenant_id, course=session.course, lines=lines, names=names,
                room_names=room_names, room_topics=room_topics, terms=terms,
            )
            chain = _chain(session)
            if not chain:
                raise ValueError("the tenant's model chain has no model that writes summaries")
            session.summary_chain = chain
            return async_to_sync(_llm_summary)(session=session, prompt=prompt)
        except Exception as exc:  # the summary must never fail the computation
            logger.info("session %s: LLM summary unavailable (%s); using the extractive one", session.pk, exc)
    text = extractive_summary(lines=lines, result=result, names=names, terms=terms)
    return Summary(text=text, offline=True)
