"""Topics covered and confusion points refined by the tenant's language model, when one is online.

`progress_refine()` runs after the rule-based computation of a final result (analytics/services.py):
it sends the student lines, numbered by seq and batched (BATCH_LINES a call, CONCURRENCY calls at
once, all in one event loop), with the course's scope terms and the rooms' topics, through the
tenant's model chain (sessions/tutor/chain.py; the offline tutor and models without their API key
left out), using the active PromptTemplate of kind "analytics".
The model answers strict JSON, for each seq a `topic` (a scope term, a room topic or "general") and
a `confusion` (null, "stuck", "misconception" or "repeated_question"). The answers are merged:

- a confusion label on a line the rules found nothing on adds a point {topic, signal "llm", seq,
  evidence "model: <label>"}; a rule-found point is never removed or changed;
- a topic adds the seq to the student's topics covered (a new topic when the rules had not seen
  it), and then engagement is recomputed with the metrics module's own formula;
- the session's confusion topics and room rows are refreshed from the merged students.

Parsing is defensive: a reply that is not JSON is ignored (that batch only), so are unknown seqs,
topics and labels. Any failure of the chain (no model, every model failing, a timeout) leaves the
rule-based result as it was. It never raises: the report says what happened and why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.template import Context, Engine, TemplateSyntaxError

from analytics import confusion, metrics

logger = logging.getLogger(__name__)

BATCH_LINES = 60  # student lines per model call
CONCURRENCY = 3  # model calls in flight at once
LINE_CHARS = 300
TOKENS_PER_LINE = 30  # the reply's budget: one short JSON entry a line
LABELS = ("stuck", "misconception", "repeated_question")
_ENGINE = Engine(autoescape=False, debug=False)

# Report statuses.
APPLIED = "applied"  # the model answered; its labels are merged (maybe none were new)
OFFLINE = "offline"  # no online model in the tenant's chain: nothing sent
SKIPPED = "skipped"  # nothing to classify
FAILED = "failed"  # the chain failed or every reply was unusable: rule-based result kept


@dataclass(slots=True)
class RefineReport:
    status: str
    reason: str = ""
    model: str = ""
    batches: int = 0  # model calls made
    lines: int = 0  # student lines sent
    classified: int = 0  # lines the model gave a usable answer for
    ignored: int = 0  # entries ignored: unknown seq, topic or label, duplicates
    confusion_added: int = 0
    topics_added: int = 0  # (student, topic, seq) additions to topics covered
    unusable_batches: int = 0
    engagement_recomputed: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Label:
    seq: int
    topic: str  # an allowed topic, lower-cased, or "" (general or unknown)
    confusion: str | None


def max_lines() -> int:
    """At most this many student lines are sent (the first ones by seq); 0 turns refinement off."""
    return int(getattr(settings, "ANALYTICS_REFINE_MAX_LINES", 600))


def allowed_topics(rows: metrics.SessionInput) -> list[str]:
    """The scope terms, then the rooms' topics, lower-cased, without repeats."""
    topics: list[str] = []
    for term in [*rows.scope_terms, *(rows.room_topics[r] for r in sorted(rows.room_topics))]:
        term = " ".join(str(term).split()).lower()
        if term and term != confusion.GENERAL_TOPIC and term not in topics:
            topics.append(term)
    return topics


def student_lines(rows: metrics.SessionInput, students: dict[int, metrics.StudentMetrics]) -> list[metrics.Line]:
    """The lines to classify: assigned students' non-empty lines, in seq order."""
    return sorted(
        (line for line in rows.lines
         if line.speaker == metrics.STUDENT and line.student_id in students and line.text.strip()),
        key=lambda line: line.seq,
    )


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 1] + "\u2026"


def prompt_body(*, tenant_id: int) -> str:
    """The active "analytics" template: the tenant's, else the global one, else the built-in default."""
    from sessions.models import PromptTemplate
    from sessions.tutor.prompts import prompt_template_resolve

    return prompt_template_resolve(tenant_id=tenant_id, kind=PromptTemplate.Kind.ANALYTICS).body


