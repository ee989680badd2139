"""The model chain: the admin's LLM entries tried in order, with retries, backoff, breakers, budget.

    async with ChainRun(chain=chain, request=request, scope=scope) as run:
        async for event in run:          # ChainEvent("delta", text) or ChainEvent("restart")
            ...
    run.result                            # ChainResult: which model answered, usage, full text

A model that fails after it streamed text is followed by a "restart" event before the next
attempt's first delta, so clients clear the partial reply. Every attempt is recorded as a usage
(`courses.usage.record_provider_call`); all failing raises `TutorUnavailable` with a reason per model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import TracebackType

from channels.db import database_sync_to_async
from django.conf import settings

from courses.models import Tenant
from courses.usage import next_month_start, record_provider_call, tenant_month_spend
from sessions.models import LLMModel
from sessions.providers import engine_for
from sessions.providers.base import (
    LLMEngine,
    LLMError,
    LLMRequest,
    LLMStream,
    ModelSpec,
    Usage,
    estimate_tokens,
)
from sessions.tutor.breaker import breaker_allow, breaker_record_failure, breaker_record_success

logger = logging.getLogger("sessions.tutor.chain")


# --- The chain of a tenant (sync: database) --------------------------------------------------------


def _setting(name: str) -> str:
    if not name:
        return ""
    return str(getattr(settings, name, "") or os.environ.get(name, ""))


def _spec(row: LLMModel) -> ModelSpec:
    api_key = _setting(row.api_key_setting)
    missing = ""
    if row.provider == LLMModel.Provider.OPENAI and not api_key:
        missing = (
            f"{row.api_key_setting} is not set" if row.api_key_setting else "no API key setting is named"
        )
    return ModelSpec(
        id=row.pk,
        provider=row.provider,
        model_name=row.model_name,
        base_url=_setting(row.base_url_setting),
        api_key=api_key,
        temperature=float(row.temperature),
        max_output_tokens=row.max_output_tokens,
        price_per_1k_prompt_tokens=row.price_per_1k_prompt_tokens,
        price_per_1k_completion_tokens=row.price_per_1k_completion_tokens,
        missing=missing,
    )


def chain_for_tenant(*, tenant_id: int) -> list[ModelSpec]:
    """The tenant's enabled chain entries, or the global ones if it has none, in position order."""
    rows = list(LLMModel.objects.filter(tenant_id=tenant_id, enabled=True).order_by("position"))
    if not rows:
        rows = list(LLMModel.objects.filter(tenant__isnull=True, enabled=True).order_by("position"))
    return [_spec(row) for row in rows]


def chain_apply_budget(
    *, chain: list[ModelSpec], tenant: Tenant, spent: Decimal | None = None
) -> tuple[list[ModelSpec], str]:
    """Over its monthly budget, a tenant gets only its cheapest usable model, and a notice saying
    so. `spent`: this month's spend, if the caller has read it already."""
    if tenant.monthly_budget is None:
        return chain, ""
    if spent is None:
        spent = tenant_month_spend(tenant.pk)
    if spent < tenant.monthly_budget:
        return chain, ""
    usable = [spec for spec in chain if not spec.missing]
    if not usable:
        return chain, ""
    cheapest = min(usable, key=lambda spec: spec.unit_price)  # the first of equals, in chain order
    until = next_month_start()
    notice = (
        f"Monthly AI budget reached (${spent:.2f} of ${tenant.monthly_budget:.2f}): "
        f"replies use {cheapest.model_name} until {until.day} {until:%B}."
    )
    return [cheapest], notice


# --- One run of the chain ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageScope:
    """Who a run's usage is charged to."""

    tenant_id: int
    course_id: int | None = None
    session_id: int | None = None
    conversation_id: int | None = None
    user_id: int | None = None


@dataclass(frozen=True, slots=True)
class ChainEvent:
    kind: str  # "delta" or "restart"
    text: str = ""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call to one model (or one skip by its breaker), as recorded."""

    model: str
    provider: str
    number: int  # 1 for the first call to this model, 2 for its first retry...
    outcome: str  # UsageEvent outcome: ok, error, timeout, cancelled, rejected
    latency_ms: int = 0
    error: str = ""


@dataclass(slots=True)
class ChainResult:
    spec: ModelSpec
    offline: bool
    usage: Usage
    text: str
    attempts: list[Attempt] = field(default_factory=list)


class TutorUnavailable(Exception):
    """No model of the chain could answer; `reasons` has one line per model, for people."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("No model could answer. " + "; ".join(reasons or ["the model chain is empty"]))


