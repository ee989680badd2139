"""Usage roll-up, monthly report (selector and admin page), budget alerts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from analytics import usage
from analytics.models import BudgetAlert, UsageDaily, UsageEvent
from analytics.tasks import budget_check as budget_check_task
from analytics.tasks import usage_rollup as usage_rollup_task
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def event(tenant, at: datetime, **kwargs) -> UsageEvent:
    """A usage event at `at` (created_at is auto_now_add: set it afterwards)."""
    row = factories.UsageEventFactory(tenant=tenant, **kwargs)
    UsageEvent.objects.filter(pk=row.pk).update(created_at=at)
    return row


def test_rollup_sums_a_day_per_tenant_course_kind_provider_model(tenant, course, other_tenant):
    day = datetime(2026, 11, 19, 10, tzinfo=UTC)
    event(tenant, day, course=course, prompt_tokens=100, completion_tokens=20, cost=Decimal("0.01"))
    event(tenant, day, course=course, prompt_tokens=50, completion_tokens=5, cost=Decimal("0.02"),
          outcome=UsageEvent.Outcome.ERROR)
    event(tenant, day, course=course, kind="stt", provider="deepgram", model="nova", units=Decimal("90"),
          cost=Decimal("0.5"))
    event(tenant, day, kind="llm")  # no course
    event(other_tenant, day, cost=Decimal("1"))
    event(tenant, datetime(2026, 11, 20, 0, 0, tzinfo=UTC), cost=Decimal("9"))  # the next day
    event(tenant, datetime(2026, 11, 18, 23, 59, 59, tzinfo=UTC), cost=Decimal("9"))  # the day before

    assert usage.usage_rollup(day=date(2026, 11, 19)) == 4
    llm = UsageDaily.objects.get(tenant=tenant, course=course, kind="llm")
    assert (llm.calls, llm.errors, llm.prompt_tokens, llm.completion_tokens, llm.cost) == (
        2, 1, 150, 25, Decimal("0.03")
    )
    stt = UsageDaily.objects.get(tenant=tenant, kind="stt")
    assert (stt.provider, stt.model, stt.units, stt.cost) == ("deepgram", "nova", Decimal("90"), Decimal("0.5"))
    assert UsageDaily.objects.get(tenant=tenant, course=None).calls == 1
    assert UsageDaily.objects.get(tenant=other_tenant).cost == Decimal("1")


def test_rollup_is_idempotent_and_picks_up_late_events(tenant, course):
    day = datetime(2026, 11, 19, 10, tzinfo=UTC)
    event(tenant, day, course=course, cost=Decimal("0.01"))
    usage.usage_rollup(day=date(2026, 11, 19))
    usage.usage_rollup(day=date(2026, 11, 19))
    assert UsageDaily.objects.get().calls == 1
    event(tenant, day, course=course, cost=Decimal("0.02"))
    usage_rollup_task.delay("2026-11-19")
    row = UsageDaily.objects.get()
    assert (row.calls, row.cost) == (2, Decimal("0.03"))


def test_rollup_task_defaults_to_yesterday(tenant):
    event(tenant, datetime(2026, 11, 19, 10, tzinfo=UTC))
    event(tenant, datetime(2026, 11, 20, 10, tzinfo=UTC))
    with time_machine.travel(NOW, tick=False):
        usage_rollup_task.delay()
    assert list(UsageDaily.objects.values_list("day", flat=True)) == [date(2026, 11, 19)]


def test_month_report_adds_todays_live_events_to_the_rollup(tenant, course, other_tenant):
    event(tenant, datetime(2026, 11, 2, tzinfo=UTC), course=course, prompt_tokens=10, completion_tokens=5,
          cost=Decimal("1"))
    event(tenant, datetime(2026, 11, 3, tzinfo=UTC), kind="tts", provider="piper", units=Decimal("1200"),
          cost=Decimal("0.5"))
    event(tenant, datetime(2026, 10, 31, 23, tzinfo=UTC), cost=Decimal("100"))  # last month
    event(other_tenant, datetime(2026, 11, 2, tzinfo=UTC), cost=Decimal("100"))
    usage.usage_rollup(day=date(2026, 11, 2))
    usage.usage_rollup(day=date(2026, 11, 3))
    usage.usage_rollup(day=date(2026, 10, 31))
    # Today: not rolled up yet, counted live.
    event(tenant, datetime(2026, 11, 20, 9, tzinfo=UTC), course=course, kind="stt", units=Decimal("120"),
          cost=Decimal("2"))

    report = usage.usage_month_report(tenant_id=tenant.pk, month=date(2026, 11, 1), now=NOW)

    assert report.totals.cost == Decimal("3.5")
    assert report.totals.tokens == 15
    assert report.totals.stt_minutes == Decimal("2.00")
    assert report.totals.tts_characters == Decimal("1200")
    assert report.by_course[course.pk].cost == Decimal("3")
    assert report.by_course[None].cost == Decimal("0.5")
    assert set(report.by_kind) == {"llm", "tts", "stt"}
    assert report.cost_by_day == {
        date(2026, 11, 2): Decimal("1"), date(2026, 11, 3): Decimal("0.5"), date(2026, 11, 20): Decimal("2"),
    }
    everyone = usage.usage_month_report(tenant_id=None, month=date(2026, 11, 1), now=NOW)
    assert everyone.totals.cost == Decimal("103.5")
    one_course = usage.usage_month_report(tenant_id=tenant.pk, course_id=course.pk, month=date(2026, 11, 1), now=NOW)
    assert (one_course.totals.cost, one_course.totals.stt_minutes) == (Decimal("3"), Decimal("2.00"))


def test_a_rolled_up_today_is_not_counted_twice(tenant):
    event(tenant, datetime(2026, 11, 20, 9, tzinfo=UTC), cost=Decimal("2"))
    usage.usage_rollup(day=date(2026, 11, 20))
    report = usage.usage_month_report(tenant_id=tenant.pk, month=date(2026, 11, 1), now=NOW)
    assert report.totals.cost == Decimal("2")


@pytest.mark.parametrize("value", ["2026-13", "nope", "26-11", "1999-01"])
def test_parse_month_refuses_bad_values(value):
    with pytest.raises(ValueError):
        usage.parse_month(value)


# --- the admin page -----------------------------------------------------------------------------


def report_url(**params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("admin:analytics_usage_report") + (f"?{query}" if query else "")


@time_machine.travel(NOW, tick=False)
def test_tenant_staff_see_their_own_tenants_report_only(client, staff_user, tenant, course, other_tenant):
    factories.UsageEventFactory(tenant=tenant, course=course, cost=Decimal("1.25"))
    factories.UsageEventFactory(tenant=other_tenant, cost=Decimal("7.77"))
    client.force_login(staff_user)

    page = client.get(report_url(month="2026-11"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "$1.25" in html and "$7.77" not in html
    assert "<svg" in html and course.code in html
    assert client.get(report_url(month="2026-11", tenant=other_tenant.pk)).status_code == 404


@time_machine.travel(NOW, tick=False)
def test_superuser_sees_all_tenants_or_one(client, superuser, tenant, other_tenant):
    factories.UsageEventFactory(tenant=tenant, cost=Decimal("1.25"))
    factories.UsageEventFactory(tenant=other_tenant, cost=Decimal("7.75"))
    client.force_login(superuser)
    assert "$9.00" in client.get(report_url()).content.decode()
    assert "$7.75" in client.get(report_url(tenant=other_tenant.pk)).content.decode()
    assert client.get(report_url(tenant=999999)).status_code == 404
    assert client.get(report_url(tenant="%C2%B2")).status_code == 400  # "²": isdigit(), yet no int


def test_report_answers_a_bad_month_with_a_form_error(client, staff_user):
    client.force_login(staff_user)
    page = client.get(report_url(month="2026-99"))
    assert page.status_code == 400
    assert "Month must look like" in page.content.decode()


def test_professors_cannot_open_the_report(client, professor):
    professor.user.is_staff = True
    professor.user.save()
    client.force_login(professor.user)
    assert client.get(report_url()).status_code == 403


def test_report_is_linked_from_the_app_index_and_the_tenant_page(client, staff_user, tenant):
    client.force_login(staff_user)
    link = reverse("admin:analytics_usage_report")
    assert link in client.get(reverse("admin:app_list", args=["analytics"])).content.decode()
    tenant_page = client.get(reverse("admin:courses_tenant_change", args=[tenant.pk])).content.decode()
    assert f"{link}?tenant={tenant.pk}" in tenant_page


def test_report_query_count_is_flat(client, superuser, django_assert_max_num_queries):
    for n in range(5):
        tenant = factories.TenantFactory()
        course = factories.CourseFactory(tenant=tenant)
        factories.UsageEventFactory(tenant=tenant, course=course, cost=Decimal(n))
    client.force_login(superuser)
    with django_assert_max_num_queries(12):
        assert client.get(report_url()).status_code == 200


# --- budget alerts ------------------------------------------------------------------------------


@pytest.fixture
def budget_tenant(tenant, staff_user):
    tenant.monthly_budget = Decimal("10.00")
    tenant.save()
    staff_user.email = "boss@example.org"
    staff_user.save()
    return tenant


def spend(tenant, amount: str, at: datetime = NOW) -> None:
    event(tenant, at, cost=Decimal(amount))


def test_budget_alert_at_80_then_100_percent_once_each(budget_tenant, other_tenant):
    factories.StaffUserFactory(tenant=other_tenant, email="other@example.org")
    spend(budget_tenant, "7.99")
    with time_machine.travel(NOW, tick=False):
        assert usage.budget_check() == []
        spend(budget_tenant, "0.01")
        assert [a.threshold for a in usage.budget_check()] == [80]
        assert usage.budget_check() == []
        spend(budget_tenant, "2.00")
        budget_check_task.delay()
        budget_check_task.delay()
    assert len(mail.outbox) == 2
    assert mail.outbox[0].to == ["boss@example.org"]
    assert "80 %" in mail.outbox[0].subject and "100 %" in mail.outbox[1].subject
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [80, 100]


def test_jumping_past_both_thresholds_sends_one_mail_and_records_both(budget_tenant):
    spend(budget_tenant, "12")
    with time_machine.travel(NOW, tick=False):
        usage.budget_check()
    assert len(mail.outbox) == 1 and "100 %" in mail.outbox[0].subject
    assert BudgetAlert.objects.count() == 2


def test_a_new_month_alerts_again_and_last_months_spend_does_not_count(budget_tenant):
    spend(budget_tenant, "9", at=datetime(2026, 10, 20, tzinfo=UTC))
    with time_machine.travel(datetime(2026, 10, 25, tzinfo=UTC), tick=False):
        usage.budget_check()
    with time_machine.travel(NOW, tick=False):
        assert usage.budget_check() == []
        spend(budget_tenant, "8.5")
        usage.budget_check()
    assert list(BudgetAlert.objects.order_by("month").values_list("month", "threshold")) == [
        (date(2026, 10, 1), 80), (date(2026, 11, 1), 80),
    ]


def test_a_failing_mail_server_leaves_no_record_so_the_next_run_retries(budget_tenant, monkeypatch):
    spend(budget_tenant, "9")

    def broken(**kwargs):
        raise OSError("mail server down")

    monkeypatch.setattr(usage, "send_mail", broken)
    with time_machine.travel(NOW, tick=False), pytest.raises(OSError):
        usage.budget_check()
    assert not BudgetAlert.objects.exists()
    monkeypatch.undo()
    with time_machine.travel(NOW, tick=False):
        usage.budget_check()
    assert BudgetAlert.objects.count() == 1 and len(mail.outbox) == 1


def test_one_tenants_failing_mail_does_not_stop_the_other_tenants_alerts(budget_tenant, other_tenant, monkeypatch):
    """A mail refused for one tenant (a bad address, say) is retried next run; the other tenants
    checked in the same run are still alerted."""
    other_tenant.monthly_budget = Decimal("10.00")
    other_tenant.save()
    factories.StaffUserFactory(tenant=other_tenant, email="other@example.org")
    spend(budget_tenant, "9")
    spend(other_tenant, "9")
    real = usage.send_mail

    def refuses_boss(**kwargs):
        if "boss@example.org" in kwargs["recipient_list"]:
            raise OSError("recipient refused")
        return real(**kwargs)

    monkeypatch.setattr(usage, "send_mail", refuses_boss)
    with time_machine.travel(NOW, tick=False), pytest.raises(OSError):
        usage.budget_check()
    assert list(BudgetAlert.objects.values_list("tenant_id", flat=True)) == [other_tenant.pk]
    assert [m.to for m in mail.outbox] == [["other@example.org"]]


def test_tenants_without_a_budget_are_never_alerted(tenant, staff_user):
    spend(tenant, "1000")
    with time_machine.travel(NOW, tick=False):
        assert usage.budget_check() == []


def test_rollup_command_backfills_and_refuses_bad_input(tenant):
    from io import StringIO

    from django.core.management import CommandError, call_command

    event(tenant, datetime(2026, 11, 18, 10, tzinfo=UTC))
    event(tenant, datetime(2026, 11, 19, 10, tzinfo=UTC))
    out = StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("usage_rollup", "--days", "3", stdout=out)
    assert "2026-11-17: 0 rows" in out.getvalue() and "2026-11-19: 1 rows" in out.getvalue()
    assert UsageDaily.objects.count() == 2
    call_command("usage_rollup", "--day", "2026-11-18", stdout=StringIO())
    assert UsageDaily.objects.count() == 2
    for bad in (["--day", "yesterday"], ["--days", "-1"], ["--day", "2026-11-18", "--days", "2"]):
        with pytest.raises(CommandError):
            call_command("usage_rollup", *bad, stdout=StringIO())
