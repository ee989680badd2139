"""The LLM provider interface: what every engine (OpenAI-compatible, offline, llama.cpp) speaks.

An engine opens a *stream* for one request. The stream yields text deltas as they arrive, can be
closed at any moment (which must stop the upstream generation: close the HTTP response, stop the
local loop), and reports `usage` once it is exhausted. Failures are `LLMError`s that say whether
trying again could help (`transient`), so the chain (sessions/tutor/chain.py) owns every retry,
backoff and fallback decision and engines stay simple.

    engine = engine_for(model)                      # sessions.providers
    stream = await engine.open(request)
    try:
        async for text in stream:
            ...
    finally:
        await stream.aclose()
    stream.usage  # Usage(prompt_tokens, completion_tokens), estimated when the engine gave none
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, runtime_checkable

# --- What the tutor knows when it answers ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryLine:
    """One earlier message of the conversation, oldest first in `TutorContext.history`."""

    role: str  # "student", "tutor", "professor", "system"
    name: str  # the speaker's name as shown ("Ada", "Professor Ada")
    text: str


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved passage of course material, citable as (document, page)."""

    document: str  # the document's title
    text: str
    page: int | None = None  # page or slide number, when the format has them
    heading: str = ""
    document_id: int | None = None
    chunk_id: int | None = None
    score: float = 0.0

    def citation(self, snippet_chars: int = 200) -> dict:
        """The `citations` item of `tutor.message`: {document, page, snippet, ...}."""
        snippet = " ".join(self.text.split())
        if len(snippet) > snippet_chars:
            snippet = snippet[: snippet_chars - 1].rsplit(" ", 1)[0] + "…"
        return {
            "document": self.document,
            "document_id": self.document_id,
            "page": self.page,
            "heading": self.heading,
            "snippet": snippet,
        }


@dataclass(frozen=True, slots=True)
class LectureLine:
    """A line of the professor's lecture (the rolling buffer), `at` as shown: "14:32"."""

    at: str
    text: str


@dataclass(slots=True)
class TutorContext:
    """Everything a reply is built from. Prompt templates render it; the offline tutor reads it
    directly (it has no language model to read a prompt with)."""

    tenant_id: int
    course_id: int
    course_code: str
    course_title: str
    question: str
    student_name: str = ""
    teaching_mode: str = "socratic"  # courses.models.TeachingMode
    persona_name: str = "Tutor"
    persona_style: str = ""
    scope_terms: list[str] = field(default_factory=list)
    room_topic: str = ""
    room_goal: str = ""
    hint: str = ""  # pushed by the professor into every tutor of a session
    # A breakout room: everyone in it (first names), and who has said little so far.
    participants: list[str] = field(default_factory=list)
    quiet_students: list[str] = field(default_factory=list)
    history: list[HistoryLine] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    lecture: list[LectureLine] = field(default_factory=list)
    conversation_id: int | None = None


# --- One request to one model -----------------------------------------------------------------


@dataclass(slots=True)
class LLMRequest:
    """What is sent to a model: chat messages in the OpenAI format, plus the structured context
    for engines that cannot read a prompt (the offline tutor)."""

    messages: list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": ...}]
    model: str
    temperature: float = 0.7
    max_tokens: int = 800
    context: TutorContext | None = None
    purpose: str = "reply"  # "reply" or "guardrail": logged and recorded with the usage


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False  # True when the engine reported none and we counted characters / 4


def estimate_tokens(text: str) -> int:
    """A provider-independent estimate: about four characters a token in English."""
    return max(1, (len(text) + 3) // 4) if text else 0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One entry of a model chain, resolved from an `LLMModel` row and the settings it names.

    `missing` says why the entry cannot be used at all (e.g. "OPENAI_API_KEY is not set"); the
    chain skips such entries without calling anything.
    """

    id: int | None
    provider: str  # LLMModel.Provider: "openai", "offline", "llama_cpp"
    model_name: str
    base_url: str = ""
    api_key: str = ""
    temperature: float = 0.7
    max_output_tokens: int = 800
    price_per_1k_prompt_tokens: Decimal = Decimal("0")
    price_per_1k_completion_tokens: Decimal = Decimal("0")
    missing: str = ""

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model_name}"

    @property
    def breaker_key(self) -> str:
        """The same upstream model shares one breaker whichever tenant's chain lists it."""
        return f"{self.provider}|{self.base_url}|{self.model_name}"

    def cost(self, usage: Usage) -> Decimal:
        """USD for `usage` at this entry's admin prices, to the micro-dollar."""
        amount = (
            Decimal(usage.prompt_tokens) * self.price_per_1k_prompt_tokens
            + Decimal(usage.completion_tokens) * self.price_per_1k_completion_tokens
        ) / 1000
        return amount.quantize(Decimal("0.000001"))

    @property
    def unit_price(self) -> Decimal:
        """For "cheapest model": the sum of both prices per 1k tokens."""
        return self.price_per_1k_prompt_tokens + self.price_per_1k_completion_tokens


# --- Failures -----------------------------------------------------------------------------------


class LLMError(Exception):
    """A failed call. `transient`: worth retrying (429, 5xx, timeout, connection); otherwise
    (bad key, unknown model, bad request) the chain moves on to the next model at once.

    `outcome` is the UsageEvent outcome to record: "error" or "timeout".
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        outcome: str = "error",
        status_code: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.outcome = outcome
        self.status_code = status_code
        self.retry_after = retry_after


# --- The engine protocol ----------------------------------------------------------------------


@runtime_checkable
class LLMStream(Protocol):
    """An open reply: iterate for text deltas; `usage` is set once iteration ends."""

    usage: Usage | None

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None:
        """Stop now: close the upstream response (or local generation). Safe to call twice."""
        ...


class LLMEngine(Protocol):
    """One kind of model backend. `offline` engines are labelled so in every reply."""

    provider: str
    offline: bool

    async def open(self, request: LLMRequest) -> LLMStream:
        """Start a reply; raise LLMError if it cannot even start (e.g. HTTP 429 before any
        token). Errors during iteration are LLMErrors too."""
        ...