class ChainRun:
    """Try `chain` in order for `request`; iterate for events, then read `result`.

    Stopping (the consuming task cancelled, or `aclose()`, which `async with` calls) closes the
    open engine stream and records a "cancelled" usage; no other model is tried after a stop.
    """

    def __init__(
        self,
        *,
        chain: list[ModelSpec],
        request: LLMRequest,
        scope: UsageScope,
        engine_factory: Callable[[ModelSpec], LLMEngine] = engine_for,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ):
        self.chain = chain
        self.request = request
        self.scope = scope
        self.result: ChainResult | None = None
        self.attempts: list[Attempt] = []
        self._engine_factory = engine_factory
        self._sleep = sleep
        self._rng = rng
        self._events: AsyncIterator[ChainEvent] | None = None
        self._stream: LLMStream | None = None
        self._in_next = False
        self._closed = False
        self._prompt_tokens = sum(estimate_tokens(message.get("content", "")) for message in request.messages)

    # --- iteration and closing

    def __aiter__(self) -> ChainRun:
        return self

    async def __anext__(self) -> ChainEvent:
        if self._closed:
            raise StopAsyncIteration
        if self._events is None:
            self._events = self._run()
        self._in_next = True
        try:
            return await self._events.__anext__()
        finally:
            self._in_next = False

    async def aclose(self) -> None:
        """Stop now: close the open stream (dropping the upstream connection); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._in_next:
            # Another task is inside the run: closing its stream ends the run there, as cancelled.
            if self._stream is not None:
                await self._stream.aclose()
        elif self._events is not None:
            await self._events.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> ChainRun:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- the run

    def _request_for(self, spec: ModelSpec) -> LLMRequest:
        if self.request.purpose != "reply":
            # A short fixed question (the guardrail) keeps its own temperature and token limit.
            return replace(self.request, model=spec.model_name)
        return replace(
            self.request,
            model=spec.model_name,
            temperature=spec.temperature,
            max_tokens=spec.max_output_tokens,
        )

    def _backoff(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds before retry number `retry` (0-based), or None if the provider asks for longer."""
        ceiling = float(settings.LLM_BACKOFF_MAX_SECONDS)
        if retry_after is not None:
            return retry_after if retry_after <= ceiling else None
        return self._rng() * min(ceiling, float(settings.LLM_BACKOFF_BASE_SECONDS) * 2**retry)

    async def _run(self) -> AsyncIterator[ChainEvent]:
        reasons: list[str] = []
        shown = False  # deltas reached the consumer since the last restart
        retries = max(0, int(settings.LLM_RETRIES_PER_MODEL))
        total = float(settings.LLM_TOTAL_TIMEOUT_SECONDS)
        loop = asyncio.get_running_loop()
        for spec in self.chain:
            if spec.missing:
                reasons.append(f"{spec.model_name} ({spec.provider}): skipped, {spec.missing}")
                logger.info("llm %s skipped: %s", spec.label, spec.missing)
                continue
            failure = LLMError("not tried", transient=False)
            calls = 0
            for number in range(1, retries + 2):
                if self._closed:
                    return
                # The cache call is sub-millisecond (LocMem, Redis): not worth a thread hop.
                if not breaker_allow(spec.breaker_key):
                    await self._record(spec, number, outcome="rejected", error="circuit breaker open")
                    failure = LLMError(
                        "skipped, its circuit breaker is open after repeated failures", transient=False
                    )
                    break
                calls += 1
                started = loop.time()
                deadline = started + total
                parts: list[str] = []
                restart_due = shown
                stream: LLMStream | None = None
                try:
                    engine = self._engine_factory(spec)
                    async with asyncio.timeout_at(deadline):
                        stream = await engine.open(self._request_for(spec))
                    self._stream = stream
                    deltas = aiter(stream)
                    while not self._closed:
                        # The deadline covers each wait on the engine, never the consumer's code
                        # between yields (a timeout there would cancel the consumer instead).
                        async with asyncio.timeout_at(deadline):
                            try:
                                text = await anext(deltas)
                            except StopAsyncIteration:
                                break
                        if not text:
                            continue
                        if restart_due:
                            restart_due = False
                            yield ChainEvent("restart")
                        parts.append(text)
                        shown = True
                        yield ChainEvent("delta", text)
                except (asyncio.CancelledError, GeneratorExit):
                    await asyncio.shield(self._cancelled(spec, number, stream, parts, started))
                    raise
                except LLMError as exc:
                    failure = exc
                except TimeoutError:
                    failure = LLMError(
                        f"no complete reply within {total:g} s", transient=True, outcome="timeout"
                    )
                except Exception as exc:
                    if not self._closed:
                        logger.exception("llm %s: the engine failed unexpectedly", spec.label)
                    failure = LLMError(f"internal error in the engine: {type(exc).__name__}", transient=False)
                else:
                    if not self._closed:
                        await self._succeeded(spec, engine, number, stream, parts, started)
                        return
                finally:
                    self._stream = None
                if self._closed:
                    # aclose() from another task closed the stream under us: whatever ended the
                    # iteration, the reply was stopped, not failed.
                    await asyncio.shield(self._cancelled(spec, number, stream, parts, started))
                    return
                if stream is not None:
                    await stream.aclose()
                await self._failed(spec, number, failure, stream, parts, started)
                delay = self._backoff(number - 1, failure.retry_after) if failure.transient else None
                if number > retries or delay is None:
                    break
                await self._sleep(delay)
            reasons.append(
                f"{spec.model_name} ({spec.provider}): {failure.message}"
                + (f" (after {calls} attempts)" if calls > 1 else "")
            )
        logger.warning("llm chain: no model answered: %s", "; ".join(reasons) or "the chain is empty")
        raise TutorUnavailable(reasons)

    # --- outcomes

    def _usage(self, stream: LLMStream | None, parts: list[str]) -> Usage:
        if stream is not None and stream.usage is not None:
            return stream.usage
        return Usage(self._prompt_tokens, estimate_tokens("".join(parts)), estimated=True)

    @staticmethod
    def _latency_ms(started: float) -> int:
        return round((asyncio.get_running_loop().time() - started) * 1000)

    async def _succeeded(
        self,
        spec: ModelSpec,
        engine: LLMEngine,
        number: int,
        stream: LLMStream | None,
        parts: list[str],
        started: float,
    ) -> None:
        if stream is not None:
            await stream.aclose()
        usage = self._usage(stream, parts)
        breaker_record_success(spec.breaker_key)
        attempt = await self._record(
            spec, number, outcome="ok", usage=usage, latency_ms=self._latency_ms(started)
        )
        self.result = ChainResult(
            spec=spec, offline=engine.offline, usage=usage, text="".join(parts), attempts=self.attempts
        )
        logger.info(
            "llm chain answered by %s (attempt %d, %d attempts in all, %d ms)",
            spec.label,
            number,
            len(self.attempts),
            attempt.latency_ms,
        )

    async def _failed(
        self,
        spec: ModelSpec,
        number: int,
        failure: LLMError,
        stream: LLMStream | None,
        parts: list[str],
        started: float,
    ) -> None:
        if failure.transient:
            breaker_record_failure(spec.breaker_key)
        await self._record(
            spec,
            number,
            outcome=failure.outcome,
            usage=self._usage(stream, parts),
            latency_ms=self._latency_ms(started),
            error=failure.message,
        )

    async def _cancelled(
        self, spec: ModelSpec, number: int, stream: LLMStream | None, parts: list[str], started: float
    ) -> None:
        if stream is not None:
            await stream.aclose()
        usage = Usage(self._prompt_tokens, estimate_tokens("".join(parts)), estimated=True)
        await self._record(
            spec,
            number,
            outcome="cancelled",
            usage=usage,
            latency_ms=self._latency_ms(started),
            error="stopped before the reply was complete",
        )

    async def _record(
        self,
        spec: ModelSpec,
        number: int,
        *,
        outcome: str,
        usage: Usage | None = None,
        latency_ms: int = 0,
        error: str = "",
    ) -> Attempt:
        usage = usage or Usage()
        attempt = Attempt(
            model=spec.model_name,
            provider=spec.provider,
            number=number,
            outcome=outcome,
            latency_ms=latency_ms,
            error=error,
        )
        self.attempts.append(attempt)
        log = logger.info if outcome == "ok" else logger.warning
        log(
            "llm attempt model=%s n=%d outcome=%s latency_ms=%d purpose=%s%s",
            spec.label,
            number,
            outcome,
            latency_ms,
            self.request.purpose,
            f" error={error}" if error else "",
        )
        await database_sync_to_async(record_provider_call)(
            tenant_id=self.scope.tenant_id,
            kind="llm",
            provider=spec.provider,
            model=spec.model_name,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=spec.cost(usage),
            latency_ms=latency_ms,
            outcome=outcome,
            error=error,
            course_id=self.scope.course_id,
            session_id=self.scope.session_id,
            conversation_id=self.scope.conversation_id,
            user_id=self.scope.user_id,
        )
        return attempt
