"""Provider usage: every paid call is announced with `provider_called`; `analytics` stores it.

A signal, because `courses`, `sessions` and `voice` never import `analytics` (STYLE.md,
"Direction of dependencies"); reads go through the app registry for the same reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import django.dispatch
from django.apps import apps
from django.db.models import Sum
from django.utils import timezone

# Sent with the keyword arguments of `record_provider_call`.
provider_called = django.dispatch.Signal()


def record_provider_call(
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
    outcome: str = "ok",
    error: str = "",
    course_id: int | None = None,
    session_id: int | None = None,
    conversation_id: int | None = None,
    user_id: int | None = None,
) -> None:
    """Announce one provider call (kind "llm", "stt", ...; outcome "ok", "error", "timeout", ...)."""
    provider_called.send(
        sender=None,
        tenant_id=tenant_id,
        kind=kind,
        provider=provider,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        units=units,
        cost=cost,
        latency_ms=latency_ms,
        outcome=outcome,
        error=error,
        course_id=course_id,
        session_id=session_id,
        conversation_id=conversation_id,
        user_id=user_id,
    )


def month_start(now: datetime | None = None) -> datetime:
    """Midnight UTC on the first day of `now`'s calendar month (UTC)."""
    now = (now or timezone.now()).astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime | None = None) -> datetime:
    """Midnight UTC on the first day of the month after `now`'s."""
    start = month_start(now)
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def tenant_month_spend(tenant_id: int, *, now: datetime | None = None) -> Decimal:
    """USD spent on providers by the tenant in `now`'s calendar month (UTC)."""
    usage_event = apps.get_model("analytics", "UsageEvent")
    total = usage_event.objects.filter(
        tenant_id=tenant_id, created_at__gte=month_start(now), created_at__lt=next_month_start(now)
    ).aggregate(total=Sum("cost"))["total"]
    return total or Decimal(0)
