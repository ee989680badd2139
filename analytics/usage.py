"""Usage and cost: the nightly roll-up, monthly reports, and budget alerts.

`usage_rollup` replaces one UTC day of `UsageDaily` rows with one aggregate query over that day's
`UsageEvent`s, so running it twice (or again after late events) gives the same rows. Reports read
finished days from the roll-up and today from the live events, so they never wait for the night.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from analytics.models import BudgetAlert, UsageDaily, UsageEvent
from courses.models import Course, Tenant, User
from courses.usage import month_start, next_month_start, tenant_month_spend

logger = logging.getLogger(__name__)

BUDGET_THRESHOLDS = (80, 100)
_GROUP = ("tenant_id", "course_id", "kind", "provider", "model")


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _today(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(UTC).date()


def _aggregate(queryset, group: tuple[str, ...]):
    return (
        queryset.order_by()
        .values(*group)
        .annotate(
            calls_=Count("pk"),
            errors_=Count("pk", filter=~Q(outcome=UsageEvent.Outcome.OK)),
            prompt_tokens_=Sum("prompt_tokens"),
            completion_tokens_=Sum("completion_tokens"),
            units_=Sum("units"),
            cost_=Sum("cost"),
        )
    )


# --- roll-up ------------------------------------------------------------------------------------


def usage_rollup(*, day: date | None = None, now: datetime | None = None) -> int:
    """Recompute `day`'s UsageDaily rows (default: yesterday, UTC) from its UsageEvents. Idempotent:
    the day's rows are replaced in one transaction. Returns the number of rows written."""
    day = day or (_today(now) - timedelta(days=1))
    start, end = _day_bounds(day)
    rows = _aggregate(UsageEvent.objects.filter(created_at__gte=start, created_at__lt=end), _GROUP)
    daily = [
        UsageDaily(
            tenant_id=row["tenant_id"], course_id=row["course_id"], day=day, kind=row["kind"],
            provider=row["provider"], model=row["model"], calls=row["calls_"], errors=row["errors_"],
            prompt_tokens=row["prompt_tokens_"] or 0, completion_tokens=row["completion_tokens_"] or 0,
            units=row["units_"] or 0, cost=row["cost_"] or 0,
        )
        for row in rows
    ]
    with transaction.atomic():
        UsageDaily.objects.filter(day=day).delete()
        UsageDaily.objects.bulk_create(daily, batch_size=500)
    logger.info("usage roll-up of %s: %d rows", day, len(daily))
    return len(daily)


# --- reports ------------------------------------------------------------------------------------


@dataclass
class UsageTotals:
    calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stt_seconds: Decimal = Decimal(0)
    tts_characters: Decimal = Decimal(0)
    units: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def stt_minutes(self) -> Decimal:
        return (self.stt_seconds / 60).quantize(Decimal("0.01"))

    def add(self, row: dict) -> None:
        self.calls += row["calls"]
        self.errors += row["errors"]
        self.prompt_tokens += row["prompt_tokens"]
        self.completion_tokens += row["completion_tokens"]
        self.units += row["units"]
        self.cost += row["cost"]
        if row["kind"] == UsageEvent.Kind.STT:
            self.stt_seconds += row["units"]
        elif row["kind"] == UsageEvent.Kind.TTS:
            self.tts_characters += row["units"]


@dataclass
class UsageReport:
    """A month of usage for one tenant (or every tenant: `tenant_id` None)."""

    tenant_id: int | None
    month: date
    totals: UsageTotals = field(default_factory=UsageTotals)
    by_kind: dict[str, UsageTotals] = field(default_factory=dict)
    by_course: dict[int | None, UsageTotals] = field(default_factory=dict)
    course_labels: dict[int | None, str] = field(default_factory=dict)
    cost_by_day: dict[date, Decimal] = field(default_factory=dict)


def parse_month(value: str | None, *, now: datetime | None = None) -> date:
    """"2026-11" -> date(2026, 11, 1); empty: the current month. ValueError for anything else."""
    if not value:
        return month_start(now).date()
    parsed = datetime.strptime(value, "%Y-%m")
    if not 2000 <= parsed.year <= 2999:
        raise ValueError("year out of range")
    return parsed.date()


