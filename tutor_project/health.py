"""`GET /healthz`: is the database, the channel layer and the Celery broker reachable right now?

    {"status": "ok" | "degraded",
     "database":      {"ok", "ms", "engine"},
     "channel_layer": {"ok", "ms", "backend"},   # a real send/receive on a fresh channel
     "broker":        {"ok", "ms", "scheme"}}     # "eager": tasks run in-process, nothing to reach

200 when everything answers, 503 otherwise, so a load balancer or `curl -f` can act on it. The
three checks run concurrently, each with its own timeout, and the view never raises: a failing
check reports `ok: false` and an `error` (the exception class, never a URL or a password).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

DATABASE_TIMEOUT_SECONDS = 3.0
CHANNEL_LAYER_TIMEOUT_SECONDS = 2.0
BROKER_TIMEOUT_SECONDS = 2.0


async def _timed(check: Callable[[], Awaitable[dict[str, Any]]], timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = {"ok": True, **(await asyncio.wait_for(check(), timeout))}
    except TimeoutError:
        result = {"ok": False, "error": f"no answer within {timeout:g} s"}
    except Exception as exc:  # a health check reports failures, it never raises them
        logger.warning("health check %s failed: %r", getattr(check, "__name__", check), exc)
        result = {"ok": False, "error": type(exc).__name__}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


# --- Database -------------------------------------------------------------------------------


def _database_ping() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def check_database() -> dict[str, Any]:
    await sync_to_async(_database_ping, thread_sensitive=True)()
    return {}


# --- Channel layer --------------------------------------------------------------------------


async def _release_channel(layer, channel: str) -> None:
    """Forget the fresh channel. Layers have no `delete_channel`; a cancelled receive is how
    they clean one up (the pub/sub layer unsubscribes, the others drop its queue)."""
    waiter = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    waiter.cancel()
    with suppress(BaseException):
        await waiter


async def check_channel_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("CHANNEL_LAYERS is not configured")
    channel = await layer.new_channel()
    try:
        token = secrets.token_hex(8)
        await layer.send(channel, {"type": "health.ping", "token": token})
        message = await layer.receive(channel)
        if message.get("token") != token:
            raise RuntimeError("the channel layer returned another message")
    finally:
        await _release_channel(layer, channel)
    return {}


# --- Broker ---------------------------------------------------------------------------------


def _broker_ping(url: str) -> None:
    from kombu import Connection  # imported here: Celery's stack is not needed to serve pages

    with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS
        )


async def check_broker() -> dict[str, Any]:
    url = settings.CELERY_BROKER_URL
    if settings.CELERY_TASK_ALWAYS_EAGER or not url:
        return {}
    await sync_to_async(_broker_ping, thread_sensitive=False)(url)
    return {}


# --- View -----------------------------------------------------------------------------------


def _broker_scheme() -> str:
    url = settings.CELERY_BROKER_URL
    if settings.CELERY_TASK_ALWAYS_EAGER or not url:
        return "eager"
    return urlsplit(url).scheme or "unknown"


@never_cache
@require_safe
async def healthz(request: HttpRequest) -> JsonResponse:
    database, channel_layer, broker = await asyncio.gather(
        _timed(check_database, DATABASE_TIMEOUT_SECONDS),
        _timed(check_channel_layer, CHANNEL_LAYER_TIMEOUT_SECONDS),
        _timed(check_broker, BROKER_TIMEOUT_SECONDS + 1),
    )
    database["engine"] = connections["default"].vendor
    layer_config = settings.CHANNEL_LAYERS.get("default", {})
    channel_layer["backend"] = str(layer_config.get("BACKEND", "none")).rsplit(".", 1)[-1]
    broker["scheme"] = _broker_scheme()
    ok = database["ok"] and channel_layer["ok"] and broker["ok"]
    body = {
        "status": "ok" if ok else "degraded",
        "database": database,
        "channel_layer": channel_layer,
        "broker": broker,
    }
    return JsonResponse(body, status=200 if ok else 503)
