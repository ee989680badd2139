"""Usage records of the model chain (tokens, cost at the admin's prices, outcome, who) and the
tenant's monthly budget (over it, only the cheapest model answers)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from channels.db import database_sync_to_async

from analytics.models import UsageEvent
from courses.usage import record_provider_call, tenant_month_spend
from sessions.providers.base import LLMRequest, ModelSpec
from sessions.tutor.chain import ChainRun, UsageScope, chain_apply_budget, chain_for_tenant
from tests import factories
from tests.support.openai_standin import Reply, Status

MID_NOVEMBER = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def spend(tenant, cost: str, *, at: datetime | None = None) -> None:
    """A past provider call of `tenant` costing `cost` USD, made at `at`."""
    with time_machine.travel(at or datetime.now(UTC), tick=False):
        record_provider_call(
            tenant_id=tenant.id, kind="llm", provider="openai", model="gpt-4o", cost=Decimal(cost)
        )


def online_model(settings, standin, *, tenant, position: int, name: str, prompt: str, completion: str):
    settings.TEST_LLM_BASE_URL = standin.base_url
    settings.TEST_LLM_API_KEY = "sk-test-key"
    return factories.LLMModelFactory(
        tenant=tenant,
        position=position,
        provider="openai",
        model_name=name,
        base_url_setting="TEST_LLM_BASE_URL",
        api_key_setting="TEST_LLM_API_KEY",
        price_per_1k_prompt_tokens=Decimal(prompt),
        price_per_1k_completion_tokens=Decimal(completion),
    )


def offline_model(*, tenant, position: int):
    return factories.LLMModelFactory(
        tenant=tenant,
        position=position,
        provider="offline",
        model_name="offline-socratic",
        base_url_setting="",
        api_key_setting="",
    )


async def run_chain(chain: list[ModelSpec], scope: UsageScope) -> ChainRun:
    async def no_sleep(delay: float) -> None:
        return None

    run = ChainRun(
        chain=chain,
        request=LLMRequest(messages=[{"role": "user", "content": "What is a loop?"}], model=""),
        scope=scope,
        sleep=no_sleep,
    )
    async with run:
        async for _ in run:
            pass
    return run


# --- Usage events ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_reply_records_its_tokens_and_cost_at_the_admin_s_prices(
    openai_standin, settings, tenant, course, student
):
    await database_sync_to_async(online_model)(
        settings, openai_standin, tenant=tenant, position=1, name="model-a", prompt="0.5", completion="1.5"
    )
    conversation = await database_sync_to_async(factories.ConversationFactory)(course=course, student=student)
    chain = await database_sync_to_async(chain_for_tenant)(tenant_id=tenant.id)
    openai_standin.script(Reply("A loop repeats.", prompt_tokens=1000, completion_tokens=2000))

    scope = UsageScope(
        tenant_id=tenant.id, course_id=course.id, conversation_id=conversation.id, user_id=student.user_id
    )
    await run_chain(chain, scope)

    event = await database_sync_to_async(UsageEvent.objects.get)()
    assert (event.kind, event.provider, event.model, event.outcome) == ("llm", "openai", "model-a", "ok")
    assert (event.prompt_tokens, event.completion_tokens) == (1000, 2000)
    assert event.cost == Decimal("3.500000")  # 1k x $0.50 + 2k x $1.50
    assert (event.tenant_id, event.course_id, event.conversation_id, event.user_id) == (
        tenant.id,
        course.id,
        conversation.id,
        student.user_id,
    )
    assert event.latency_ms >= 0
    assert event.error == ""


@pytest.mark.django_db(transaction=True)
async def test_every_attempt_is_recorded_with_its_outcome(openai_standin, settings, tenant):
    settings.LLM_RETRIES_PER_MODEL = 1
    await database_sync_to_async(online_model)(
        settings, openai_standin, tenant=tenant, position=1, name="model-a", prompt="1", completion="1"
    )
    await database_sync_to_async(online_model)(
        settings, openai_standin, tenant=tenant, position=2, name="model-b", prompt="1", completion="1"
    )
    chain = await database_sync_to_async(chain_for_tenant)(tenant_id=tenant.id)
    openai_standin.script(Status(500), Status(429), Reply("Answer.", prompt_tokens=10, completion_tokens=20))

    await run_chain(chain, UsageScope(tenant_id=tenant.id))

    rows = await database_sync_to_async(
        lambda: list(UsageEvent.objects.order_by("id").values_list("model", "outcome", "error", "cost"))
    )()
    assert [(model, outcome) for model, outcome, _, _ in rows] == [
        ("model-a", "error"),
        ("model-a", "error"),
        ("model-b", "ok"),
    ]
    assert "500" in rows[0][2] and "429" in rows[1][2]
    assert rows[2][3] == Decimal("0.030000")


def test_the_receiver_truncates_long_error_text(tenant):
    record_provider_call(
        tenant_id=tenant.id, kind="llm", provider="openai", model="m", outcome="error", error="x" * 5000
    )
    assert len(UsageEvent.objects.get().error) == 2000


# --- Monthly spend ---------------------------------------------------------------------------------


def test_month_spend_counts_this_utc_calendar_month_only(tenant, other_tenant):
    spend(tenant, "4.00", at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC))  # last month
    spend(tenant, "1.25", at=datetime(2026, 11, 1, 0, 0, tzinfo=UTC))
    spend(tenant, "2.50", at=MID_NOVEMBER)
    spend(other_tenant, "99.00", at=MID_NOVEMBER)
    spend(tenant, "8.00", at=datetime(2026, 12, 1, 0, 0, tzinfo=UTC))  # next month

    assert tenant_month_spend(tenant.id, now=MID_NOVEMBER) == Decimal("3.75")
    assert tenant_month_spend(tenant.id, now=datetime(2026, 10, 5, tzinfo=UTC)) == Decimal("4.00")
    assert tenant_month_spend(factories.TenantFactory().id, now=MID_NOVEMBER) == Decimal(0)


# --- Budget ----------------------------------------------------------------------------------------


@pytest.fixture
def priced_chain(settings, openai_standin, tenant):
    online_model(
        settings, openai_standin, tenant=tenant, position=1, name="model-a", prompt="0.5", completion="1.5"
    )
    online_model(
        settings, openai_standin, tenant=tenant, position=2, name="model-b", prompt="0.1", completion="0.2"
    )
    offline_model(tenant=tenant, position=3)
    return chain_for_tenant(tenant_id=tenant.id)


def test_a_tenant_over_its_budget_gets_only_its_cheapest_model_and_a_notice(tenant, priced_chain):
    tenant.monthly_budget = Decimal("10.00")
    spend(tenant, "12.40", at=MID_NOVEMBER)
    with time_machine.travel(MID_NOVEMBER, tick=False):
        chain, notice = chain_apply_budget(chain=priced_chain, tenant=tenant)

    assert [spec.model_name for spec in chain] == ["offline-socratic"]
    assert notice == (
        "Monthly AI budget reached ($12.40 of $10.00): replies use offline-socratic until 1 December."
    )


def test_a_budget_reached_exactly_counts_as_reached(tenant, priced_chain):
    tenant.monthly_budget = Decimal("10.00")
    spend(tenant, "10.00", at=MID_NOVEMBER)
    with time_machine.travel(MID_NOVEMBER, tick=False):
        chain, notice = chain_apply_budget(chain=priced_chain, tenant=tenant)
    assert len(chain) == 1 and notice


def test_under_budget_or_without_one_the_chain_is_unchanged(tenant, priced_chain):
    spend(tenant, "9.99", at=MID_NOVEMBER)
    with time_machine.travel(MID_NOVEMBER, tick=False):
        tenant.monthly_budget = Decimal("10.00")
        assert chain_apply_budget(chain=priced_chain, tenant=tenant) == (priced_chain, "")
        tenant.monthly_budget = None
        assert chain_apply_budget(chain=priced_chain, tenant=tenant) == (priced_chain, "")


def test_last_month_s_spend_does_not_count(tenant, priced_chain):
    tenant.monthly_budget = Decimal("10.00")
    spend(tenant, "50.00", at=datetime(2026, 10, 30, tzinfo=UTC))
    spend(tenant, "1.00", at=datetime(2026, 12, 2, tzinfo=UTC))
    with time_machine.travel(datetime(2026, 12, 3, tzinfo=UTC), tick=False):
        assert chain_apply_budget(chain=priced_chain, tenant=tenant) == (priced_chain, "")


def test_the_notice_in_december_names_january(tenant, priced_chain):
    tenant.monthly_budget = Decimal("0")
    with time_machine.travel(datetime(2026, 12, 20, tzinfo=UTC), tick=False):
        _, notice = chain_apply_budget(chain=priced_chain, tenant=tenant)
    assert notice.endswith("until 1 January.")


def test_the_cheapest_model_is_chosen_among_usable_entries_only(settings, openai_standin, tenant):
    online_model(
        settings, openai_standin, tenant=tenant, position=1, name="model-a", prompt="0.5", completion="1.5"
    )
    online_model(
        settings, openai_standin, tenant=tenant, position=2, name="model-b", prompt="0.1", completion="0.2"
    )
    factories.LLMModelFactory(
        tenant=tenant, position=3, model_name="free-but-unkeyed", api_key_setting="NO_SUCH_KEY"
    )
    tenant.monthly_budget = Decimal("1.00")
    spend(tenant, "2.00")

    chain, notice = chain_apply_budget(chain=chain_for_tenant(tenant_id=tenant.id), tenant=tenant)
    assert [spec.model_name for spec in chain] == ["model-b"]
    assert "replies use model-b" in notice


@pytest.mark.django_db(transaction=True)
async def test_an_over_budget_tenant_is_served_by_its_cheapest_model_only(openai_standin, settings, tenant):
    def prepare():
        online_model(
            settings,
            openai_standin,
            tenant=tenant,
            position=1,
            name="model-a",
            prompt="0.5",
            completion="1.5",
        )
        online_model(
            settings,
            openai_standin,
            tenant=tenant,
            position=2,
            name="model-b",
            prompt="0.1",
            completion="0.2",
        )
        tenant.monthly_budget = Decimal("5.00")
        tenant.save()
        spend(tenant, "6.00")
        return chain_apply_budget(chain=chain_for_tenant(tenant_id=tenant.id), tenant=tenant)

    chain, notice = await database_sync_to_async(prepare)()
    openai_standin.script(Reply("Cheap answer."))
    run = await run_chain(chain, UsageScope(tenant_id=tenant.id))

    assert [sent["model"] for sent in openai_standin.requests] == ["model-b"]
    assert run.result is not None and run.result.text == "Cheap answer."
    assert notice.startswith("Monthly AI budget reached ($6.00 of $5.00): replies use model-b until 1 ")