def usage_month_report(
    *, tenant_id: int | None, month: date, course_id: int | None = None, now: datetime | None = None
) -> UsageReport:
    """Usage of `month` (a tenant's, every tenant's with None; one course's with `course_id`)
    from the roll-up (finished days) plus today's live events. Three queries."""
    now = now or timezone.now()
    start = datetime.combine(month, time.min, tzinfo=UTC)
    end = next_month_start(start)
    today_start = datetime.combine(_today(now), time.min, tzinfo=UTC)
    report = UsageReport(tenant_id=tenant_id, month=month)
    rows: list[dict] = []

    rolled = UsageDaily.objects.filter(day__gte=start.date(), day__lt=min(end, today_start).date())
    live = UsageEvent.objects.filter(created_at__gte=max(start, today_start), created_at__lt=end)
    if tenant_id is not None:
        rolled, live = rolled.filter(tenant_id=tenant_id), live.filter(tenant_id=tenant_id)
    if course_id is not None:
        rolled, live = rolled.filter(course_id=course_id), live.filter(course_id=course_id)
    for row in rolled.order_by().values("course_id", "kind", "day").annotate(
        calls_=Sum("calls"), errors_=Sum("errors"), prompt_tokens_=Sum("prompt_tokens"),
        completion_tokens_=Sum("completion_tokens"), units_=Sum("units"), cost_=Sum("cost"),
    ):
        rows.append(row)
    if today_start < end:
        for row in _aggregate(live, ("course_id", "kind")):
            rows.append({**row, "day": today_start.date()})

    by_day: dict[date, Decimal] = defaultdict(Decimal)
    for raw in rows:
        row = {
            "kind": raw["kind"], "calls": raw["calls_"] or 0, "errors": raw["errors_"] or 0,
            "prompt_tokens": raw["prompt_tokens_"] or 0, "completion_tokens": raw["completion_tokens_"] or 0,
            "units": raw["units_"] or Decimal(0), "cost": raw["cost_"] or Decimal(0),
        }
        report.totals.add(row)
        report.by_kind.setdefault(raw["kind"], UsageTotals()).add(row)
        report.by_course.setdefault(raw["course_id"], UsageTotals()).add(row)
        by_day[raw["day"]] += row["cost"]
    report.cost_by_day = dict(sorted(by_day.items()))
    course_ids = [pk for pk in report.by_course if pk is not None]
    report.course_labels = {
        pk: f"{code} {title}" for pk, code, title in Course.objects.filter(pk__in=course_ids).values_list("pk", "code", "title")
    } if course_ids else {}
    report.course_labels[None] = "No course"
    return report


# --- budget alerts ------------------------------------------------------------------------------


def budget_check(*, now: datetime | None = None) -> list[BudgetAlert]:
    """E-mail each tenant's staff when the month's provider spend passes 80 % and 100 % of
    `Tenant.monthly_budget`; once per tenant, month and threshold (a `BudgetAlert` row, unique).
    A jump past both thresholds sends only the 100 % mail and records both. A mail that fails
    leaves that tenant's rows unwritten (the next run retries); the other tenants are still
    checked, and the first failure is raised at the end (the task shows as failed)."""
    now = now or timezone.now()
    month = month_start(now).date()
    sent: list[BudgetAlert] = []
    failure: Exception | None = None
    tenants = Tenant.objects.filter(is_active=True, monthly_budget__isnull=False, monthly_budget__gt=0).order_by("pk")
    for tenant in tenants:
        spend = tenant_month_spend(tenant.pk, now=now)
        crossed = [t for t in BUDGET_THRESHOLDS if spend >= tenant.monthly_budget * t / 100]
        if not crossed:
            continue
        done = set(
            BudgetAlert.objects.filter(tenant=tenant, month=month, threshold__in=crossed).values_list("threshold", flat=True)
        )
        new = [t for t in crossed if t not in done]
        if not new:
            continue
        recipients = list(
            User.objects.filter(tenant=tenant, role=User.Role.STAFF, is_active=True)
            .exclude(email="").values_list("email", flat=True)
        )
        top = max(new)
        try:
            with transaction.atomic():
                alerts = [
                    BudgetAlert.objects.create(
                        tenant=tenant, month=month, threshold=t, spend=spend, budget=tenant.monthly_budget,
                        recipients=len(recipients) if t == top else 0,
                    )
                    for t in new
                ]
                # Inside the transaction: a mail server that fails rolls the rows back, and the next
                # hourly run tries again.
                if recipients:
                    send_mail(
                        subject=f"[AI Professor] {tenant.name}: {top} % of the monthly budget used",
                        message=(
                            f"Provider spend for {tenant.name} in {month:%B %Y} is ${spend:.2f}, "
                            f"{top} % or more of the monthly budget of ${tenant.monthly_budget:.2f}.\n"
                        ),
                        from_email=settings.DEFAULT_FROM_EMAIL,
                        recipient_list=recipients,
                    )
                else:
                    logger.warning("budget alert for tenant %s: no staff with an e-mail address", tenant.pk)
        except IntegrityError:
            # Another worker recorded (and mailed) this alert a moment ago.
            logger.info("budget alert for tenant %s already recorded", tenant.pk)
            continue
        except Exception as exc:  # the mail failed: rolled back, retried next run; go on with the others
            logger.exception("budget alert for tenant %s could not be sent", tenant.pk)
            failure = failure or exc
            continue
        sent.extend(alerts)
    if failure is not None:
        raise failure
    return sent
