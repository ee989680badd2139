"""What a session's transcript says about each student: pure functions over plain rows (no ORM).

`session_metrics(SessionInput)` is the whole computation; analytics/services.py loads the rows,
calls it, and stores the result. Every number keeps the `seq`s of the lines behind it.

Definitions (a "line" is a final TranscriptSegment; "room lines" are a room's lines in seq order):

- turns: the student's lines, text and speech alike (`speech_turns`, `text_turns`).
- talk_time_ms: the summed duration (end_ms - start_ms) of the student's speech lines.
- words: \\w+ tokens of the student's lines.
- questions: lines ending in "?" or starting with a question word (`is_question`).
- explanations: lines of >= 12 words containing "because", "so", "that means" or "for example".
- self_corrections: lines containing "I mean", "actually", "wait" or "no,".
- a tutor line *answers* the last student line before it in the same room.
- hints: tutor lines that answer the student's line and either contain a hint marker ("hint",
  "try", "think about", "what if", "consider", "remember", "look at", "notice", "for instance")
  or answer a line of the student that carries a confusion phrase (the student was stuck).
- topics covered: the course's scope terms (and the room's topic) that the student's lines name
  (`confusion.line_topics`), each with the seqs that name it.
- confusion points, each {topic, signal, seq, evidence}; the topic of a line is
  `confusion.line_topic` (the term it names, else the room's last named topic, else the room's
  topic, else "general"):
  * phrase: `confusion.line_signals` of a student line, except puzzlement about other people's
    opinions ("I don't get why people dislike Python" is not confusion about the material);
  * repeated_question: the student asks a question on the same (non-general) topic as one of
    their questions within the last ANALYTICS_REPEAT_WITHIN_LINES room lines (as the live radar
    does); seq: the later question;
  * silence_after_question: a tutor line that is a question addressed to the student (it answers
    their line, or names them, or answers no student and so speaks to the whole room), after which
    the student says nothing in the room for ANALYTICS_SILENCE_SECONDS while another student
    does; seq: the tutor's question;
  * guardrail_redirect: the tutor line answering the student's line was an off-topic redirect
    (Message.guardrail == "off_topic"); seq: the student's line.

Engagement score (0-100), rewarding evidence of learning with diminishing returns:

    score = round(100 * sum_c w_c * (1 - exp(-x_c / k_c)))

    component c         x_c                      w_c    k_c
    explanations        explanations             0.35   2
    questions           questions asked          0.20   2
    topics              distinct topics covered  0.20   2
    self_corrections    self-corrections         0.10   1
    turns               turns (text = speech)    0.15   the session's median turns of students
                                                        who spoke (at least 1)

Talk time is not a component (text-only students are not penalised); turns weigh little and are
normalised by the session's median, so a quiet student with two substantive explanations
(0.35 * (1 - e^-1) = 22 points from them alone) outscores a chatty one with ten one-word turns
(at most 15 points). A student with no turn scores 0.
"""

from __future__ import annotations

import bisect
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from analytics import confusion

STUDENT = "student"
TUTOR = "tutor"
SPEECH = "speech"
OFF_TOPIC = "off_topic"

# (component, weight, fixed k or None for the session's median turns)
WEIGHTS: tuple[tuple[str, float, float | None], ...] = (
    ("explanations", 0.35, 2.0),
    ("questions", 0.20, 2.0),
    ("topics", 0.20, 2.0),
    ("self_corrections", 0.10, 1.0),
    ("turns", 0.15, None),
)
BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0), ("1-2", 1, 2), ("3-5", 3, 5), ("6-10", 6, 10), ("11+", 11, None),
)
DEFAULT_SILENCE_MS = 60_000
DEFAULT_REPEAT_WINDOW = 8

_QUESTION = re.compile(
    r"\?\s*$|^(what|why|how|when|where|which|who|is|are|can|could|should|does|do|did|would)\b", re.IGNORECASE
)
_WORD = re.compile(r"\w+(?:'\w+)?")
_EXPLANATION = re.compile(r"\b(because|so|that\s+means|for\s+example)\b", re.IGNORECASE)
_SELF_CORRECTION = re.compile(r"\b(i\s+mean|actually|wait)\b|\bno,", re.IGNORECASE)
_HINT = re.compile(
    r"\b(hint|try|think\s+about|what\s+if|consider|remember|look\s+at|notice|for\s+instance)\b", re.IGNORECASE
)
# Puzzlement about what other people think, not about the material.
_OPINION_PUZZLEMENT = re.compile(
    r"\b(do\s*n[o']?t|don't|dont|can't|cannot)\s+(get|understand|see)\s+why\s+"
    r"(people|everyone|everybody|some\s+people|others|anyone|so\s+many)\b",
    re.IGNORECASE,
)
EXPLANATION_MIN_WORDS = 12


