"""Admin for analytics and provider usage: records that a tenant's staff read and do not edit."""

from __future__ import annotations

import io
import zipfile
from decimal import Decimal

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from analytics import usage as usage_reports
from analytics.charts import Bar, bar_chart
from analytics.data_rights import student_data_erase, student_data_export_zip
from analytics.models import (
    BudgetAlert,
    DataRightsAudit,
    SessionAnalytics,
    StudentProgress,
    UsageDaily,
    UsageEvent,
)
from courses.admin_scoping import ScopedModelForm, TenantScopedAdminMixin, is_tenant_staff
from courses.models import Student, Tenant


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


# --- usage report, budget alerts, data rights (an-ops) -----------------------------------------


def _totals_row(label: str, totals: usage_reports.UsageTotals) -> dict:
    return {
        "label": label, "calls": totals.calls, "errors": totals.errors, "tokens": totals.tokens,
        "prompt_tokens": totals.prompt_tokens, "completion_tokens": totals.completion_tokens,
        "stt_minutes": totals.stt_minutes, "tts_characters": int(totals.tts_characters),
        "cost": format_usd(totals.cost),
    }


@admin.register(UsageDaily)
class UsageDailyAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """The roll-up (the nightly task writes it; tenant staff read it) and the usage report."""

    form = ScopedModelForm
    tenant_staff_read_only = True
    change_list_template = "admin/analytics/usagedaily/change_list.html"
    list_display = ("day", "tenant", "course", "kind", "provider", "model", "calls", "errors", "tokens", "units", "cost_usd")
    list_filter = ("kind", "provider", "tenant")
    list_select_related = ("tenant", "course")
    date_hierarchy = "day"
    search_fields = ("provider", "model")

    @admin.display(description="cost", ordering="cost")
    def cost_usd(self, obj: UsageDaily) -> str:
        return format_usd(obj.cost)

    @admin.display(description="tokens (prompt + completion)")
    def tokens(self, obj: UsageDaily) -> str:
        return f"{obj.prompt_tokens} + {obj.completion_tokens}"

    def get_urls(self):
        return [
            path("report/", self.admin_site.admin_view(self.usage_report_view), name="analytics_usage_report"),
            *super().get_urls(),
        ]

    def usage_report_view(self, request: HttpRequest) -> HttpResponse:
        """A month of usage: per kind, per course, cost per day. Tenant staff: their tenant only."""
        user = request.user
        if not (user.is_superuser or is_tenant_staff(user) or self.has_view_permission(request)):
            raise PermissionDenied
        errors: list[str] = []
        try:
            month = usage_reports.parse_month(request.GET.get("month"))
        except ValueError:
            errors.append("Month must look like 2026-11.")
            month = usage_reports.parse_month(None)
        tenant = None
        raw_tenant = request.GET.get("tenant", "")
        if user.is_superuser:
            if raw_tenant:
                if not (raw_tenant.isascii() and raw_tenant.isdigit()):
                    errors.append("Tenant must be a tenant's id.")
                else:
                    tenant = Tenant.objects.filter(pk=int(raw_tenant)).first()
                    if tenant is None:
                        raise Http404("No such tenant.")
        else:
            if raw_tenant and raw_tenant != str(user.tenant_id):
                raise Http404("No such tenant.")
            tenant = Tenant.objects.filter(pk=user.tenant_id).first()
            if tenant is None:
                raise PermissionDenied
        report = usage_reports.usage_month_report(tenant_id=tenant.pk if tenant else None, month=month)
        kind_labels = dict(UsageEvent.Kind.choices)
        chart = bar_chart(
            bars=[
                Bar(label=f"{day:%d %b}", value=float(cost), note=f"{day:%d %b %Y}: {format_usd(cost)}")
                for day, cost in report.cost_by_day.items()
            ],
            title=f"Cost per day, {month:%B %Y} (USD)",
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Usage report: {tenant.name if tenant else 'all tenants'}, {month:%B %Y}",
            "tenant": tenant,
            "tenants": Tenant.objects.only("pk", "name") if user.is_superuser else None,
            "month": month,
            "month_value": f"{month:%Y-%m}",
            "errors": errors,
            "totals": _totals_row("Total", report.totals),
            "by_kind": [_totals_row(kind_labels.get(k, k), t) for k, t in sorted(report.by_kind.items())],
            "by_course": [
                _totals_row(report.course_labels.get(pk, f"Course {pk}"), t)
                for pk, t in sorted(report.by_course.items(), key=lambda item: -item[1].cost)
            ],
            "chart": chart,
            "budget": tenant.monthly_budget if tenant else None,
        }
        return TemplateResponse(request, "admin/analytics/usage_report.html", context, status=400 if errors else 200)


