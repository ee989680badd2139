"""The Celery application.

Tasks live in each app's `tasks.py` (fetch by id, call a service). With no broker configured the
settings make every task run eagerly in-process, so the embedded default needs no worker.
Services publish tasks with `transaction.on_commit`, so a worker never sees uncommitted rows.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")

app = Celery("tutor_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