# --- line-level predicates -------------------------------------------------------------------------


def words(text: str) -> int:
    return len(_WORD.findall(text))


def is_question(text: str) -> bool:
    return any(_QUESTION.search(line.strip()) for line in text.splitlines() if line.strip())


def is_explanation(text: str) -> bool:
    return words(text) >= EXPLANATION_MIN_WORDS and bool(_EXPLANATION.search(text))


def is_self_correction(text: str) -> bool:
    return bool(_SELF_CORRECTION.search(text.replace("\u2019", "'")))


def has_hint_marker(text: str) -> bool:
    return bool(_HINT.search(text))


def student_line_signals(text: str) -> list[confusion.LineSignal]:
    """`confusion.line_signals`, minus puzzlement about other people's opinions."""
    cleaned = _OPINION_PUZZLEMENT.sub(" ", text.replace("\u2019", "'"))
    return confusion.line_signals(cleaned)


def engagement_score(
    *, explanations: int, questions: int, topics: int, self_corrections: int, turns: int, median_turns: float
) -> int:
    """The documented formula (module docstring); 0 for a student who never spoke or wrote."""
    if turns <= 0:
        return 0
    values = {
        "explanations": explanations, "questions": questions, "topics": topics,
        "self_corrections": self_corrections, "turns": turns,
    }
    total = 0.0
    for name, weight, k in WEIGHTS:
        scale = k if k is not None else max(1.0, float(median_turns))
        total += weight * (1.0 - math.exp(-values[name] / scale))
    return max(0, min(100, round(100 * total)))


# --- rows in, metrics out ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    seq: int
    room_id: int | None
    speaker: str  # student, tutor, professor, system
    text: str
    student_id: int | None = None  # set for student lines of an assigned student
    source: str = "text"
    start_ms: int = 0
    end_ms: int = 0
    guardrail: str = ""  # tutor lines: the Message's verdict


@dataclass(frozen=True, slots=True)
class StudentInfo:
    student_id: int
    room_id: int | None
    name: str = ""  # first name, to tell when the tutor addresses them


@dataclass(slots=True)
class SessionInput:
    lines: list[Line]
    students: list[StudentInfo]
    scope_terms: list[str] = field(default_factory=list)
    room_topics: dict[int, str] = field(default_factory=dict)
    silence_ms: int = DEFAULT_SILENCE_MS
    repeat_window: int = DEFAULT_REPEAT_WINDOW


@dataclass(slots=True)
class StudentMetrics:
    student_id: int
    room_id: int | None
    talk_time_ms: int = 0
    speech_turns: int = 0
    text_turns: int = 0
    words: int = 0
    questions_asked: int = 0
    hints_needed: int = 0
    topics_covered: list[dict[str, Any]] = field(default_factory=list)
    confusion_points: list[dict[str, Any]] = field(default_factory=list)
    engagement_score: int = 0
    evidence: dict[str, list[int]] = field(default_factory=dict)

    @property
    def turns(self) -> int:
        return self.speech_turns + self.text_turns


@dataclass(slots=True)
class SessionMetrics:
    students: dict[int, StudentMetrics]
    participation: dict[str, Any]
    rooms: list[dict[str, Any]]
    confusion_topics: list[dict[str, Any]]
    lines: int = 0


def _evidence() -> dict[str, list[int]]:
    return {"turns": [], "questions": [], "explanations": [], "self_corrections": [], "hints": []}


def _by_room(lines: Iterable[Line]) -> dict[int | None, list[Line]]:
    rooms: dict[int | None, list[Line]] = defaultdict(list)
    for line in sorted(lines, key=lambda line: line.seq):
        rooms[line.room_id].append(line)
    return rooms


def _first_name_pattern(name: str) -> re.Pattern[str] | None:
    name = name.strip()
    return re.compile(r"\b" + re.escape(name) + r"\b", re.IGNORECASE) if name else None


