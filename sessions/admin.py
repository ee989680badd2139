"""Admin for personas, prompt templates, the LLM chain, live sessions, transcripts and conversations.

Scoping (a tenant's staff see their tenant's rows, and global personas, prompts and models
read-only) comes from `courses.admin_scoping`. Prompt templates are versioned: the admin never
edits a version number or the active flag by hand, it publishes a new version or activates one,
each in one transaction that keeps the database's one-active-per-kind constraint.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.template import Template, TemplateSyntaxError
from django.utils import timezone

from courses.admin_scoping import (
    ReadOnlyTabularInline,
    ScopedModelForm,
    TenantScopedAdminMixin,
    TenantScopedInlineMixin,
    is_restricted,
    limited_formset,
    subquery_count,
    text_preview,
)
from sessions.models import (
    AvatarPersona,
    BreakoutRoom,
    Conversation,
    LiveSession,
    LLMModel,
    Message,
    PromptTemplate,
    RoomAssignment,
    TranscriptSegment,
)
from sessions.services import (
    prompt_template_activate,
    prompt_template_new_version,
    prompt_template_publish,
)

# Messages shown under a conversation; the rest are one click away in the message list.
CONVERSATION_MESSAGES_SHOWN = 200


def format_duration(duration: timedelta) -> str:
    seconds = max(int(duration.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


# --- personas, prompts, models -------------------------------------------------------------------


class _GlobalRowsAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Rows of a tenant, or global ones (no tenant) that every tenant sees and only superusers edit."""

    global_rows = True
    form = ScopedModelForm
    list_select_related = ("tenant",)

    @admin.display(description="scope", ordering="tenant__name")
    def scope(self, obj) -> str:
        return obj.tenant.name if obj.tenant_id else "global"


@admin.register(AvatarPersona)
class AvatarPersonaAdmin(_GlobalRowsAdmin):
    list_display = (
        "name", "scope", "default_teaching_mode", "voice_openai", "voice_piper", "avatar_provider",
        "is_active", "created_at",
    )
    list_filter = ("is_active", "default_teaching_mode", "avatar_provider", "tenant")
    search_fields = ("name", "description")
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("tenant", "name", "description", "is_active")}),
        ("Tutor", {"fields": ("style_prompt", "greeting", "default_teaching_mode")}),
        ("Voice", {"fields": ("voice_openai", "voice_piper", "voice_browser")}),
        ("Video avatar", {"fields": ("avatar_provider", "avatar_external_id")}),
        (None, {"fields": ("created_at",)}),
    )


class PromptTemplateForm(ScopedModelForm):
    class Meta:
        model = PromptTemplate
        fields = "__all__"

    def clean_body(self) -> str:
        body = self.cleaned_data["body"]
        try:
            Template(body)
        except TemplateSyntaxError as exc:
            raise forms.ValidationError(f"Not a valid Django template: {exc}") from exc
        return body

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is not None:
            # A version belongs to its tenant's lineage of one kind; moving it would break both.
            for name in ("tenant", "kind"):
                if name in self.changed_data:
                    self.add_error(name, "Use “Save as new” to make a version for another tenant or kind.")
        return cleaned


