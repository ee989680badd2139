"""Writes of course materials: upload, replace, delete, and queueing their ingestion.

Views and API call these; each validates, writes in one transaction, and queues the ingestion task
(or deletes the stored file) only after the commit.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import close_old_connections, transaction
from django.utils import timezone

from courses.exceptions import DomainError, FileTooLarge, Forbidden, UnsupportedFileType
from courses.ingestion import FORMAT_CONTENT_TYPES, document_format
from courses.models import Course, CourseDocument, User
from courses.selectors import user_can_teach
from courses.tasks import document_ingest_in_process, document_ingest_task
from tutor_project.celery import enqueue_on_commit

logger = logging.getLogger(__name__)

# Without a broker, ingestions run one at a time in this thread (DOCUMENT_INGEST_IN_THREAD).
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")


# Ingestions queued or running in this process's thread: (document id, revision).
_in_flight: set[tuple[int, int]] = set()
# An in-thread ingestion not seen moving for this long belonged to a process that is gone.
STALLED_AFTER = timedelta(minutes=10)


def _run_ingestion(document_id: int, revision: int) -> None:
    try:
        document_ingest_in_process(document_id, revision)
    except Exception:
        logger.exception("document %s: ingestion crashed", document_id)
    finally:
        _in_flight.discard((document_id, revision))
        close_old_connections()


def documents_resume_stalled(*, course: Course) -> int:
    """Embedded default only: documents left pending or processing by a process that stopped
    (its ingestion thread died with it) are queued again. With Celery, `acks_late` redelivers
    the task instead. Returns how many were resumed."""
    if not settings.DOCUMENT_INGEST_IN_THREAD:
        return 0
    stalled = [
        document
        for document in CourseDocument.objects.filter(
            course=course,
            status__in=[CourseDocument.Status.PENDING, CourseDocument.Status.PROCESSING],
            updated_at__lt=timezone.now() - STALLED_AFTER,
        )
        if (document.pk, document.revision) not in _in_flight
    ]
    for document in stalled:
        logger.warning("document %s: ingestion stalled (server restarted?); queued again", document.pk)
        document_ingest_enqueue(document=document)
    return len(stalled)


def document_ingest_enqueue(*, document: CourseDocument) -> None:
    """Queue the ingestion of the document's current revision once the transaction commits."""
    if settings.DOCUMENT_INGEST_IN_THREAD:
        document_id, revision = document.pk, document.revision
        _in_flight.add((document_id, revision))
        transaction.on_commit(lambda: _executor.submit(_run_ingestion, document_id, revision))
    else:
        enqueue_on_commit(document_ingest_task, document.pk, document.revision)


def _teacher_check(*, user: User, course: Course) -> None:
    if not user_can_teach(user=user, course=course):
        raise Forbidden("Only the course's professors may change its materials.")


def document_file_check(*, file: UploadedFile) -> str:
    """The file's format ("pdf", "docx", ...), or the error that refuses it: too large, of a type
    we cannot read, or empty."""
    name = PurePosixPath(file.name or "").name
    extension = PurePosixPath(name).suffix.lower()
    allowed = ", ".join(settings.DOCUMENT_EXTENSIONS)
    if extension not in settings.DOCUMENT_EXTENSIONS:
        raise UnsupportedFileType(
            f"{name or 'This file'} cannot be read: upload one of {allowed}.", fields={"file": [f"Allowed: {allowed}."]}
        )
    kind = document_format(filename=name)
    if kind is None:  # DOCUMENT_EXTENSIONS lists a format ingestion does not know
        raise UnsupportedFileType(f"{name} cannot be read: upload one of {', '.join(FORMAT_CONTENT_TYPES)}.")
    limit = int(settings.MAX_UPLOAD_BYTES)
    if file.size is not None and file.size > limit:
        raise FileTooLarge(
            f"{name} is {file.size / 1_048_576:.1f} MB; the limit is {limit / 1_048_576:.0f} MB.",
            fields={"file": [f"At most {limit} bytes."]},
        )
    if not file.size:
        raise DomainError("The file is empty.", code="invalid", fields={"file": ["The file is empty."]})
    return kind


def _title_from(name: str) -> str:
    stem = PurePosixPath(name).stem.replace("_", " ").strip()
    return (stem or "Untitled document")[:255]


@transaction.atomic
def document_upload(*, user: User, course: Course, file: UploadedFile, title: str = "") -> CourseDocument:
    """Store an uploaded file as a new document of the course, pending ingestion (queued)."""
    _teacher_check(user=user, course=course)
    kind = document_file_check(file=file)
    document = CourseDocument(
        course=course,
        title=(title.strip() or _title_from(file.name))[:255],
        content_type=FORMAT_CONTENT_TYPES[kind],
        size_bytes=file.size or 0,
        status=CourseDocument.Status.PENDING,
        progress=0,
        uploaded_by=user,
    )
    document.file.save(PurePosixPath(file.name).name, file, save=False)
    document.save()
    document_ingest_enqueue(document=document)
    return document


@transaction.atomic
def document_replace(*, user: User, document: CourseDocument, file: UploadedFile) -> CourseDocument:
    """Put a new file in place of the document's: a new revision, ingested again from the start.
    The old chunks stay until the new ones are written (the document is not searched meanwhile)."""
    _teacher_check(user=user, course=document.course)
    kind = document_file_check(file=file)
    document = CourseDocument.objects.select_for_update().select_related("course").get(pk=document.pk)
    old_file = document.file.name if document.file else ""
    document.file.save(PurePosixPath(file.name).name, file, save=False)
    document.content_type = FORMAT_CONTENT_TYPES[kind]
    document.size_bytes = file.size or 0
    document.revision += 1
    document.status = CourseDocument.Status.PENDING
    document.progress = 0
    document.error = ""
    document.page_count = None
    document.save()
    if old_file and old_file != document.file.name:
        storage = document.file.storage
        transaction.on_commit(lambda: storage.delete(old_file))
    document_ingest_enqueue(document=document)
    return document


@transaction.atomic
def document_delete(*, user: User, document: CourseDocument) -> None:
    """Delete the document, its chunks (and so their index entries) and, after commit, its file."""
    _teacher_check(user=user, course=document.course)
    name = document.file.name if document.file else ""
    storage = document.file.storage
    document.delete()
    if name:
        transaction.on_commit(lambda: storage.delete(name))
