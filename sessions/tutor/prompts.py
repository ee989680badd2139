"""Prompts: the active `PromptTemplate` of a kind, rendered with a `TutorContext`.

Templates are Django template source edited in the admin and versioned (sessions/services.py
publishes versions). The tenant's own active version of a kind wins over the global one; with
neither (a fresh database that was never seeded) the built-in default of `courses.services`
is used, so the tutor never fails for want of a row.

The context names a template may use are documented in `courses/services.py` above
`PROMPT_BODIES`; `prompt_context()` is the one place that builds them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.template import Context, Engine, Template, TemplateSyntaxError

from courses.services import PROMPT_BODIES
from sessions.models import PromptTemplate
from sessions.providers.base import HistoryLine, TutorContext, estimate_tokens

# Teaching mode -> prompt kind. They coincide today; the map keeps the two vocabularies apart.
MODE_TO_KIND = {
    "socratic": PromptTemplate.Kind.SOCRATIC,
    "teacher": PromptTemplate.Kind.TEACHER,
    "qa": PromptTemplate.Kind.QA,
    "quiz_lock": PromptTemplate.Kind.QUIZ_LOCK,
}

# Prompts are plain text for a model: no autoescaping, no project template loaders or tags.
_ENGINE = Engine(autoescape=False, debug=False)


@dataclass(frozen=True, slots=True)
class ResolvedPrompt:
    """The template a reply was built from, for logs and tests."""

    kind: str
    template_id: int | None  # None: the built-in default
    version: int
    body: str


def prompt_template_resolve(*, tenant_id: int | None, kind: str) -> ResolvedPrompt:
    """The active template of `kind` for a tenant: its own, else the global one, else built-in."""
    rows = list(
        PromptTemplate.objects.filter(kind=kind, is_active=True)
        .filter(Q(tenant_id=tenant_id) | Q(tenant__isnull=True))
        .values("id", "tenant_id", "version", "body")
    )
    rows.sort(key=lambda row: row["tenant_id"] is None)  # the tenant's own first
    if rows:
        row = rows[0]
        return ResolvedPrompt(kind=kind, template_id=row["id"], version=row["version"], body=row["body"])
    return ResolvedPrompt(kind=kind, template_id=None, version=0, body=PROMPT_BODIES[kind][1])


@lru_cache(maxsize=256)
def _compiled(digest: str, body: str) -> Template:
    return _ENGINE.from_string(body)


def _compile(body: str) -> Template:
    return _compiled(hashlib.sha256(body.encode()).hexdigest(), body)


def history_within_budget(history: list[HistoryLine]) -> list[HistoryLine]:
    """The most recent lines that fit TUTOR_HISTORY_MESSAGES and TUTOR_HISTORY_TOKEN_BUDGET,
    oldest first. The newest line is always kept, however long (cut to the budget)."""
    kept: list[HistoryLine] = []
    budget = int(settings.TUTOR_HISTORY_TOKEN_BUDGET)
    for line in reversed(history[-int(settings.TUTOR_HISTORY_MESSAGES) :]):
        cost = estimate_tokens(line.text)
        if kept and cost > budget:
            break
        if not kept and cost > budget:
            line = HistoryLine(role=line.role, name=line.name, text=line.text[: budget * 4] + " …")
            cost = budget
        kept.append(line)
        budget -= cost
    kept.reverse()
    return kept


def prompt_context(context: TutorContext) -> dict[str, Any]:
    """The names a template sees (documented above PROMPT_BODIES in courses/services.py)."""
    return {
        "persona": {"name": context.persona_name, "style_prompt": context.persona_style},
        "student_name": context.student_name,
        "course": {"title": context.course_title, "code": context.course_code},
        "scope_terms": context.scope_terms,
        "teaching_mode": context.teaching_mode,
        "room_topic": context.room_topic,
        "room_goal": context.room_goal,
        "hint": context.hint,
        "participants": context.participants,
        "quiet_students": context.quiet_students,
        "history": [{"role": h.role, "name": h.name, "text": h.text} for h in context.history],
        "passages": [
            {"document": p.document, "page": p.page, "heading": p.heading, "text": p.text}
            for p in context.passages
        ],
        "lecture": [{"at": line.at, "text": line.text} for line in context.lecture],
        "question": context.question,
    }


def prompt_render(prompt: ResolvedPrompt, context: TutorContext) -> str:
    """Render a template; a template broken in the admin falls back to the built-in default
    (logged by the caller through the returned text being the default's)."""
    values = Context(prompt_context(context))
    try:
        text = _compile(prompt.body).render(values)
    except TemplateSyntaxError:
        text = _compile(PROMPT_BODIES[prompt.kind][1]).render(values)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def tutor_messages(*, context: TutorContext, prompt: ResolvedPrompt) -> list[dict[str, str]]:
    """The chat messages of a tutor reply: the rendered mode prompt as the system message
    (it already holds the history, passages and lecture), then the student's message."""
    return [
        {"role": "system", "content": prompt_render(prompt, context)},
        {"role": "user", "content": context.question},
    ]
