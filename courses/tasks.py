"""Celery tasks of the courses app: fetch by id, call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError

from courses.ingestion import IngestionDeferred, document_fail, document_ingest

logger = logging.getLogger(__name__)

INGEST_MAX_RETRIES = 5


def _ingest_failed(task, exc, task_id, args, kwargs, einfo) -> None:
    """After the last retry: the document says why instead of staying `processing` forever."""
    document_id = args[0] if args else kwargs.get("document_id")
    revision = args[1] if len(args) > 1 else kwargs.get("revision")
    try:
        document_fail(
            document_id=document_id,
            revision=revision,
            reason="Ingestion kept failing on our side (the database or a service was unavailable). "
            "Replace the file to try again.",
        )
    except Exception:  # the database may be what is down
        logger.exception("document %s: could not record the ingestion failure", document_id)


@shared_task(
    name="courses.document_ingest",
    bind=True,
    acks_late=True,  # a worker that dies mid-ingestion leaves the message for another one
    reject_on_worker_lost=True,
    autoretry_for=(IngestionDeferred, OperationalError),
    retry_backoff=5,
    retry_backoff_max=300,
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
