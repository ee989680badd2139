"""Admin for tenants, people, courses and course material, scoped to the user's tenant.

The scoping rules live in `courses.admin_scoping`; every admin here only says how its model reaches
a tenant and what to show. Counts are annotated in `get_queryset`, so a changelist is a constant
number of queries however many rows it lists.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

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
from courses.models import (
    Course,
    CourseDocument,
    DocumentChunk,
    Enrollment,
    Professor,
    Student,
    Tenant,
    User,
)

# Chunks shown under a document; the rest are one click away in the chunk list.
DOCUMENT_CHUNKS_SHOWN = 20


# --- tenants and people -------------------------------------------------------------------------


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    tenant_path = "pk"
    form = ScopedModelForm
    list_display = (
        "name", "slug", "service_tier", "is_active", "retention_days", "keep_audio",
        "monthly_budget", "user_count", "course_count", "created_at",
    )
    list_filter = ("service_tier", "is_active", "keep_audio")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "user_count", "course_count")
    fieldsets = (
        (None, {"fields": ("name", "slug", "is_active")}),
        ("Service", {"fields": ("service_tier", "monthly_budget", "feature_flags")}),
        ("Data retention", {"fields": ("retention_days", "keep_audio")}),
        ("Figures", {"fields": ("user_count", "course_count", "created_at")}),
    )
    # What a tenant's own staff may not change: billing and service decisions are the operator's.
    operator_fields = ("slug", "is_active", "service_tier", "monthly_budget", "feature_flags")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            user_count=subquery_count(User.objects.all(), fk="tenant"),
            course_count=subquery_count(Course.objects.all(), fk="tenant"),
        )

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if is_restricted(request.user):
            fields += self.operator_fields
        return fields

    def get_prepopulated_fields(self, request: HttpRequest, obj=None):
        # A prepopulated field must be editable.
        return {} if is_restricted(request.user) else super().get_prepopulated_fields(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    @admin.display(description="users", ordering="user_count")
    def user_count(self, obj: Tenant) -> int:
        return getattr(obj, "user_count", 0)

    @admin.display(description="courses", ordering="course_count")
    def course_count(self, obj: Tenant) -> int:
        return getattr(obj, "course_count", 0)


@admin.register(User)
class UserAdmin(TenantScopedAdminMixin, DjangoUserAdmin):
    list_display = (
        "username", "email", "first_name", "last_name", "tenant", "role", "is_staff", "is_active",
        "last_login",
    )
    list_filter = ("role", "is_staff", "is_active", "is_superuser", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("username", "first_name", "last_name", "email")
    date_hierarchy = "date_joined"
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Tenant and role", {"fields": ("tenant", "role")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Tenant and role", {"fields": ("tenant", "role")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
    )
    readonly_fields = ("last_login", "date_joined")
    # Only a superuser hands out superuser status or Django permissions.
    superuser_only_fields = ("is_superuser", "groups", "user_permissions")

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        queryset = super().scope_queryset(request, queryset)
        if is_restricted(request.user):
            # A superuser who also belongs to a tenant stays out of reach of that tenant's staff.
            queryset = queryset.filter(is_superuser=False)
        return queryset

    def get_list_filter(self, request: HttpRequest):
        filters = super().get_list_filter(request)
        return [f for f in filters if f != "is_superuser"] if is_restricted(request.user) else filters

    def get_fieldsets(self, request: HttpRequest, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not is_restricted(request.user):
            return fieldsets
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f not in self.superuser_only_fields]})
            for name, options in fieldsets
        ]

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None and "tenant" in form.base_fields:
            # Only `createsuperuser` makes users without a tenant (the database refuses others).
            form.base_fields["tenant"].required = True
        return form


class _PersonAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    list_select_related = ("user", "tenant")
    choice_select_related = ("user",)
    search_fields = ("user__username", "user__first_name", "user__last_name", "user__email")
    autocomplete_fields = ("user",)
    list_filter = ("tenant",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # select_related here, not only in the changelist: autocomplete results are labelled with
        # str(), the user's name. (A queryset that has it makes the changelist skip its own.)
        return super().get_queryset(request).select_related(*self.list_select_related)

    @admin.display(description="username", ordering="user__username")
    def username(self, obj: Professor | Student) -> str:
        return obj.user.username


@admin.register(Professor)
class ProfessorAdmin(_PersonAdmin):
    list_display = ("__str__", "username", "department", "tenant", "course_count")
    search_fields = (*_PersonAdmin.search_fields, "department")
    readonly_fields = ("course_count",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            course_count=subquery_count(Course.professors.through.objects.all(), fk="professor")
        )

    @admin.display(description="courses", ordering="course_count")
    def course_count(self, obj: Professor) -> int:
        return getattr(obj, "course_count", 0)


@admin.register(Student)
class StudentAdmin(_PersonAdmin):
    list_display = ("__str__", "username", "student_number", "preferred_name", "tenant", "enrollment_count")
    search_fields = (*_PersonAdmin.search_fields, "student_number", "preferred_name")
    readonly_fields = ("enrollment_count",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            enrollment_count=subquery_count(
                Enrollment.objects.filter(status=Enrollment.Status.ACTIVE), fk="student"
            )
        )

    @admin.display(description="active enrollments", ordering="enrollment_count")
    def enrollment_count(self, obj: Student) -> int:
        return getattr(obj, "enrollment_count", 0)


# --- courses ------------------------------------------------------------------------------------


class EnrollmentInline(TenantScopedInlineMixin, admin.TabularInline):
    model = Enrollment
    form = ScopedModelForm
    tenant_path = "course__tenant"
    fields = ("student", "status", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("student",)
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Rows are labelled with str(enrollment) and str(student): load what those read.
        return super().get_queryset(request).select_related("student__user", "course")


class CourseDocumentInline(ReadOnlyTabularInline):
    """Documents are uploaded through the portal or API, which start their ingestion."""

    model = CourseDocument
    tenant_path = "course__tenant"
    fields = ("title", "status", "progress", "chunk_count", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            chunk_count=subquery_count(DocumentChunk.objects.all(), fk="document")
        )

    @admin.display(description="chunks")
    def chunk_count(self, obj: CourseDocument) -> int:
        return getattr(obj, "chunk_count", 0)


@admin.register(Course)
class CourseAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    list_display = (
        "code", "title", "tenant", "student_count", "document_count", "default_teaching_mode",
        "guardrail_enabled", "is_active", "created_at",
    )
    list_display_links = ("code", "title")
    list_filter = ("is_active", "default_teaching_mode", "guardrail_enabled", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("code", "title")
    date_hierarchy = "created_at"
    autocomplete_fields = ("professors", "default_persona")
    readonly_fields = ("student_count", "document_count", "created_at")
    fieldsets = (
        (None, {"fields": ("tenant", "code", "title", "description", "professors", "is_active")}),
        (
            "Tutor",
            {
                "fields": (
                    "default_persona", "default_teaching_mode", "guardrail_enabled", "scope_terms",
                    "off_topic_terms",
                )
            },
        ),
        ("Figures", {"fields": ("student_count", "document_count", "created_at")}),
    )
    inlines = (EnrollmentInline, CourseDocumentInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            student_count=subquery_count(
                Enrollment.objects.filter(status=Enrollment.Status.ACTIVE), fk="course"
            ),
            document_count=subquery_count(CourseDocument.objects.all(), fk="course"),
        )

    @admin.display(description="students", ordering="student_count")
    def student_count(self, obj: Course) -> int:
        return getattr(obj, "student_count", 0)

    @admin.display(description="documents", ordering="document_count")
    def document_count(self, obj: Course) -> int:
        return getattr(obj, "document_count", 0)


@admin.register(Enrollment)
class EnrollmentAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    tenant_path = "course__tenant"
    list_display = ("student", "course", "status", "created_at")
    list_filter = ("status", ("course", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("student__user", "course")
    search_fields = (
        "student__user__username", "student__user__first_name", "student__user__last_name",
        "student__student_number", "course__code", "course__title",
    )
    date_hierarchy = "created_at"
    autocomplete_fields = ("course", "student")
    readonly_fields = ("created_at",)


class DocumentChunkInline(ReadOnlyTabularInline):
    model = DocumentChunk
    tenant_path = "document__course__tenant"
    formset = limited_formset(DOCUMENT_CHUNKS_SHOWN)
    fields = ("position", "page", "heading", "preview", "token_count")
    verbose_name_plural = f"chunks (the first {DOCUMENT_CHUNKS_SHOWN})"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("document").defer("embedding")

    @admin.display(description="text")
    def preview(self, obj: DocumentChunk) -> str:
        return text_preview(obj.text, 120)


@admin.register(CourseDocument)
class CourseDocumentAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    tenant_path = "course__tenant"
    list_display = (
        "title", "course", "status", "progress", "chunk_count", "size", "page_count", "uploaded_by",
        "created_at",
    )
    list_filter = ("status", ("course", admin.RelatedOnlyFieldListFilter), "content_type")
    list_select_related = ("course", "uploaded_by")
    search_fields = ("title", "course__code", "course__title")
    date_hierarchy = "created_at"
    autocomplete_fields = ("course",)
    readonly_fields = (
        "content_type", "size", "status", "progress", "error", "page_count", "uploaded_by",
        "chunk_count", "all_chunks", "created_at", "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("course", "title", "file")}),
        (
            "Ingestion",
            {"fields": ("status", "progress", "error", "content_type", "size", "page_count", "chunk_count", "all_chunks")},
        ),
        ("History", {"fields": ("uploaded_by", "created_at", "updated_at")}),
    )
    inlines = (DocumentChunkInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            chunk_count=subquery_count(DocumentChunk.objects.all(), fk="document")
        )

    def save_model(self, request: HttpRequest, obj: CourseDocument, form, change: bool) -> None:
        if not change and obj.uploaded_by_id is None:
            obj.uploaded_by = request.user
        new_file = "file" in form.changed_data and bool(obj.file)
        if new_file:
            # A file added or replaced here is ingested like an upload from the portal.
            obj.size_bytes = obj.file.size
            obj.content_type = getattr(obj.file.file, "content_type", "") or obj.content_type
            obj.revision = (obj.revision or 0) + (1 if change else 0)
            obj.status, obj.progress, obj.error, obj.page_count = CourseDocument.Status.PENDING, 0, "", None
        super().save_model(request, obj, form, change)
        if new_file:
            from courses.documents import document_ingest_enqueue

            document_ingest_enqueue(document=obj)

    @admin.display(description="chunks", ordering="chunk_count")
    def chunk_count(self, obj: CourseDocument) -> int:
        return getattr(obj, "chunk_count", 0)

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj: CourseDocument) -> str:
        return filesizeformat(obj.size_bytes)

    @admin.display(description="all chunks")
    def all_chunks(self, obj: CourseDocument) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:courses_documentchunk_changelist")
        return format_html('<a href="{}?document__id__exact={}">All chunks of this document</a>', url, obj.pk)


@admin.register(DocumentChunk)
class DocumentChunkAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = ScopedModelForm
    tenant_path = "document__course__tenant"
    list_display = ("document", "position", "page", "heading", "preview", "token_count", "has_embedding")
    list_filter = (("document__course", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("document",)
    choice_select_related = ("document",)
    search_fields = ("text", "heading", "document__title")
    autocomplete_fields = ("document",)
    readonly_fields = ("embedding_size",)
    exclude = ("embedding",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Embeddings are long lists of floats: the changelist only needs to know there is one.
        return (
            super()
            .get_queryset(request)
            .defer("embedding")
            .annotate(
                embedded=ExpressionWrapper(Q(embedding__isnull=False), output_field=BooleanField())
            )
        )

    @admin.display(description="text")
    def preview(self, obj: DocumentChunk) -> str:
        return text_preview(obj.text)

    @admin.display(description="embedding", boolean=True, ordering="embedded")
    def has_embedding(self, obj: DocumentChunk) -> bool:
        return bool(getattr(obj, "embedded", False))

    @admin.display(description="embedding")
    def embedding_size(self, obj: DocumentChunk) -> str:
        if obj.embedding is None:
            return "none"
        return f"{len(obj.embedding)} dimensions"
