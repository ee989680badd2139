"""The circuit breaker per model: state in the cache, time from an injected clock (no sleeping)."""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.db import database_sync_to_async

from analytics.models import UsageEvent
from sessions.providers.base import LLMRequest, ModelSpec
from sessions.tutor.breaker import (
    breaker_allow,
    breaker_opened_at,
    breaker_record_failure,
    breaker_record_success,
    breaker_state,
)
from sessions.tutor.chain import ChainRun, UsageScope
from tests.support.openai_standin import Reply, Status

KEY = "openai|https://api.example.org/v1|gpt-4o-mini"


class Clock:
    def __init__(self, start: float = 1_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def policy(settings):
    settings.LLM_BREAKER_FAILURES = 3
    settings.LLM_BREAKER_WINDOW_SECONDS = 60
    settings.LLM_BREAKER_COOLDOWN_SECONDS = 30
    return settings


def fail(times: int, clock: Clock, key: str = KEY) -> None:
    for _ in range(times):
        breaker_record_failure(key, now=clock)


def test_a_new_breaker_is_closed_and_allows_calls(clock):
    assert breaker_state(KEY, now=clock) == "closed"
    assert breaker_allow(KEY, now=clock)
    assert breaker_opened_at(KEY) is None


def test_fewer_failures_than_the_threshold_keep_it_closed(clock):
    fail(2, clock)
    assert breaker_state(KEY, now=clock) == "closed"
    assert breaker_allow(KEY, now=clock)


def test_it_opens_after_the_threshold_of_failures_within_the_window(clock):
    fail(2, clock)
    clock.advance(59)
    fail(1, clock)
    assert breaker_state(KEY, now=clock) == "open"
    assert breaker_opened_at(KEY) == clock.now
    assert not breaker_allow(KEY, now=clock)


def test_failures_older_than_the_window_do_not_count(clock):
    fail(2, clock)
    clock.advance(61)
    fail(2, clock)
    assert breaker_state(KEY, now=clock) == "closed"
    fail(1, clock)
    assert breaker_state(KEY, now=clock) == "open"


def test_a_success_forgets_earlier_failures(clock):
    fail(2, clock)
    breaker_record_success(KEY)
    fail(2, clock)
    assert breaker_state(KEY, now=clock) == "closed"


def test_breakers_of_different_models_are_independent(clock):
    fail(3, clock)
    other = "openai|https://api.example.org/v1|gpt-4o"
    assert breaker_state(other, now=clock) == "closed"
    assert breaker_allow(other, now=clock)


def test_after_the_cooldown_exactly_one_caller_gets_the_trial(clock):
    fail(3, clock)
    clock.advance(29.9)
    assert breaker_state(KEY, now=clock) == "open"
    assert not breaker_allow(KEY, now=clock)
    clock.advance(0.1)
    assert breaker_state(KEY, now=clock) == "half_open"
    assert [breaker_allow(KEY, now=clock) for _ in range(5)] == [True, False, False, False, False]


def test_concurrent_callers_in_half_open_get_one_trial_between_them(clock):
    fail(3, clock)
    clock.advance(30)
    barrier = threading.Barrier(16)

    def ask(_: int) -> bool:
        barrier.wait()
        return breaker_allow(KEY, now=clock)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    assert answers.count(True) == 1


def test_a_successful_trial_closes_the_breaker(clock):
    fail(3, clock)
    clock.advance(30)
    assert breaker_allow(KEY, now=clock)
    breaker_record_success(KEY)
    assert breaker_state(KEY, now=clock) == "closed"
    assert all(breaker_allow(KEY, now=clock) for _ in range(3))
    fail(2, clock)  # a fresh count: two failures do not re-open it
    assert breaker_state(KEY, now=clock) == "closed"


def test_a_failed_trial_reopens_it_for_a_new_cooldown_and_a_new_trial(clock):
    fail(3, clock)
    clock.advance(30)
    assert breaker_allow(KEY, now=clock)
    clock.advance(2)
    breaker_record_failure(KEY, now=clock)
    assert breaker_state(KEY, now=clock) == "open"
    assert breaker_opened_at(KEY) == clock.now
    assert not breaker_allow(KEY, now=clock)
    clock.advance(30)
    assert [breaker_allow(KEY, now=clock) for _ in range(3)] == [True, False, False]


def test_failures_while_open_do_not_extend_the_cooldown(clock):
    fail(3, clock)
    opened = clock.now
    clock.advance(10)
    fail(5, clock)  # calls that started before it opened
    assert breaker_opened_at(KEY) == opened
    clock.advance(20)
    assert breaker_state(KEY, now=clock) == "half_open"


def test_long_keys_are_hashed_into_valid_cache_keys(clock):
    long_key = "openai|https://llm.example.org/" + "deployment with spaces/" * 20 + "|model"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # CacheKeyWarning: too long, or characters memcached rejects
        fail(3, clock, long_key)
        assert breaker_state(long_key, now=clock) == "open"


# --- The chain and the breaker ------------------------------------------------------------------


def spec(standin, name: str) -> ModelSpec:
    return ModelSpec(
        id=None, provider="openai", model_name=name, base_url=standin.base_url, api_key="sk-test"
    )


async def run(chain: list[ModelSpec], tenant_id: int) -> ChainRun:
    chain_run = ChainRun(
        chain=chain,
        request=LLMRequest(messages=[{"role": "user", "content": "Hi"}], model=""),
        scope=UsageScope(tenant_id=tenant_id),
        sleep=_no_sleep,
    )
    async with chain_run:
        async for _ in chain_run:
            pass
    return chain_run


async def _no_sleep(delay: float) -> None:
    return None


@pytest.mark.django_db(transaction=True)
async def test_an_open_breaker_makes_the_chain_skip_the_model_without_calling_it(openai_standin, tenant):
    model_a, model_b = spec(openai_standin, "model-a"), spec(openai_standin, "model-b")
    for _ in range(3):
        breaker_record_failure(model_a.breaker_key)
    openai_standin.script(Reply("From b."))

    chain_run = await run([model_a, model_b], tenant.id)

    assert [sent["model"] for sent in openai_standin.requests] == ["model-b"]
    assert chain_run.result is not None and chain_run.result.spec.model_name == "model-b"
    rows = await database_sync_to_async(
        lambda: list(UsageEvent.objects.order_by("id").values_list("model", "outcome", "error"))
    )()
    assert rows == [("model-a", "rejected", "circuit breaker open"), ("model-b", "ok", "")]


@pytest.mark.django_db(transaction=True)
async def test_the_chain_s_transient_failures_open_the_breaker_and_its_success_closes_one(
    openai_standin, tenant, settings
):
    settings.LLM_RETRIES_PER_MODEL = 2
    model_a, model_b = spec(openai_standin, "model-a"), spec(openai_standin, "model-b")
    breaker_record_failure(model_b.breaker_key)
    openai_standin.script(Status(500), Status(502), Status(503), Reply("From b."))

    await run([model_a, model_b], tenant.id)

    assert breaker_state(model_a.breaker_key) == "open"
    for _ in range(2):  # b's success forgot its earlier failure: 2 more do not reach 3
        breaker_record_failure(model_b.breaker_key)
    assert breaker_state(model_b.breaker_key) == "closed"
    openai_standin.script(Reply("Still b."))
    await run([model_a, model_b], tenant.id)
    assert [sent["model"] for sent in openai_standin.requests] == ["model-a"] * 3 + ["model-b"] * 2


@pytest.mark.django_db(transaction=True)
async def test_a_non_transient_error_does_not_count_towards_the_breaker(openai_standin, tenant, settings):
    settings.LLM_RETRIES_PER_MODEL = 0
    model_a = spec(openai_standin, "model-a")
    for _ in range(3):
        openai_standin.script(Status(401), Reply("ok"))
        await run([model_a, spec(openai_standin, "model-b")], tenant.id)
    assert breaker_state(model_a.breaker_key) == "closed"
