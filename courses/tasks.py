"""Celery tasks of the courses app: fetch by id, call a service."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from celery import shared_task
from django.db import OperationalError

from courses.ingestion import IngestionDeferred, document_fail, document_ingest

logger = logging.getLogger(__name__)

INGEST_MAX_RETRIES = 5
INGEST_BACKOFF_SECONDS = 5
INGEST_BACKOFF_MAX_SECONDS = 300
FAILED_ON_OUR_SIDE = (
    "Ingestion kept failing on our side (the database or a service was unavailable). "
    "Replace the file to try again."
)


def _ingest_failed(task, exc, task_id, args, kwargs, einfo) -> None:
    """After the last retry: the document says why instead of staying `processing` forever."""
    document_id = args[0] if args else kwargs.get("document_id")
    revision = args[1] if len(args) > 1 else kwargs.get("revision")
    try:
        document_fail(
            document_id=document_id,
            revision=revision,
            reason=FAILED_ON_OUR_SIDE,
        )
    except Exception:  # the database may be what is down
        logger.exception("document %s: could not record the ingestion failure", document_id)


@shared_task(
    name="courses.document_ingest",
    bind=True,
    acks_late=True,  # a worker that dies mid-ingestion leaves the message for another one
    reject_on_worker_lost=True,
    autoretry_for=(IngestionDeferred, OperationalError),
    retry_backoff=INGEST_BACKOFF_SECONDS,
    retry_backoff_max=INGEST_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=INGEST_MAX_RETRIES,
    on_failure=_ingest_failed,
)
def document_ingest_task(self, document_id: int, revision: int) -> str:
    """Ingest revision `revision` of a document; idempotent (see `document_ingest`). The last try
    stores the chunks without vectors rather than failing when only the embeddings service is down."""
    return document_ingest(
        document_id=document_id,
        revision=revision,
        embeddings_required=self.request.retries < INGEST_MAX_RETRIES,
    )


def document_ingest_in_process(
    document_id: int, revision: int, *, sleep: Callable[[float], None] = time.sleep
) -> str:
    """The task's retry policy without a broker (DOCUMENT_INGEST_IN_THREAD): the same tries, with
    the same exponential backoff, in the calling thread. (Celery's eager mode cannot retry when
    eager exceptions propagate, which the settings and tests want.)"""
    for attempt in range(INGEST_MAX_RETRIES + 1):
        try:
            return document_ingest(
                document_id=document_id,
                revision=revision,
                embeddings_required=attempt < INGEST_MAX_RETRIES,
            )
        except (IngestionDeferred, OperationalError) as exc:
            if attempt == INGEST_MAX_RETRIES:
                logger.warning("document %s: ingestion gave up: %s", document_id, exc)
                try:
                    document_fail(document_id=document_id, revision=revision, reason=FAILED_ON_OUR_SIDE)
                except Exception:
                    logger.exception("document %s: could not record the ingestion failure", document_id)
                return "failed"
            sleep(min(INGEST_BACKOFF_MAX_SECONDS, INGEST_BACKOFF_SECONDS * 2**attempt))
    return "failed"  # not reached: the loop returns
