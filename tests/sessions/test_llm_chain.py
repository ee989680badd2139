"""The model chain: fallback, retries with bounded backoff, restarts, skips, cancellation.

Models are served by the local OpenAI stand-in through the real SDK; `sleep` is injected so
backoff costs no time and its delays can be checked.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from channels.db import database_sync_to_async

from analytics.models import UsageEvent
from sessions.providers import engine_for
from sessions.providers.base import LLMError, LLMRequest, ModelSpec
from sessions.providers.llama_cpp import LlamaCppEngine
from sessions.providers.offline_tutor import OfflineTutorEngine
from sessions.providers.openai_llm import OpenAIChatEngine
from sessions.tutor.chain import ChainEvent, ChainRun, TutorUnavailable, UsageScope, chain_for_tenant
from tests import factories
from tests.support.openai_standin import DropAfter, Hang, OpenAIStandin, Reply, Status

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = [{"role": "user", "content": "What is recursion?"}]


def online(standin: OpenAIStandin, name: str, **fields) -> ModelSpec:
    return ModelSpec(
        id=None, provider="openai", model_name=name, base_url=standin.base_url, api_key="sk-test", **fields
    )


class Sleeps:
    """An injected `sleep` that only records the delays asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def policy(settings):
    settings.LLM_RETRIES_PER_MODEL = 1
    settings.LLM_BACKOFF_BASE_SECONDS = 0.25
    settings.LLM_BACKOFF_MAX_SECONDS = 2.0
    settings.LLM_BREAKER_FAILURES = 100  # these tests are about the chain, not the breaker
    return settings


async def run_chain(chain: list[ModelSpec], tenant_id: int, **options) -> tuple[ChainRun, list[ChainEvent]]:
    run = ChainRun(
        chain=chain,
        request=LLMRequest(messages=QUESTION, model=""),
        scope=UsageScope(tenant_id=tenant_id),
        **options,
    )
    async with run:
        events = [event async for event in run]
    return run, events


def models_called(standin: OpenAIStandin) -> list[str]:
    return [sent["model"] for sent in standin.requests]


def text_of(events: list[ChainEvent]) -> str:
    return "".join(event.text for event in events if event.kind == "delta")


async def usage_rows(**filters) -> list[tuple[str, str]]:
    return await database_sync_to_async(
        lambda: list(UsageEvent.objects.filter(**filters).order_by("id").values_list("model", "outcome"))
    )()


# --- Fallback --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500])
async def test_a_failing_model_is_retried_once_then_the_next_one_answers(
    openai_standin, policy, tenant, status
):
    openai_standin.script(Status(status), Status(status), Reply("Recursion is a function calling itself."))
    sleeps = Sleeps()
    run, events = await run_chain(
        [online(openai_standin, "model-a"), online(openai_standin, "model-b")], tenant.id, sleep=sleeps
    )

    assert models_called(openai_standin) == ["model-a", "model-a", "model-b"]
    assert text_of(events) == "Recursion is a function calling itself."
    assert run.result is not None
    assert run.result.spec.model_name == "model-b"
    assert run.result.offline is False
    assert run.result.text == "Recursion is a function calling itself."
    assert [(a.model, a.number, a.outcome) for a in run.result.attempts] == [
        ("model-a", 1, "error"),
        ("model-a", 2, "error"),
        ("model-b", 1, "ok"),
    ]
    assert len(sleeps.delays) == 1  # one backoff, before model-a's retry
    assert await usage_rows() == [("model-a", "error"), ("model-a", "error"), ("model-b", "ok")]


async def test_a_silent_model_times_out_and_the_next_one_answers(openai_standin, policy, tenant):
    policy.LLM_READ_TIMEOUT_SECONDS = 0.2
    policy.LLM_RETRIES_PER_MODEL = 0
    openai_standin.script(Hang(5), Reply("From b."))
    run, events = await run_chain(
        [online(openai_standin, "model-a"), online(openai_standin, "model-b")], tenant.id
    )

    assert text_of(events) == "From b."
    assert [a.outcome for a in run.attempts] == ["timeout", "ok"]
    assert await usage_rows(model="model-a") == [("model-a", "timeout")]


