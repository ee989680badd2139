"""The Celery application, and the one way our code publishes a task.

Tasks live in each app's `tasks.py` (fetch by id, call a service). With no broker configured the
settings make every task run eagerly in-process, so the embedded default needs no worker.
Services publish with `enqueue_on_commit`, so a worker never sees rows that are not committed
(or that a rollback un-writes).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")

app = Celery("tutor_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def enqueue_on_commit(task: Any, *args: Any, **kwargs: Any) -> None:
    """Publish `task` with these arguments once the current transaction commits (now, if none)."""
    from django.db import transaction

    transaction.on_commit(lambda: task.apply_async(args=args, kwargs=kwargs))