def usage_report_url(tenant_id: int | None = None) -> str:
    url = reverse("admin:analytics_usage_report")
    return f"{url}?tenant={tenant_id}" if tenant_id else url


@admin.register(BudgetAlert)
class BudgetAlertAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    tenant_staff_read_only = True
    list_display = ("month", "tenant", "threshold", "spend", "budget", "recipients", "sent_at")
    list_filter = ("threshold", "tenant")
    list_select_related = ("tenant",)


@admin.register(DataRightsAudit)
class DataRightsAuditAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """The record of exports and erasures: tenant staff read it, nobody deletes it in the admin."""

    form = ScopedModelForm
    tenant_staff_read_only = True
    list_display = ("created_at", "tenant", "action", "student_id", "by_username", "counts")
    list_filter = ("action", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("=student_id", "by_username")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


# --- data-rights actions on the Student admin ---------------------------------------------------
# Added from here because `courses` never imports `analytics` (STYLE.md, direction of dependencies).


def _may_use_data_rights(request: HttpRequest) -> bool:
    if request.user.is_superuser or is_tenant_staff(request.user):
        return True
    messages.error(request, "Only your institution's staff can export or erase a student's data.")
    return False


@admin.action(description="Export data (zip)")
def student_data_export_action(modeladmin, request: HttpRequest, queryset):
    if not _may_use_data_rights(request):
        return None
    students = list(queryset.select_related("user", "tenant"))
    if len(students) == 1:
        body, filename = student_data_export_zip(student=students[0], by=request.user), f"student-{students[0].pk}-export.zip"
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for student in students:
                archive.writestr(f"student-{student.pk}-export.zip", student_data_export_zip(student=student, by=request.user))
        body, filename = buffer.getvalue(), "students-export.zip"
    response = HttpResponse(body, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _erase_action(mode: str, description: str):
    def action(modeladmin, request: HttpRequest, queryset):
        if not _may_use_data_rights(request):
            return None
        students = list(queryset.select_related("user"))
        if request.POST.get("confirm") == "yes":
            for student in students:
                student_data_erase(student=student, by=request.user, mode=mode)
            messages.success(request, f"{description}: done for {len(students)} student(s); see the data rights audit.")
            return None
        return TemplateResponse(request, "admin/analytics/data_rights_confirm.html", {
            **modeladmin.admin_site.each_context(request),
            "title": f"{description}?", "opts": modeladmin.model._meta, "students": students, "mode": mode,
            "action": action.__name__, "action_checkbox_name": ACTION_CHECKBOX_NAME,
        })

    action.__name__ = f"student_data_{mode}_action"
    return admin.action(description=description)(action)


student_data_anonymise_action = _erase_action("anonymise", "Anonymise (erase personal data, keep the account)")
student_data_delete_action = _erase_action("delete", "Delete (erase personal data and the account)")

_student_admin = admin.site.get_model_admin(Student)
_student_admin.actions = [
    *(_student_admin.actions or ()),
    student_data_export_action, student_data_anonymise_action, student_data_delete_action,
]
