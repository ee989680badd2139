"""Celery tasks of the analytics app."""

from __future__ import annotations

from celery import shared_task

from analytics.services import session_analytics_compute as compute


@shared_task(name="analytics.session_analytics_compute", acks_late=True, ignore_result=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=3)
def session_analytics_compute(session_id: int, final: bool = True) -> None:
    """Compute (or recompute) a session's analytics. Idempotent: the rows are updated in place."""
    compute(session_id=session_id, final=final)