async def test_the_total_timeout_cuts_a_model_that_streams_too_slowly(openai_standin, policy, tenant):
    policy.LLM_TOTAL_TIMEOUT_SECONDS = 0.3
    policy.LLM_RETRIES_PER_MODEL = 0
    openai_standin.script(Reply(" ".join(["slow"] * 50), chunk_delay=0.05), Reply("Fast."))
    run, events = await run_chain(
        [online(openai_standin, "model-a"), online(openai_standin, "model-b")], tenant.id
    )

    assert [a.outcome for a in run.attempts] == ["timeout", "ok"]
    assert "restart" in [event.kind for event in events]
    assert run.result is not None and run.result.text == "Fast."
    assert await asyncio.to_thread(openai_standin.streams[0].wait_ended, 5)
    assert openai_standin.streams[0].client_disconnected


async def test_a_model_cut_mid_stream_is_followed_by_a_restart_then_the_next_answer(
    openai_standin, policy, tenant
):
    policy.LLM_RETRIES_PER_MODEL = 0
    openai_standin.script(
        DropAfter(2, "Recursion means something else entirely"), Reply("A function calling itself.")
    )
    run, events = await run_chain(
        [online(openai_standin, "model-a"), online(openai_standin, "model-b")], tenant.id
    )

    kinds = [event.kind for event in events]
    assert kinds[:3] == ["delta", "delta", "restart"]
    assert kinds.count("restart") == 1
    after_restart = events[kinds.index("restart") + 1 :]
    assert "".join(event.text for event in after_restart) == "A function calling itself."
    assert run.result is not None and run.result.text == "A function calling itself."


async def test_a_non_transient_error_moves_on_at_once_without_retry(openai_standin, policy, tenant):
    policy.LLM_RETRIES_PER_MODEL = 3
    openai_standin.script(Status(401), Reply("From b."))
    sleeps = Sleeps()
    run, events = await run_chain(
        [online(openai_standin, "model-a"), online(openai_standin, "model-b")], tenant.id, sleep=sleeps
    )

    assert models_called(openai_standin) == ["model-a", "model-b"]
    assert sleeps.delays == []
    assert text_of(events) == "From b."
    assert [a.outcome for a in run.attempts] == ["error", "ok"]


async def test_each_attempt_uses_the_entry_s_model_temperature_and_token_limit(
    openai_standin, policy, tenant
):
    openai_standin.script(Status(400), Reply("ok"))
    await run_chain(
        [
            online(openai_standin, "model-a", temperature=0.1, max_output_tokens=100),
            online(openai_standin, "model-b", temperature=0.9, max_output_tokens=300),
        ],
        tenant.id,
    )
    sent = [
        (r["json"]["model"], r["json"]["temperature"], r["json"]["max_tokens"])
        for r in openai_standin.requests
    ]
    assert sent == [("model-a", 0.1, 100), ("model-b", 0.9, 300)]


# --- Backoff ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_backoff_delays_are_full_jitter_within_the_exponential_cap(
    openai_standin, policy, tenant, seed
):
    policy.LLM_RETRIES_PER_MODEL = 4
    policy.LLM_BACKOFF_BASE_SECONDS = 0.25
    policy.LLM_BACKOFF_MAX_SECONDS = 1.5
    openai_standin.script(*[Status(503)] * 4, Reply("Finally."))
    sleeps = Sleeps()
    run, _ = await run_chain(
        [online(openai_standin, "model-a")], tenant.id, sleep=sleeps, rng=random.Random(seed).random
    )

    caps = [0.25, 0.5, 1.0, 1.5]  # min(max, base * 2**n)
    assert len(sleeps.delays) == 4
    assert all(0 <= delay <= cap for delay, cap in zip(sleeps.delays, caps, strict=True)), sleeps.delays
    assert run.result is not None and run.result.text == "Finally."


async def test_backoff_reaches_the_cap_at_the_top_of_the_jitter(openai_standin, policy, tenant):
    policy.LLM_RETRIES_PER_MODEL = 3
    policy.LLM_BACKOFF_MAX_SECONDS = 0.6
    openai_standin.script(*[Status(500)] * 4)
    sleeps = Sleeps()
    with pytest.raises(TutorUnavailable):
        await run_chain([online(openai_standin, "model-a")], tenant.id, sleep=sleeps, rng=lambda: 1.0)
    assert sleeps.delays == [0.25, 0.5, 0.6]  # no sleep after the last attempt


async def test_retry_after_is_honoured_when_within_the_maximum(openai_standin, policy, tenant):
    openai_standin.script(Status(429, retry_after=0.75), Reply("Now."))
    sleeps = Sleeps()
    run, _ = await run_chain([online(openai_standin, "model-a")], tenant.id, sleep=sleeps)
    assert sleeps.delays == [0.75]
    assert run.result is not None and run.result.spec.model_name == "model-a"


