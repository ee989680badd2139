"""Admin for analytics and provider usage: records that a tenant's staff read and do not edit."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin

from analytics.models import SessionAnalytics, StudentProgress, UsageEvent
from courses.admin_scoping import ScopedModelForm, TenantScopedAdminMixin


def format_usd(amount: Decimal) -> str:
    """$1,234.50, $0.0042: cents always, and the fractions of a cent a token price produces."""
    text = f"{amount:,.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def format_ms(milliseconds: int) -> str:
    minutes, seconds = divmod(milliseconds // 1000, 60)
    return f"{minutes}:{seconds:02d}"


@admin.register(StudentProgress)
class StudentProgressAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    tenant_path = "session__tenant"
    tenant_staff_read_only = True
    list_display = (
        "student", "session", "talk_time", "turns", "questions_asked", "hints_needed", "engagement_score",
        "version", "computed_at",
    )
    list_filter = (("session", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("student__user", "session")
    search_fields = ("student__user__username", "student__user__last_name", "session__title")
    date_hierarchy = "computed_at"
    autocomplete_fields = ("session", "student")

    @admin.display(description="talk time", ordering="talk_time_ms")
    def talk_time(self, obj: StudentProgress) -> str:
        return format_ms(obj.talk_time_ms)

    @admin.display(description="turns")
    def turns(self, obj: StudentProgress) -> int:
        return obj.turns


@admin.register(SessionAnalytics)
class SessionAnalyticsAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    tenant_path = "session__tenant"
    tenant_staff_read_only = True
    list_display = ("session", "status", "progress", "summary_offline", "version", "computed_at")
    list_filter = ("status", "summary_offline")
    list_select_related = ("session",)
    search_fields = ("session__title", "summary")
    date_hierarchy = "computed_at"
    autocomplete_fields = ("session",)


@admin.register(UsageEvent)
class UsageEventAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    tenant_staff_read_only = True
    list_display = (
        "created_at", "tenant", "kind", "provider", "model", "tokens", "units", "cost_usd", "latency_ms",
        "outcome",
    )
    list_filter = ("kind", "outcome", "provider", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("model", "provider", "error")
    date_hierarchy = "created_at"
    autocomplete_fields = ("course", "session", "conversation", "user")
    readonly_fields = ("created_at",)

    @admin.display(description="cost", ordering="cost")
    def cost_usd(self, obj: UsageEvent) -> str:
        return format_usd(obj.cost)

    @admin.display(description="tokens (prompt + completion)")
    def tokens(self, obj: UsageEvent) -> str:
        return f"{obj.prompt_tokens} + {obj.completion_tokens}"
