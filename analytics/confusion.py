"""Confusion in one line of a transcript, and the topic a line is about.

Line-level only: what a single student line says ("I don't get recursion"). Signals that need
the whole transcript (a question repeated on one topic, a long silence after a tutor question, the
guardrail's redirects) are found by the session computation (analytics/metrics.py), which uses
these functions for each line. The live radar (analytics.live) uses the same ones, so what the
professor sees during class and the report afterwards agree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

GENERAL_TOPIC = "general"

# Kinds of signal, as stored in StudentProgress.confusion_points[*]["signal"].
PHRASE = "phrase"
REPEATED_QUESTION = "repeated_question"
SILENCE_AFTER_QUESTION = "silence_after_question"
GUARDRAIL_REDIRECT = "guardrail_redirect"
LLM_CLASSIFIED = "llm"

# What each kind is called on the pages and the monitor's radar (the code stays in the data).
SIGNAL_LABELS = {
    PHRASE: "said so",
    REPEATED_QUESTION: "asked again",
    SILENCE_AFTER_QUESTION: "silent after a question",
    GUARDRAIL_REDIRECT: "off-topic redirect",
    LLM_CLASSIFIED: "model: stuck",
}


def signal_label(signal: object) -> str:
    """The human label of a signal code; an unknown code (older data) reads as its words."""
    code = str(signal or "")
    return SIGNAL_LABELS.get(code, code.replace("_", " "))

_CONFUSION = re.compile(
    r"""\b(
        (i|we)\s+(still\s+)?(do\s*n[o']?t|don't|dont|cannot|can't|cant)\s+(really\s+)?
            (get|understand|follow|see\s+(why|how))
      | (i'?m|i\s+am|we'?re|we\s+are)\s+(so\s+|still\s+|a\s+bit\s+|kind\s+of\s+|really\s+)?(confused|lost|stuck)
      | (this|that|it)\s+(does\s*n[o']?t|doesn't|doesnt)\s+make\s+(any\s+)?sense
      | makes\s+no\s+sense
      | what\s+do\s+you\s+mean
      | (can|could)\s+you\s+(please\s+)?(explain|go\s+over)\s+(that|it|this)\s+again
      | no\s+idea\s+(what|how|why)
      | not\s+sure\s+(i\s+)?(understand|get|follow)
      | (i'?m|i\s+am)\s+not\s+following
      | wait,?\s+what
      | (i'?m|i\s+am)\s+confused
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)
# Look like confusion, mean something else.
_NOT_CONFUSION = re.compile(
    r"""\b(
        (do\s*n[o']?t|don't)\s+get\s+me\s+wrong
      | (do\s*n[o']?t|don't)\s+get\s+to\b
      | (do\s*n[o']?t|don't)\s+get\s+(it\s+)?wrong
      | can't\s+get\s+enough
    )""",
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class LineSignal:
    """A confusion signal found in one line: its kind and the words that show it."""

    signal: str
    evidence: str


def line_signals(text: str) -> list[LineSignal]:
    """Confusion phrases in a student's line ("I don't get it", "I'm lost"); [] if none."""
    if not text:
        return []
    cleaned = _NOT_CONFUSION.sub(" ", text.replace("\u2019", "'"))
    return [LineSignal(PHRASE, match.group(0)) for match in _CONFUSION.finditer(cleaned)]


@functools.lru_cache(maxsize=1024)  # a session's computation and the radar test the same terms on every line
def _term_pattern(term: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in term.lower().split()]
    # "loop" also matches "loops"; multi-word terms match with any spacing.
    return re.compile(r"\b" + r"\s+".join(words) + r"(s|es)?\b", re.IGNORECASE)


def topic_key(topic: str) -> str:
    """A topic as the radar and the reports key it: lower-cased, single spaces ("Nested  loops"
    typed into a room's topic and "nested loops" from a clarify command are one topic)."""
    return " ".join(topic.split()).lower()


def line_topics(text: str, *, terms: Sequence[str]) -> list[str]:
    """The course scope terms a line mentions, in the order of `terms`, as topic keys."""
    if not text:
        return []
    return [topic_key(term) for term in terms if term.strip() and _term_pattern(term).search(text)]


def line_topic(
    text: str, *, terms: Sequence[str], room_topic: str = "", previous: str = "", named: Sequence[str] | None = None
) -> str:
    """The one topic a line is about: the first scope term it names, else the topic of the
    conversation so far (`previous`), else the room's topic, else "general". `named`: the line's
    `line_topics`, when the caller has them already."""
    named = line_topics(text, terms=terms) if named is None else named
    if named:
        return named[0]
    return topic_key(previous or room_topic or GENERAL_TOPIC) or GENERAL_TOPIC
