"""`/healthz`: database, channel layer (a real round trip) and broker, 200 or 503, never a 500."""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.urls import path

from tutor_project import health

# Until tutor_project/urls.py imports this view (see the real-time report), route it here.
urlpatterns = [path("healthz", health.healthz, name="healthz")]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_healthy_answers_200_with_every_check(client, settings):
    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    assert response["Cache-Control"].startswith("max-age=0")
    body = response.json()
    assert body["status"] == "ok"
    assert set(body) == {"status", "database", "channel_layer", "broker"}
    assert body["database"]["ok"] is True
    assert body["database"]["engine"] in {"sqlite", "postgresql"}
    assert body["channel_layer"]["ok"] is True
    assert body["channel_layer"]["backend"] == settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    for check in ("database", "channel_layer", "broker"):
        assert isinstance(body[check]["ms"], float | int)


def test_eager_celery_is_a_healthy_broker(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    broker = client.get("/healthz").json()["broker"]
    assert broker["ok"] is True
    assert broker["scheme"] == "eager"


def test_head_works_and_post_does_not(client):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


@pytest.mark.parametrize(
    "backend",
    ["channels_redis.pubsub.RedisPubSubChannelLayer", "channels_redis.core.RedisChannelLayer"],
)
def test_channel_layer_down_answers_503_within_the_timeout(client, backend):
    layers = {"default": {"BACKEND": backend, "CONFIG": {"hosts": [NOWHERE]}}}
    started = time.monotonic()
    # override_settings resets Channels' cache of layer instances (setting_changed), both ways.
    with override_settings(CHANNEL_LAYERS=layers):
        response = client.get("/healthz")
    assert time.monotonic() - started < health.CHANNEL_LAYER_TIMEOUT_SECONDS + 2
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["channel_layer"]["ok"] is False
    assert body["channel_layer"]["backend"] == backend.rsplit(".", 1)[-1]
    assert body["channel_layer"]["error"]
    assert "127.0.0.1:1" not in response.content.decode()  # no addresses or secrets leak
    assert body["database"]["ok"] is True


def test_broker_down_answers_503(client, settings):
    settings.CELERY_BROKER_URL = "redis://:secret@127.0.0.1:1/0"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["broker"] == {**body["broker"], "ok": False, "scheme": "redis"}
    assert "secret" not in response.content.decode()


@pytest.mark.requires_redis
def test_broker_up_answers_200(client, settings):
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.CELERY_TASK_ALWAYS_EAGER = False
    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    assert response.json()["broker"]["scheme"] == "redis"


def test_database_down_answers_503(client, monkeypatch):
    def broken():
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "_database_ping", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == {
        **response.json()["database"], "ok": False, "error": "OperationalError",
    }


def test_a_bug_in_a_check_is_reported_not_raised(client, monkeypatch):
    def explode():
        raise KeyError("boom")

    monkeypatch.setattr(health, "get_channel_layer", explode)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["channel_layer"]["ok"] is False


async def test_round_trips_leave_no_channel_behind(settings):
    """Under Daphne every health check runs on one long-lived loop: fresh channels must go."""
    from channels.layers import channel_layers, get_channel_layer

    channel_layers.backends = {}
    layer = get_channel_layer()
    for _ in range(3):
        await health.check_channel_layer()
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if backend.endswith("InMemoryChannelLayer"):
        assert layer.channels == {}
    elif backend.endswith("RedisPubSubChannelLayer"):
        loop_layer = layer._get_layer()
        assert loop_layer.channels == {}
        assert all(not shard._subscribed_to for shard in loop_layer._shards)
        await layer.flush()
    channel_layers.backends = {}
