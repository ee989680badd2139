"""Usage records for the paid speech engines, through `courses.usage` (voice never imports analytics)."""

from __future__ import annotations

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