async def test_a_retry_after_beyond_the_maximum_moves_on_to_the_next_model(openai_standin, policy, tenant):
    openai_standin.script(Status(429, retry_after=30), Reply("From b."))
    sleeps = Sleeps()
    run, _ = await run_chain(
        [online(openai_standin, "model-a"), online(openai_standin, "model-b")], tenant.id, sleep=sleeps
    )
    assert sleeps.delays == []
    assert models_called(openai_standin) == ["model-a", "model-b"]
    assert run.result is not None and run.result.spec.model_name == "model-b"


# --- Nothing answers, skips ------------------------------------------------------------------------


async def test_when_every_model_fails_the_reasons_name_each_one(openai_standin, policy, tenant):
    openai_standin.script(Status(500), Status(500), Status(401))
    with pytest.raises(TutorUnavailable) as caught:
        await run_chain(
            [online(openai_standin, "model-a"), online(openai_standin, "model-b")], tenant.id, sleep=Sleeps()
        )
    reasons = caught.value.reasons
    assert len(reasons) == 2
    assert reasons[0].startswith("model-a") and "500" in reasons[0] and "2 attempts" in reasons[0]
    assert reasons[1].startswith("model-b") and "401" in reasons[1]
    assert "model-a" in str(caught.value) and "model-b" in str(caught.value)


async def test_entries_without_a_key_are_skipped_without_a_call_or_a_usage(openai_standin, policy, tenant):
    unkeyed = ModelSpec(
        id=None, provider="openai", model_name="model-nokey", missing="OPENAI_API_KEY is not set"
    )
    openai_standin.script(Reply("From b."))
    run, events = await run_chain([unkeyed, online(openai_standin, "model-b")], tenant.id)

    assert models_called(openai_standin) == ["model-b"]
    assert text_of(events) == "From b."
    assert [a.model for a in run.attempts] == ["model-b"]
    assert await usage_rows() == [("model-b", "ok")]


async def test_only_skipped_entries_give_the_missing_setting_as_the_reason(tenant, policy):
    unkeyed = ModelSpec(
        id=None, provider="openai", model_name="model-nokey", missing="OPENAI_API_KEY is not set"
    )
    with pytest.raises(TutorUnavailable) as caught:
        await run_chain([unkeyed], tenant.id)
    assert caught.value.reasons == ["model-nokey (openai): skipped, OPENAI_API_KEY is not set"]


# --- Cancellation ----------------------------------------------------------------------------------


async def test_cancelling_the_consumer_drops_the_upstream_stream_and_records_a_cancelled_usage(
    openai_standin, policy, tenant
):
    openai_standin.script(Reply(" ".join(f"word{i}" for i in range(200)), chunk_delay=0.02))
    seen: list[str] = []
    three = asyncio.Event()

    async def consume() -> None:
        run = ChainRun(
            chain=[online(openai_standin, "model-a")],
            request=LLMRequest(messages=QUESTION, model=""),
            scope=UsageScope(tenant_id=tenant.id),
        )
        async with run:
            async for event in run:
                seen.append(event.text)
                if len(seen) == 3:
                    three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    record = openai_standin.streams[-1]
    assert await asyncio.to_thread(record.wait_ended, 5)
    assert record.client_disconnected
    assert record.chunks_written < 50
    rows = await database_sync_to_async(
        lambda: list(UsageEvent.objects.values("outcome", "completion_tokens"))
    )()
    assert len(rows) == 1
    assert rows[0]["outcome"] == "cancelled"
    assert rows[0]["completion_tokens"] > 0


async def test_aclose_mid_stream_stops_the_run_and_the_upstream_stream(openai_standin, policy, tenant):
    openai_standin.script(Reply(" ".join(f"word{i}" for i in range(200)), chunk_delay=0.02), Reply("unused"))
    run = ChainRun(
        chain=[online(openai_standin, "model-a"), online(openai_standin, "model-b")],
        request=LLMRequest(messages=QUESTION, model=""),
        scope=UsageScope(tenant_id=tenant.id),
    )
    received = []
    async for event in run:
        received.append(event.text)
        if len(received) == 2:
            break
    await run.aclose()
    await run.aclose()

    assert run.result is None
    assert [event async for event in run] == []
    assert models_called(openai_standin) == ["model-a"]  # no fallback after a stop
    assert await asyncio.to_thread(openai_standin.streams[-1].wait_ended, 5)
    assert openai_standin.streams[-1].client_disconnected
    assert await usage_rows() == [("model-a", "cancelled")]


