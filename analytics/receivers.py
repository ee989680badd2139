"""Signal receivers: how `analytics` learns about what other apps did without them importing it."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from analytics.models import UsageEvent

ERROR_MAX_CHARS = 2000
logger = logging.getLogger(__name__)


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


def session_analytics_queue(sender: Any, *, session_id: int, **kwargs: Any) -> None:
    """A session ended: queue its analytics. A broker that is down is logged; the computation
    can be run again at any time (it replaces its rows)."""
    from analytics.tasks import session_analytics_compute

    try:
        session_analytics_compute.delay(session_id)
    except Exception:
        logger.warning("could not queue analytics for session %s", session_id, exc_info=True)
