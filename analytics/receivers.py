"""Signal receivers: how `analytics` learns about what other apps did without them importing it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from analytics.models import UsageEvent

ERROR_MAX_CHARS = 2000


def usage_event_record(
    sender: Any,
    *,
    tenant_id: int,
    kind: str,
    provider: str,
    model: str,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    units: Decimal | float | int = 0,
    cost: Decimal = Decimal(0),
    latency_ms: int = 0,
    outcome: str = UsageEvent.Outcome.OK,
    error: str = "",
    course_id: int | None = None,
    session_id: int | None = None,
    conversation_id: int | None = None,
    user_id: int | None = None,
    **kwargs: Any,
) -> UsageEvent:
    """Store a `courses.usage.provider_called` announcement as a `UsageEvent`."""
    return UsageEvent.objects.create(
        tenant_id=tenant_id,
        kind=kind,
        provider=provider[:50],
        model=model[:200],
        prompt_tokens=max(0, prompt_tokens),
        completion_tokens=max(0, completion_tokens),
        units=units,
        cost=cost,
        latency_ms=max(0, latency_ms),
        outcome=outcome,
        error=error[:ERROR_MAX_CHARS],
        course_id=course_id,
        session_id=session_id,
        conversation_id=conversation_id,
        user_id=user_id,
    )
