"""Celery tasks of the analytics app."""

from __future__ import annotations

from celery import shared_task

from analytics.services import session_analytics_compute as compute


@shared_task(name="analytics.session_analytics_compute", acks_late=True, ignore_result=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=3)
def session_analytics_compute(session_id: int, final: bool = True) -> None:
    """Compute (or recompute) a session's analytics. Idempotent: the rows are updated in place."""
    compute(session_id=session_id, final=final)


@shared_task(name="analytics.segment_observe", acks_late=True, ignore_result=True)
def segment_observe_task(segment_id: int, room_id: int | None = None) -> None:
    """The live radar's look at one committed student line (analytics/live.py). Idempotent."""
    from analytics.live import segment_observe

    segment_observe(segment_id=segment_id, room_id=room_id)


# --- scheduled work (analytics/beat.py installs the schedules) ---------------------------------


@shared_task(name="analytics.usage_rollup", acks_late=True, ignore_result=True)
def usage_rollup(day: str | None = None) -> int:
    """Replace a UTC day's UsageDaily rows (ISO date; default yesterday). Idempotent."""
    from datetime import date

    from analytics.usage import usage_rollup as rollup

    return rollup(day=date.fromisoformat(day) if day else None)


@shared_task(name="analytics.budget_check", acks_late=True, ignore_result=True)
def budget_check() -> int:
    """Send the month's 80 % / 100 % budget mails not sent yet. Idempotent (BudgetAlert rows)."""
    from analytics.usage import budget_check as check

    return len(check())


@shared_task(name="analytics.retention_purge", acks_late=True, ignore_result=True)
def retention_purge() -> dict:
    """Delete transcripts, messages and audio older than each tenant's retention. Idempotent."""
    from analytics.retention import retention_purge as purge

    return purge().as_dict()