def refine_prompt(
    *, body: str, course: Any, lines: list[metrics.Line], rows: metrics.SessionInput,
    names: dict[int, str], room_names: dict[int, str],
) -> str:
    """The prompt for one batch of lines; a template that does not compile falls back to the default."""
    from courses.services import PROMPT_BODIES

    context = Context({
        "course": {"code": course.code, "title": course.title},
        "scope_terms": list(rows.scope_terms),
        "room_topics": [f"{room_names.get(r, r)}: {t}" for r, t in sorted(rows.room_topics.items()) if t],
        "topics": allowed_topics(rows),
        "history": [
            {"seq": line.seq, "name": names.get(line.student_id or 0, "Student"), "role": line.speaker,
             "room": room_names.get(line.room_id or 0, "Main room" if line.room_id is None else ""),
             "text": _short(line.text)}
            for line in lines
        ],
    })
    try:
        text = _ENGINE.from_string(body).render(context)
    except TemplateSyntaxError:
        text = _ENGINE.from_string(PROMPT_BODIES["analytics"][1]).render(context)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


# --- reading the reply ---------------------------------------------------------------------------

_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def _json_value(text: str) -> Any:
    """The JSON in a reply: the whole text, else its first {...} or [...] span; None if none."""
    text = _FENCE.sub("", text.strip())
    try:
        return json.loads(text)
    except ValueError:
        pass
    for opening, closing in (("{", "}"), ("[", "]")):
        start, end = text.find(opening), text.rfind(closing)
        if 0 <= start < end:
            try:
                return json.loads(text[start : end + 1])
            except ValueError:
                continue
    return None