def _room_pass(
    room_id: int | None,
    lines: list[Line],
    inp: SessionInput,
    out: dict[int, StudentMetrics],
    topic_seqs: dict[int, dict[str, list[int]]],
    room_students: list[StudentInfo],
) -> None:
    room_topic = inp.room_topics.get(room_id, "") if room_id is not None else ""
    terms: list[str] = []
    for term in [*inp.scope_terms, room_topic]:
        if term.strip() and term.strip().lower() not in {t.lower() for t in terms}:
            terms.append(term.strip())
    names = {s.student_id: _first_name_pattern(s.name) for s in room_students}
    previous_topic = ""
    last_student_line: Line | None = None
    last_student_topic = ""
    last_question: dict[int, list[tuple[int, str]]] = {}  # student -> [(index in room, topic)]
    pending_questions: list[tuple[Line, set[int]]] = []  # tutor questions awaiting an answer
    spoke_at: dict[int, list[int]] = defaultdict(list)  # student -> start_ms of their lines

    for index, line in enumerate(lines):
        named = confusion.line_topics(line.text, terms=terms)
        topic = confusion.line_topic(line.text, terms=terms, room_topic=room_topic, previous=previous_topic, named=named)
        if line.speaker == STUDENT and line.student_id in out:
            m = out[line.student_id]
            ev = m.evidence
            ev["turns"].append(line.seq)
            if line.source == SPEECH:
                m.speech_turns += 1
                m.talk_time_ms += max(0, line.end_ms - line.start_ms)
            else:
                m.text_turns += 1
            m.words += words(line.text)
            spoke_at[line.student_id].append(line.start_ms)
            for term in named:
                topic_seqs[line.student_id].setdefault(term, []).append(line.seq)
            if is_explanation(line.text):
                ev["explanations"].append(line.seq)
            if is_self_correction(line.text):
                ev["self_corrections"].append(line.seq)
            for signal in student_line_signals(line.text):
                m.confusion_points.append(
                    {"topic": topic, "signal": signal.signal, "seq": line.seq, "evidence": signal.evidence}
                )
            if is_question(line.text):
                ev["questions"].append(line.seq)
                m.questions_asked += 1
                asked = last_question.setdefault(line.student_id, [])
                earlier = next(
                    (i for i, t in reversed(asked) if t == topic and index - i <= inp.repeat_window), None
                )
                if earlier is not None and topic != confusion.GENERAL_TOPIC:
                    m.confusion_points.append({
                        "topic": topic, "signal": confusion.REPEATED_QUESTION, "seq": line.seq,
                        "evidence": f"asked again about {topic} (earlier at #{lines[earlier].seq})",
                    })
                asked.append((index, topic))
                if len(asked) > 2 * inp.repeat_window:
                    del asked[: len(asked) - inp.repeat_window]
        if line.speaker == STUDENT:  # an unassigned student's line is answered too, by nobody we count
            last_student_line = line
            last_student_topic = topic
        elif line.speaker == TUTOR:
            answered = last_student_line
            if answered is not None and answered.student_id in out:
                m = out[answered.student_id]
                if line.guardrail == OFF_TOPIC:
                    m.confusion_points.append({
                        "topic": last_student_topic, "signal": confusion.GUARDRAIL_REDIRECT, "seq": answered.seq,
                        "evidence": f"redirected off topic by the tutor (#{line.seq})",
                    })
                elif has_hint_marker(line.text) or student_line_signals(answered.text):
                    m.evidence["hints"].append(line.seq)
                    m.hints_needed += 1
            if is_question(line.text):
                addressed = {s for s, pattern in names.items() if pattern and pattern.search(line.text)}
                if answered is not None and answered.student_id in names:
                    addressed.add(answered.student_id)
                if not addressed:
                    addressed = set(names)
                pending_questions.append((line, addressed))
        if named:
            previous_topic = named[0]

    end_ms = max((line.end_ms for line in lines), default=0)
    for times in spoke_at.values():
        times.sort()

    def spoke_between(times: list[int], start: int, stop: int) -> bool:
        i = bisect.bisect_right(times, start)  # the first line after `start`
        return i < len(times) and times[i] <= stop

    for question, addressed in pending_questions:
        start, stop = question.start_ms, question.start_ms + inp.silence_ms
        if stop > end_ms:
            continue  # the silence has not lasted long enough (yet)
        spoke = {s for s, times in spoke_at.items() if spoke_between(times, start, stop)}
        for student_id in sorted(addressed):
            if student_id not in spoke and spoke - {student_id}:
                q_named = confusion.line_topics(question.text, terms=terms)
                q_topic = q_named[0] if q_named else (room_topic or confusion.GENERAL_TOPIC).lower()
                out[student_id].confusion_points.append({
                    "topic": q_topic, "signal": confusion.SILENCE_AFTER_QUESTION, "seq": question.seq,
                    "evidence": f"silent for {inp.silence_ms // 1000} s after the tutor's question while others spoke",
                })


