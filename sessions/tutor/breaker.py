"""A circuit breaker per upstream model (`ModelSpec.breaker_key`), kept in Django's cache so every
process (Daphne workers, Celery) agrees on it.

closed --LLM_BREAKER_FAILURES transient failures within LLM_BREAKER_WINDOW_SECONDS--> open
open --LLM_BREAKER_COOLDOWN_SECONDS later--> half-open: exactly one caller gets the trial call
half-open --trial succeeds--> closed;  --trial fails--> open again (a new cool-down)

Every function takes `now` (a clock) so tests move time without sleeping.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache

Clock = Callable[[], float]

OPENED_TTL_SECONDS = 24 * 3600  # an open breaker nobody asks about again is forgotten after a day


def _cache_key(key: str, part: str) -> str:
    # Hashed: breaker keys hold base URLs and model names, which can be long or contain spaces.
    return f"llm-breaker:{hashlib.sha256(key.encode()).hexdigest()[:32]}:{part}"


def _window() -> float:
    return float(settings.LLM_BREAKER_WINDOW_SECONDS)


def _cooldown() -> float:
    return float(settings.LLM_BREAKER_COOLDOWN_SECONDS)


def breaker_opened_at(key: str) -> float | None:
    """When the breaker last opened (a `now()` timestamp), or None while it is closed."""
    return cache.get(_cache_key(key, "opened"))


def breaker_state(key: str, *, now: Clock = time.time) -> str:
    """ "closed", "open", or "half_open" (cooled down: the next caller gets a trial)."""
    opened_at = breaker_opened_at(key)
    if opened_at is None:
        return "closed"
    return "half_open" if now() >= opened_at + _cooldown() else "open"


def breaker_allow(key: str, *, now: Clock = time.time) -> bool:
    """May a call go to this model now? Half-open: True for exactly one caller (the trial)."""
    opened_at = breaker_opened_at(key)
    if opened_at is None:
        return True
    if now() < opened_at + _cooldown():
        return False
    # `add` is atomic in every backend: one process wins the trial. The claim expires on its own
    # (after one attempt's longest duration) in case the trial ends with no verdict at all.
    claim_ttl = math.ceil(float(settings.LLM_TOTAL_TIMEOUT_SECONDS)) + 1
    return cache.add(_cache_key(key, f"trial:{opened_at}"), True, timeout=claim_ttl)


def breaker_record_success(key: str) -> None:
    """A call succeeded: close the breaker and forget earlier failures."""
    cache.delete_many([_cache_key(key, "opened"), _cache_key(key, "failures")])


def breaker_record_failure(key: str, *, now: Clock = time.time) -> None:
    """A transient failure: count it, and open the breaker when the window holds enough of them."""
    at = now()
    opened_at = breaker_opened_at(key)
    if opened_at is not None:
        if at >= opened_at + _cooldown():
            _open(key, at)  # the half-open trial failed
        return  # already open: calls started before it opened add nothing
    failures_key = _cache_key(key, "failures")
    # Read-modify-write: two processes failing at the same instant may count once, which only
    # delays opening by one failure.
    recent = [t for t in cache.get(failures_key, []) if t > at - _window()]
    recent.append(at)
    if len(recent) >= int(settings.LLM_BREAKER_FAILURES):
        _open(key, at)
    else:
        cache.set(failures_key, recent, timeout=math.ceil(_window()))


def _open(key: str, at: float) -> None:
    cache.set(_cache_key(key, "opened"), at, timeout=OPENED_TTL_SECONDS)
    cache.delete(_cache_key(key, "failures"))
