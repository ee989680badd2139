"""Settings, system checks and Celery wiring: the operator's side of the foundation."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from tutor_project.celery import app as celery_app
from tutor_project.celery import enqueue_on_commit

ROOT = Path(__file__).resolve().parent.parent
SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY",
                "DJANGO_ALLOWED_HOSTS", "CELERY_TASK_ALWAYS_EAGER", "OPENAI_BASE_URL", "OPENAI_API_KEY",
                "DJANGO_ALLOW_ASYNC_UNSAFE")  # the browser tests set the last one for themselves


def manage(*args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )


PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "tutor.example.edu",
    "DATABASE_URL": "postgres://tutor:pw@db.example.edu:5432/tutor",
    "REDIS_URL": "redis://cache.example.edu:6379/0",
}


def test_deploy_check_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_without_secret_key_is_an_error():
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    result = manage("check", **env)
    assert result.returncode != 0
    assert "tutor.E001" in result.stderr


def test_production_without_redis_warns_about_single_process_state():
    env = {k: v for k, v in PRODUCTION.items() if k != "REDIS_URL"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)
    assert result.returncode != 0
    assert "tutor.W001" in result.stderr and "tutor.W002" in result.stderr


def test_eager_with_a_broker_is_contradictory():
    result = manage(
        "check", "--fail-level", "WARNING", CELERY_TASK_ALWAYS_EAGER="1", **PRODUCTION
    )
    assert "tutor.W004" in result.stderr


def test_ticket_lifetime_over_a_minute_is_refused():
    result = manage("check", WS_TICKET_TTL_SECONDS="600")
    assert result.returncode != 0
    assert "tutor.E002" in result.stderr


def test_embedded_default_needs_no_variables():
    result = manage("check")
    assert result.returncode == 0, result.stderr
    code = (
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'],"
        " s.CELERY_TASK_ALWAYS_EAGER)"
    )
    out = subprocess.run(
        [sys.executable, "-c", f"import django,os;os.environ['DJANGO_SETTINGS_MODULE']="
         f"'tutor_project.settings';django.setup();{code}"],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k not in SERVICE_VARS},
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out == ["django.db.backends.sqlite3", "channels.layers.InMemoryChannelLayer", "True"]


def test_celery_is_configured_for_reliable_delivery():
    assert celery_app.conf.task_acks_late is True
    assert celery_app.conf.task_reject_on_worker_lost is True
    assert celery_app.conf.worker_prefetch_multiplier == 1
    assert celery_app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"


@celery_app.task(name="tests.record_call")
def record_call(value: str) -> str:
    CALLS.append(value)
    return value


CALLS: list[str] = []


@pytest.fixture
def eager(settings):
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    CALLS.clear()
    yield
    celery_app.conf.task_always_eager = previous


@pytest.mark.django_db(transaction=True)
def test_task_is_published_only_after_commit(eager):
    with transaction.atomic():
        enqueue_on_commit(record_call, "committed")
        assert CALLS == []  # not before the commit
    assert CALLS == ["committed"]


@pytest.mark.django_db(transaction=True)
def test_rolled_back_work_publishes_nothing(eager):
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_on_commit(record_call, "rolled back")
        raise RuntimeError("boom")
    assert CALLS == []


@pytest.mark.requires_redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_task_from_the_redis_broker():
    """Broker round trip: publish to Redis, an in-process worker consumes and runs the task."""
    import time

    from celery.contrib.testing.worker import start_worker

    previous = (celery_app.conf.broker_url, celery_app.conf.task_always_eager)
    celery_app.conf.update(broker_url=settings.REDIS_URL, task_always_eager=False)
    CALLS.clear()
    try:
        with start_worker(celery_app, perform_ping_check=False, pool="solo", loglevel="WARNING"):
            record_call.delay("over redis")
            deadline = time.monotonic() + 20
            while not CALLS and time.monotonic() < deadline:
                time.sleep(0.05)
        assert CALLS == ["over redis"]
    finally:
        celery_app.conf.update(broker_url=previous[0], task_always_eager=previous[1])