def gini(values: list[int]) -> float:
    """0: everyone took the same part; towards 1: one student took it all."""
    n, total = len(values), sum(values)
    if n == 0 or total == 0:
        return 0.0
    ordered = sorted(values)
    weighted = sum((i + 1) * v for i, v in enumerate(ordered))
    return round((2 * weighted) / (n * total) - (n + 1) / n, 4)


def participation(students: list[StudentMetrics]) -> dict[str, Any]:
    turns = {m.student_id: m.turns for m in students}
    values = sorted(turns.values(), reverse=True)
    total = sum(values)
    top = values[: math.ceil(len(values) / 4)] if values else []
    buckets = {
        label: sum(1 for v in values if v >= low and (high is None or v <= high)) for label, low, high in BUCKETS
    }
    return {
        "students": len(values),
        "silent": sum(1 for v in values if v == 0),
        "total_turns": total,
        "turns": {str(student_id): n for student_id, n in sorted(turns.items())},
        "buckets": buckets,
        "gini": gini(values),
        "top_quarter_share": round(sum(top) / total, 4) if total else 0.0,
    }


def median_turns(students: Iterable[StudentMetrics]) -> float:
    """The session's median turns of the students who spoke (1 if none did): engagement's k for turns."""
    speaking = [m.turns for m in students if m.turns > 0]
    return statistics.median(speaking) if speaking else 1.0


def student_engagement(m: StudentMetrics, *, median: float) -> int:
    """`engagement_score` of one student's computed metrics."""
    return engagement_score(
        explanations=len(m.evidence["explanations"]), questions=m.questions_asked,
        topics=len(m.topics_covered), self_corrections=len(m.evidence["self_corrections"]),
        turns=m.turns, median_turns=median,
    )


def room_rows(
    inp: SessionInput, out: dict[int, StudentMetrics], rooms: dict[int | None, list[Line]]
) -> list[dict[str, Any]]:
    """One row per room (assigned students' rooms and rooms with lines), in room id order."""
    rows = []
    room_ids = sorted({s.room_id for s in inp.students if s.room_id is not None} | {r for r in rooms if r is not None})
    for room_id in room_ids:
        members = [m for m in out.values() if m.room_id == room_id]
        rows.append({
            "room_id": room_id,
            "topic": inp.room_topics.get(room_id, ""),
            "students": len(members),
            "turns": sum(m.turns for m in members),
            "words": sum(m.words for m in members),
            "talk_time_ms": sum(m.talk_time_ms for m in members),
            "confusion_count": sum(len(m.confusion_points) for m in members),
            "engagement_avg": round(statistics.fmean([m.engagement_score for m in members]), 1) if members else 0.0,
            "lines": len(rooms.get(room_id, [])),
        })
    return rows


def confusion_topics(out: dict[int, StudentMetrics]) -> list[dict[str, Any]]:
    """Confusion points of every student grouped by topic, most frequent first."""
    topics: dict[str, dict[str, Any]] = {}
    for m in out.values():
        for point in m.confusion_points:
            row = topics.setdefault(point["topic"], {"topic": point["topic"], "count": 0, "rooms": set(), "seqs": set()})
            row["count"] += 1
            if m.room_id is not None:
                row["rooms"].add(m.room_id)
            row["seqs"].add(point["seq"])
    return [
        {"topic": row["topic"], "count": row["count"], "rooms": sorted(row["rooms"]), "seqs": sorted(row["seqs"])}
        for row in sorted(topics.values(), key=lambda row: (-row["count"], row["topic"]))
    ]


def session_metrics(inp: SessionInput) -> SessionMetrics:
    out = {
        s.student_id: StudentMetrics(student_id=s.student_id, room_id=s.room_id, evidence=_evidence())
        for s in inp.students
    }
    topic_seqs: dict[int, dict[str, list[int]]] = defaultdict(dict)
    by_room_students: dict[int | None, list[StudentInfo]] = defaultdict(list)
    for s in inp.students:
        by_room_students[s.room_id].append(s)
    rooms = _by_room(inp.lines)
    for room_id, lines in rooms.items():
        _room_pass(room_id, lines, inp, out, topic_seqs, by_room_students.get(room_id, []))

    median = median_turns(out.values())
    for m in out.values():
        m.topics_covered = [{"topic": t, "segments": seqs} for t, seqs in topic_seqs[m.student_id].items()]
        m.confusion_points.sort(key=lambda point: (point["seq"], point["signal"]))
        m.engagement_score = student_engagement(m, median=median)

    return SessionMetrics(
        students=out, participation=participation(list(out.values())), rooms=room_rows(inp, out, rooms),
        confusion_topics=confusion_topics(out), lines=len(inp.lines),
    )