@admin.register(PromptTemplate)
class PromptTemplateAdmin(_GlobalRowsAdmin):
    form = PromptTemplateForm
    list_display = ("name", "kind", "scope", "version", "is_active", "notes", "created_by", "created_at")
    list_display_links = ("name", "version")
    list_filter = ("kind", "is_active", "tenant")
    list_select_related = ("tenant", "created_by")
    search_fields = ("name", "body", "notes")
    readonly_fields = ("version", "is_active", "created_by", "created_at")
    fields = ("tenant", "kind", "name", "body", "notes", "version", "is_active", "created_by", "created_at")
    # "Save as new" publishes the form as the next version and activates it (see save_model).
    save_as = True
    save_as_continue = True
    actions = ("save_as_new_version", "activate_version")

    def save_model(self, request: HttpRequest, obj: PromptTemplate, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        if is_restricted(request.user):
            obj.tenant_id = request.user.tenant_id
        prompt_template_publish(template=obj, created_by=request.user)

    def _target_tenant_id(self, request: HttpRequest, template: PromptTemplate) -> int | None:
        # A tenant's staff publish into their own lineage, also when they start from a global one.
        return request.user.tenant_id if is_restricted(request.user) else template.tenant_id

    @admin.action(description="Save as new version (and make it active)", permissions=["add"])
    def save_as_new_version(self, request: HttpRequest, queryset: QuerySet) -> None:
        by_lineage: dict[tuple[int | None, str], list[PromptTemplate]] = defaultdict(list)
        for template in queryset.select_related("tenant"):
            by_lineage[(self._target_tenant_id(request, template), template.kind)].append(template)
        for (tenant_id, _kind), templates in by_lineage.items():
            if len(templates) > 1:
                self.message_user(
                    request,
                    f"Select one template per kind: {', '.join(str(t) for t in templates)} were skipped.",
                    messages.WARNING,
                )
                continue
            created = prompt_template_new_version(
                source=templates[0], tenant_id=tenant_id, created_by=request.user
            )
            self.log_addition(request, created, [{"added": {}}])
            self.message_user(request, f"Saved {created} from v{templates[0].version}; it is now the active version.")

    @admin.action(description="Make the selected version the active one", permissions=["change"])
    def activate_version(self, request: HttpRequest, queryset: QuerySet) -> None:
        seen: set[tuple[int | None, str]] = set()
        for template in queryset.select_related("tenant"):
            lineage = (template.tenant_id, template.kind)
            if not self.has_change_permission(request, template) or lineage in seen:
                self.message_user(request, f"{template} was not activated.", messages.WARNING)
                continue
            seen.add(lineage)
            prompt_template_activate(template=template)
            self.log_change(request, template, [{"changed": {"fields": ["is_active"]}}])
            self.message_user(request, f"{template} is now the active version.")


@admin.register(LLMModel)
class LLMModelAdmin(_GlobalRowsAdmin):
    list_display = (
        "position", "model_name", "provider", "scope", "enabled", "temperature", "max_output_tokens",
        "price_per_1k_prompt_tokens", "price_per_1k_completion_tokens",
    )
    list_display_links = ("position", "model_name")
    list_filter = ("provider", "enabled", "tenant")
    search_fields = ("model_name",)
    ordering = ("tenant__name", "position")
    # Names of settings the LLM layer reads: a tenant's staff could otherwise point the API key
    # at any setting (SECRET_KEY...) and have it sent to a provider. The operator picks them.
    operator_fields = ("base_url_setting", "api_key_setting")
    fieldsets = (
        (None, {"fields": ("tenant", "position", "enabled")}),
        ("Model", {"fields": ("provider", "model_name", "base_url_setting", "api_key_setting")}),
        ("Generation", {"fields": ("temperature", "max_output_tokens")}),
        ("Price (USD)", {"fields": ("price_per_1k_prompt_tokens", "price_per_1k_completion_tokens")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields + self.operator_fields if is_restricted(request.user) else fields


# --- live sessions and rooms --------------------------------------------------------------------


class BreakoutRoomInline(TenantScopedInlineMixin, admin.TabularInline):
    model = BreakoutRoom
    tenant_path = "session__tenant"
    fields = ("number", "name", "topic", "status", "teaching_mode", "tutor_status", "student_count")
    readonly_fields = ("tutor_status", "student_count")
    show_change_link = True
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("session")  # str(room) names its session
            .annotate(student_count=subquery_count(RoomAssignment.objects.all(), fk="room"))
        )

    @admin.display(description="students")
    def student_count(self, obj: BreakoutRoom) -> int:
        return getattr(obj, "student_count", 0)


@admin.register(LiveSession)
class LiveSessionAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    list_display = (
        "title", "course", "professor", "tenant", "status", "teaching_mode", "room_total",
        "student_total", "duration", "started_at", "created_at",
    )
    list_filter = ("status", "teaching_mode", "tenant", ("course", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("course", "professor__user", "tenant")
    search_fields = (
        "title", "course__code", "course__title", "professor__user__username", "professor__user__last_name",
    )
    date_hierarchy = "created_at"
    autocomplete_fields = ("course", "professor", "persona")
    # The orchestrator owns status, timing, sequence numbers and the meeting: they are shown, not edited.
    readonly_fields = (
        "status", "started_at", "ended_at", "last_activity_at", "duration", "room_total", "student_total",
        "last_seq", "meeting_external_id", "degraded", "created_at",
    )
    fieldsets = (
        (None, {"fields": ("tenant", "course", "professor", "title", "scheduled_for")}),
        ("Tutors", {"fields": ("teaching_mode", "persona", "tutor_hint")}),
        ("Rooms", {"fields": ("room_count", "students_per_room", "assignment_strategy")}),
        (
            "State",
            {
                "fields": (
                    "status", "started_at", "ended_at", "duration", "last_activity_at", "room_total",
                    "student_total", "meeting_provider", "meeting_external_id", "degraded", "last_seq",
                    "created_at",
                )
            },
        ),
    )
    inlines = (BreakoutRoomInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            room_total=subquery_count(BreakoutRoom.objects.all(), fk="session"),
            student_total=subquery_count(RoomAssignment.objects.all(), fk="session"),
        )

    @admin.display(description="rooms", ordering="room_total")
    def room_total(self, obj: LiveSession) -> int:
        return getattr(obj, "room_total", 0)

    @admin.display(description="students", ordering="student_total")
    def student_total(self, obj: LiveSession) -> int:
        return getattr(obj, "student_total", 0)

    @admin.display(description="duration")
    def duration(self, obj: LiveSession) -> str:
        if obj.started_at is None:
            return "-"
        return format_duration((obj.ended_at or timezone.now()) - obj.started_at)


class RoomAssignmentFormSet(BaseInlineFormSet):
    """An assignment repeats its room's session; the form carries it, hidden, so that the
    database's one-room-per-student-per-session rule is checked by the form, not by an error."""

    def add_fields(self, form, index) -> None:
        super().add_fields(form, index)
        session_field = form.fields["session"]
        session_field.disabled = True
        session_field.initial = self.instance.session_id


class RoomAssignmentInline(TenantScopedInlineMixin, admin.TabularInline):
    model = RoomAssignment
    form = ScopedModelForm
    formset = RoomAssignmentFormSet
    tenant_path = "session__tenant"
    fields = ("student", "session", "assigned_at", "assigned_by")
    readonly_fields = ("assigned_at", "assigned_by")
    autocomplete_fields = ("student",)
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("student__user", "room", "assigned_by")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "session":
            kwargs["widget"] = forms.HiddenInput()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(BreakoutRoom)
class BreakoutRoomAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    tenant_path = "session__tenant"
    list_display = (
        "name", "session", "number", "status", "teaching_mode", "tutor_status", "student_count",
        "last_activity_at",
    )
    list_filter = ("status", "tutor_status", "teaching_mode")
    list_select_related = ("session",)
    choice_select_related = ("session",)
    search_fields = ("name", "topic", "session__title")
    autocomplete_fields = ("session",)
    readonly_fields = ("tutor_status", "tutor_error", "last_activity_at", "student_count")
    inlines = (RoomAssignmentInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("session")  # str(room) names its session, e.g. in autocomplete
            .annotate(student_count=subquery_count(RoomAssignment.objects.all(), fk="room"))
        )

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        if formset.model is not RoomAssignment:
            super().save_formset(request, form, formset, change)
            return
        for assignment in formset.save(commit=False):  # the new and the changed ones
            assignment.session_id = form.instance.session_id
            assignment.assigned_by = request.user
            assignment.save()
        for assignment in formset.deleted_objects:
            assignment.delete()

    @admin.display(description="students", ordering="student_count")
    def student_count(self, obj: BreakoutRoom) -> int:
        return getattr(obj, "student_count", 0)


class RoomAssignmentForm(ScopedModelForm):
    def clean(self):
        cleaned = super().clean()
        room, session = cleaned.get("room"), cleaned.get("session")
        if room is not None and session is not None and room.session_id != session.pk:
            self.add_error("room", "This room belongs to another session.")
        return cleaned


@admin.register(RoomAssignment)
class RoomAssignmentAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = RoomAssignmentForm
    tenant_path = "session__tenant"
    list_display = ("student", "room", "session", "assigned_at", "assigned_by")
    list_filter = (("session", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("student__user", "room__session", "session", "assigned_by")
    search_fields = (
        "student__user__username", "student__user__first_name", "student__user__last_name", "room__name",
        "session__title",
    )
    date_hierarchy = "assigned_at"
    autocomplete_fields = ("session", "room", "student")
    readonly_fields = ("assigned_at", "assigned_by")

    def save_model(self, request: HttpRequest, obj: RoomAssignment, form, change: bool) -> None:
        obj.assigned_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(TranscriptSegment)
class TranscriptSegmentAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    tenant_path = "session__tenant"
    tenant_staff_read_only = True
    list_display = (
        "seq", "session", "room", "speaker_kind", "speaker_name", "preview", "source", "is_final",
        "provider", "start_ms", "created_at",
    )
    list_display_links = ("seq", "preview")
    list_filter = ("speaker_kind", "source", "is_final", "provider")
    list_select_related = ("session", "room__session")
    search_fields = ("text", "speaker_name", "session__title")
    date_hierarchy = "created_at"
    autocomplete_fields = ("session", "room", "speaker_user")
    readonly_fields = ("created_at",)

    @admin.display(description="text")
    def preview(self, obj: TranscriptSegment) -> str:
        return text_preview(obj.text)


# --- conversations ------------------------------------------------------------------------------


class MessageInline(ReadOnlyTabularInline):
    model = Message
    tenant_path = "conversation__tenant"
    formset = limited_formset(CONVERSATION_MESSAGES_SHOWN)
    fields = ("seq", "role", "author", "text", "source", "status", "guardrail", "model", "created_at")
    verbose_name_plural = f"messages (the first {CONVERSATION_MESSAGES_SHOWN})"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("author")


@admin.register(Conversation)
class ConversationAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    list_display = (
        "__str__", "course", "student", "room", "tenant", "mode", "message_count", "last_seq", "updated_at",
    )
    list_filter = ("mode", "tenant", ("course", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("course", "student__user", "room__session", "tenant")
    search_fields = ("title", "course__code", "student__user__username", "student__user__last_name")
    date_hierarchy = "created_at"
    autocomplete_fields = ("course", "student", "session", "room", "persona")
    readonly_fields = ("message_count", "last_seq", "created_at", "updated_at")
    inlines = (MessageInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            message_count=subquery_count(Message.objects.all(), fk="conversation")
        )

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return getattr(obj, "message_count", 0)


@admin.register(Message)
class MessageAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    tenant_path = "conversation__tenant"
    tenant_staff_read_only = True
    list_display = (
        "seq", "conversation", "role", "preview", "source", "status", "guardrail", "model", "offline", "tokens",
        "created_at",
    )
    list_display_links = ("seq", "preview")
    list_filter = ("role", "source", "status", "guardrail", "offline")
    list_select_related = ("conversation",)
    search_fields = ("text", "model", "conversation__title")
    date_hierarchy = "created_at"
    autocomplete_fields = ("conversation", "author")
    readonly_fields = ("created_at",)

    @admin.display(description="text")
    def preview(self, obj: Message) -> str:
        return text_preview(obj.text)

    @admin.display(description="tokens (prompt + completion)")
    def tokens(self, obj: Message) -> str:
        return f"{obj.prompt_tokens} + {obj.completion_tokens}"
