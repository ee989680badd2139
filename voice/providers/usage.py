"""Usage records for the paid speech engines, through `courses.usage` (voice never imports analytics)."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from channels.db import database_sync_to_async

from courses.usage import record_provider_call

logger = logging.getLogger(__name__)

CONTEXT_KEYS = ("course_id", "session_id", "conversation_id", "user_id")


def usage_cost(rate: float | Decimal | str, quantity: Decimal) -> Decimal:
    """`rate` per unit times `quantity`, to the micro-dollar."""
    return (Decimal(str(rate)) * quantity).quantize(Decimal("0.000001"))


async def speech_usage_record(
    context: dict,
    *,
    kind: str,
    provider: str,
    model: str,
    units: Decimal,
    cost: Decimal,
    latency_ms: int = 0,
    outcome: str = "ok",
    error: str = "",
) -> None:
    """Announce one speech call when `context` (StreamOptions.usage) names a tenant; never raises,
    so a usage write that fails cannot lose a transcript or a sentence."""
    tenant_id = context.get("tenant_id")
    if not tenant_id:
        return
    try:
        await database_sync_to_async(record_provider_call)(
            tenant_id=tenant_id,
            kind=kind,
            provider=provider,
            model=model,
            units=units,
            cost=cost,
            latency_ms=max(0, int(latency_ms)),
            outcome=outcome,
            error=error,
            **{key: context.get(key) for key in CONTEXT_KEYS},
        )
    except Exception:
        logger.warning("could not record %s usage for %s", kind, provider, exc_info=True)


class UsageRecorder:
    """Usage records written in the background, so a transcript is not held up by a database
    write; `drain()` (a stream's `aclose`) waits for the ones still running."""

    def __init__(self, context: dict):
        self.context = context
        self._tasks: set[asyncio.Task] = set()

    def record(self, **fields) -> None:
        if not self.context.get("tenant_id"):
            return
        try:
            task = asyncio.create_task(speech_usage_record(self.context, **fields), name="speech-usage")
        except RuntimeError:  # no running loop (a generator finalized at shutdown): logged, dropped
            logger.warning(
                "no event loop to record %s usage for %s", fields.get("kind"), fields.get("provider")
            )
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