async def test_aclose_from_another_task_ends_the_run_as_cancelled(openai_standin, policy, tenant):
    openai_standin.script(Reply(" ".join(f"word{i}" for i in range(200)), chunk_delay=0.02), Reply("unused"))
    run = ChainRun(
        chain=[online(openai_standin, "model-a"), online(openai_standin, "model-b")],
        request=LLMRequest(messages=QUESTION, model=""),
        scope=UsageScope(tenant_id=tenant.id),
    )
    first = asyncio.Event()

    async def consume() -> list[ChainEvent]:
        events = []
        async for event in run:
            events.append(event)
            first.set()
        return events

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    await run.aclose()
    events = await asyncio.wait_for(task, 5)

    assert 0 < len(events) < 200
    assert run.result is None
    assert models_called(openai_standin) == ["model-a"]
    assert await usage_rows() == [("model-a", "cancelled")]


# --- Engines and the tenant's chain ----------------------------------------------------------------


def test_engine_for_picks_the_engine_by_provider():
    assert isinstance(engine_for(ModelSpec(id=None, provider="openai", model_name="m")), OpenAIChatEngine)
    assert isinstance(engine_for(ModelSpec(id=None, provider="offline", model_name="o")), OfflineTutorEngine)
    assert isinstance(engine_for(ModelSpec(id=None, provider="llama_cpp", model_name="s")), LlamaCppEngine)
    with pytest.raises(LLMError) as caught:
        engine_for(ModelSpec(id=None, provider="carrier-pigeon", model_name="p"))
    assert not caught.value.transient


async def test_llama_cpp_without_its_package_fails_clearly_and_for_good():
    engine = engine_for(ModelSpec(id=None, provider="llama_cpp", model_name="smollm2"))
    with pytest.raises(LLMError) as caught:
        await engine.open(LLMRequest(messages=QUESTION, model="smollm2"))
    assert caught.value.message == (
        "llama-cpp-python is not installed (pip install -r requirements/llm-local.txt)"
    )
    assert not caught.value.transient


def test_the_tenant_s_own_chain_replaces_the_global_one(tenant, other_tenant, settings, monkeypatch):
    settings.TEST_LLM_KEY = "sk-from-settings"
    monkeypatch.setenv("TEST_LLM_URL", "http://llm.internal/v1")
    factories.LLMModelFactory(tenant=None, position=1, model_name="global-a", api_key_setting="TEST_LLM_KEY")
    factories.LLMModelFactory(
        tenant=tenant,
        position=2,
        model_name="own-b",
        api_key_setting="TEST_LLM_KEY",
        base_url_setting="TEST_LLM_URL",
        temperature="0.30",
        max_output_tokens=321,
    )
    factories.LLMModelFactory(tenant=tenant, position=1, model_name="own-a", api_key_setting="TEST_LLM_KEY")
    factories.LLMModelFactory(tenant=tenant, position=3, model_name="own-off", enabled=False)

    own = chain_for_tenant(tenant_id=tenant.id)
    assert [spec.model_name for spec in own] == ["own-a", "own-b"]
    assert own[1].base_url == "http://llm.internal/v1"  # from the environment
    assert own[1].api_key == "sk-from-settings"  # from settings
    assert (own[1].temperature, own[1].max_output_tokens) == (0.3, 321)
    assert [spec.model_name for spec in chain_for_tenant(tenant_id=other_tenant.id)] == ["global-a"]


def test_an_openai_entry_without_its_key_is_marked_missing(db, settings):
    settings.OPENAI_API_KEY = ""
    factories.LLMModelFactory(
        tenant=None, position=1, model_name="gpt-4o-mini", api_key_setting="OPENAI_API_KEY"
    )
    factories.LLMModelFactory(
        tenant=None,
        position=2,
        provider="offline",
        model_name="offline-socratic",
        base_url_setting="",
        api_key_setting="",
    )
    tenant = factories.TenantFactory()

    online_spec, offline_spec = chain_for_tenant(tenant_id=tenant.id)
    assert online_spec.missing == "OPENAI_API_KEY is not set"
    assert offline_spec.missing == ""
