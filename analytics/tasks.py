"""Celery tasks of the analytics app."""

from __future__ import annotations

from celery import shared_task

from analytics.services import session_analytics_compute as compute


@shared_task(name="analytics.session_analytics_compute", acks_late=True, ignore_result=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=3)
def session_analytics_compute(session_id: int) -> None:
    """Compute (or recompute) a session's analytics. Idempotent: the rows are replaced."""
    compute(session_id=session_id)


@shared_task(name="analytics.segment_observe", acks_late=True, ignore_result=True)
def segment_observe_task(segment_id: int, room_id: int | None = None) -> None:
    """The live radar's look at one committed student line (analytics/live.py). Idempotent."""
    from analytics.live import segment_observe

    segment_observe(segment_id=segment_id, room_id=room_id)
