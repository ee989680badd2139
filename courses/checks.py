"""System checks for missing or contradictory configuration.

They run with every `manage.py` command (and `check --deploy`), so a production deployment with,
say, the public development key or a process-local channel layer is told before it serves anyone.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=False)
def check_secret_key(app_configs, **kwargs) -> list:
    if not settings.DEBUG and settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        return [
            Error(
                "DJANGO_DEBUG is off but DJANGO_SECRET_KEY is not set: the public development key "
                "would sign sessions and tokens.",
                hint="Set DJANGO_SECRET_KEY to a long random value (python -c 'import secrets; "
                "print(secrets.token_urlsafe(50))').",
                id="tutor.E001",
            )
        ]
    return []


@register(deploy=True)
def check_production_services(app_configs, **kwargs) -> list:
    """In production, live updates and tasks must cross processes."""
    if settings.DEBUG:
        return []
    problems = []
    if not settings.REDIS_URL:
        problems.append(
            Warning(
                "REDIS_URL is not set: the channel layer is in-memory, so live updates do not reach "
                "clients connected to another Daphne process, and the cache is per process.",
                hint="Set REDIS_URL=redis://host:6379/0 when running more than one process.",
                id="tutor.W001",
            )
        )
    if settings.CELERY_TASK_ALWAYS_EAGER:
        problems.append(
            Warning(
                "Celery runs tasks in the request process (no broker configured).",
                hint="Set REDIS_URL or CELERY_BROKER_URL and run a worker and beat.",
                id="tutor.W002",
            )
        )
    if not settings.USING_POSTGRES:
        problems.append(
            Warning(
                "DATABASE_URL is not PostgreSQL: SQLite serialises writes and lacks pgvector.",
                hint="Set DATABASE_URL=postgres://user:password@host:5432/dbname.",
                id="tutor.W003",
            )
        )
    return problems


@register()
def check_contradictions(app_configs, **kwargs) -> list:
    problems = []
    if settings.CELERY_TASK_ALWAYS_EAGER and settings.CELERY_BROKER_URL and not settings.DEBUG:
        problems.append(
            Warning(
                "A Celery broker is configured but CELERY_TASK_ALWAYS_EAGER is on: tasks will "
                "never reach the broker's workers.",
                hint="Unset CELERY_TASK_ALWAYS_EAGER.",
                id="tutor.W004",
            )
        )
    if settings.OPENAI_BASE_URL and not settings.OPENAI_API_KEY:
        problems.append(
            Warning(
                "OPENAI_BASE_URL is set without OPENAI_API_KEY; hosted APIs will refuse calls "
                "(local servers such as Ollama accept any key: set OPENAI_API_KEY=local).",
                id="tutor.W005",
            )
        )
    if settings.WS_TICKET_TTL_SECONDS > 60 or settings.WS_TICKET_TTL_SECONDS < 1:
        problems.append(
            Error(
                "WS_TICKET_TTL_SECONDS must be between 1 and 60: join tickets expire within a minute.",
                id="tutor.E002",
            )
        )
    if settings.WS_VIOLATIONS_BEFORE_CLOSE < 1:
        problems.append(Error("WS_VIOLATIONS_BEFORE_CLOSE must be at least 1.", id="tutor.E003"))
    return problems