def _entries(value: Any) -> list[Any] | None:
    """The per-line entries of a parsed reply: {"lines": [...]}, a bare list, or {"12": {...}}."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        return None
    for key in ("lines", "results", "classifications", "items"):
        if isinstance(value.get(key), list):
            return value[key]
    if value and all(re.fullmatch(r"#?\d+", str(key)) for key in value):
        return [{**entry, "seq": key.lstrip("#")} if isinstance(entry, dict) else None for key, entry in value.items()]
    return None


def _seq(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*#?\d+\s*", value):
        return int(value.strip().lstrip("#"))
    return None


def parse_reply(text: str, *, seqs: set[int], topics: list[str]) -> tuple[list[Label], int] | None:
    """(labels, entries ignored) from a model reply, or None when it holds no usable JSON.
    Unknown seqs, a seq given twice, unknown confusion labels are ignored; an unknown topic counts
    as none (the line's confusion label still stands)."""
    entries = _entries(_json_value(text))
    if entries is None or (entries and not any(isinstance(entry, dict) for entry in entries)):
        return None
    allowed = set(topics)
    labels: dict[int, Label] = {}
    ignored = 0
    for entry in entries:
        seq = _seq(entry.get("seq")) if isinstance(entry, dict) else None
        if seq is None or seq not in seqs or seq in labels:
            ignored += 1
            continue
        topic = " ".join(str(entry.get("topic") or "").split()).lower()
        raw = entry.get("confusion")
        label = str(raw).strip().lower().replace(" ", "_").replace("-", "_") if raw not in (None, False) else ""
        if label in ("", "null", "none", "no", "false"):
            label = ""
        elif label not in LABELS:
            ignored += 1
            continue
        labels[seq] = Label(seq=seq, topic=topic if topic in allowed else "", confusion=label or None)
    return list(labels.values()), ignored


# --- calling the chain -----------------------------------------------------------------------------


def online_chain(session: Any) -> list:
    """The tenant's chain without the offline tutor and without models that cannot be called (no
    API key), budget applied, as for the summary: [] when nothing is online."""
    from analytics.summary import _chain

    return [spec for spec in _chain(session) if not spec.missing]


async def _ask(*, session: Any, chain: list, prompt: str, lines: int) -> tuple[str, str]:
    """(reply text, model) from the chain; raises when no online model answered."""
    from sessions.providers.base import LLMRequest
    from sessions.tutor.chain import ChainRun, UsageScope

    request = LLMRequest(
        messages=[{"role": "user", "content": prompt}], model="", temperature=0.0,
        max_tokens=200 + TOKENS_PER_LINE * lines, purpose="analytics",
    )
    scope = UsageScope(tenant_id=session.tenant_id, course_id=session.course_id, session_id=session.pk)
    async with ChainRun(chain=chain, request=request, scope=scope) as run:
        async for _event in run:
            pass
    result = run.result
    if result is None or result.offline:
        raise ValueError("no online model answered")
    return result.text, result.spec.model_name


async def _ask_all(*, session: Any, chain: list, prompts: list[tuple[str, int]]) -> list[tuple[str, str]]:
    """Every batch's (reply, model), CONCURRENCY calls at a time, in one event loop (so the model's
    HTTP connections are reused). The first failure cancels the other calls and is raised."""
    gate = asyncio.Semaphore(CONCURRENCY)
    replies: list[tuple[str, str]] = [("", "")] * len(prompts)

    async def one(index: int, prompt: str, lines: int) -> None:
        async with gate:
            replies[index] = await _ask(session=session, chain=chain, prompt=prompt, lines=lines)

    from sessions.providers.openai_llm import openai_clients_close

    try:
        async with asyncio.TaskGroup() as group:
            for index, (prompt, lines) in enumerate(prompts):
                group.create_task(one(index, prompt, lines))
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    finally:
        await openai_clients_close()  # this loop ends with the call: so do its connections
    return replies


# --- merging -----------------------------------------------------------------------------------------


def _merge(
    labels: list[Label], *, lines: dict[int, metrics.Line], rows: metrics.SessionInput,
    students: dict[int, metrics.StudentMetrics], terms: list[str], report: RefineReport,
) -> set[int]:
    """Merge the labels into the students' rows; the ids of students whose topics gained a topic."""
    topics_grew: set[int] = set()
    for label in labels:
        line = lines[label.seq]
        m = students[line.student_id]  # type: ignore[index]
        if label.topic:
            row = next((t for t in m.topics_covered if t["topic"] == label.topic), None)
            if row is None:
                m.topics_covered.append({"topic": label.topic, "segments": [label.seq]})
                topics_grew.add(m.student_id)
                report.topics_added += 1
            elif label.seq not in row["segments"]:
                row["segments"] = sorted([*row["segments"], label.seq])
                report.topics_added += 1
        if label.confusion and not any(point["seq"] == label.seq for point in m.confusion_points):
            room_topic = rows.room_topics.get(line.room_id, "") if line.room_id is not None else ""
            topic = label.topic or confusion.line_topic(line.text, terms=terms, room_topic=room_topic)
            m.confusion_points.append(
                {"topic": topic, "signal": confusion.LLM_CLASSIFIED, "seq": label.seq,
                 "evidence": f"model: {label.confusion}"}
            )
            m.confusion_points.sort(key=lambda point: (point["seq"], point["signal"]))
            report.confusion_added += 1
    return topics_grew


def progress_refine(
    *, session: Any, rows: metrics.SessionInput, progress_by_student: dict[int, metrics.StudentMetrics],
    names: dict[int, str] | None = None, room_names: dict[int, str] | None = None,
) -> RefineReport:
    """Refine the students' topics covered and confusion points in place (see the module). Never raises."""
    try:
        return _refine(session=session, rows=rows, students=progress_by_student,
                       names=names or {}, room_names=room_names or {})
    except Exception as exc:  # refinement must never fail the computation
        logger.info("session %s: LLM refinement failed (%s); rule-based result kept", session.pk, exc, exc_info=True)
        return RefineReport(status=FAILED, reason=f"internal error: {type(exc).__name__}")


def _refine(
    *, session: Any, rows: metrics.SessionInput, students: dict[int, metrics.StudentMetrics],
    names: dict[int, str], room_names: dict[int, str],
) -> RefineReport:
    lines = student_lines(rows, students)
    limit = max_lines()
    if not lines or limit <= 0:
        reason = "ANALYTICS_REFINE_MAX_LINES is 0" if limit <= 0 else "no student lines"
        return RefineReport(status=SKIPPED, reason=reason)
    chain = online_chain(session)
    if not chain:
        logger.info("session %s: no online model; topics and confusion from the rules only", session.pk)
        return RefineReport(status=OFFLINE, reason="the tenant's model chain has no online model")
    report = RefineReport(status=APPLIED)
    if len(lines) > limit:
        report.notes.append(f"only the first {limit} of {len(lines)} student lines were sent")
        lines = lines[:limit]
    report.lines = len(lines)
    topics = allowed_topics(rows)
    body = prompt_body(tenant_id=session.tenant_id)
    batches = [lines[start : start + BATCH_LINES] for start in range(0, len(lines), BATCH_LINES)]
    prompts = [
        (refine_prompt(body=body, course=session.course, lines=batch, rows=rows, names=names,
                       room_names=room_names), len(batch))
        for batch in batches
    ]
    try:
        replies = async_to_sync(_ask_all)(session=session, chain=chain, prompts=prompts)
    except Exception as exc:  # the chain failed: nothing is merged, not even the batches that answered
        logger.info("session %s: LLM refinement unavailable (%s); rule-based result kept", session.pk, exc)
        return RefineReport(status=FAILED, reason=f"the model chain failed: {exc}", lines=report.lines)
    labels: list[Label] = []
    for number, (batch, (text, model)) in enumerate(zip(batches, replies, strict=True), start=1):
        report.batches += 1
        report.model = report.model or model
        parsed = parse_reply(text, seqs={line.seq for line in batch}, topics=topics)
        if parsed is None:
            report.unusable_batches += 1
            logger.info("session %s: LLM refinement batch %d was not JSON; ignored", session.pk, number)
            continue
        batch_labels, ignored = parsed
        labels.extend(batch_labels)
        report.ignored += ignored
    if report.unusable_batches == report.batches:
        report.status, report.reason = FAILED, "the model's replies were not the JSON asked for"
        logger.info("session %s: LLM refinement unusable; rule-based result kept", session.pk)
        return report
    if report.unusable_batches:
        report.notes.append(f"{report.unusable_batches} of {report.batches} replies were not JSON and were ignored")
    report.classified = len(labels)
    terms = [*rows.scope_terms]
    grew = _merge(labels, lines={line.seq: line for line in lines}, rows=rows, students=students, terms=terms,
                  report=report)
    if grew:
        median = metrics.median_turns(students.values())
        for student_id in grew:
            m = students[student_id]
            m.engagement_score = metrics.student_engagement(m, median=median)
        report.engagement_recomputed = True
    return report


def session_refine(
    *, session: Any, rows: metrics.SessionInput, result: metrics.SessionMetrics,
    names: dict[int, str], room_names: dict[int, str],
) -> RefineReport:
    """`progress_refine` on a computed session, then its confusion topics and room rows refreshed;
    the report is kept in `result.participation["refine"]`."""
    report = progress_refine(session=session, rows=rows, progress_by_student=result.students, names=names,
                             room_names=room_names)
    if report.status == APPLIED and (report.confusion_added or report.topics_added):
        result.confusion_topics = metrics.confusion_topics(result.students)
        result.rooms = metrics.room_rows(rows, result.students, metrics._by_room(rows.lines))
    result.participation["refine"] = {
        key: value for key, value in report.as_dict().items()
        if key in ("status", "reason", "model", "batches", "lines", "confusion_added", "topics_added", "notes")
    }
    return report
