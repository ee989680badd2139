"""Tenants, people, courses and course material.

`courses` depends on no other app of ours; the one reference out of it, `Course.default_persona`,
is a lazy string foreign key so nothing here imports `sessions`.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


class TenantScopedQuerySet(models.QuerySet):
    """Rows of one tenant; every selector that serves a request starts here."""

    def for_tenant(self, tenant_id: int | None):
        return self.filter(tenant_id=tenant_id)


class TenantUserManager(UserManager.from_queryset(TenantScopedQuerySet)):  # type: ignore[misc]
    """The user manager (create_user, create_superuser) with `for_tenant`."""

    use_in_migrations = True


class Tenant(models.Model):
    """An institution. Everything a user can see belongs to exactly one tenant."""

    class ServiceTier(models.TextChoices):
        FREE = "free", "Free"
        STANDARD = "standard", "Standard"
        PREMIUM = "premium", "Premium"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    service_tier = models.CharField(
        max_length=20, choices=ServiceTier.choices, default=ServiceTier.STANDARD
    )
    # Feature switches read by later capabilities, e.g. {"voice": true, "avatars": false}.
    feature_flags = models.JSONField(default=dict, blank=True)
    retention_days = models.PositiveIntegerField(
        default=365, help_text="Transcripts and audio older than this are deleted."
    )
    keep_audio = models.BooleanField(
        default=False, help_text="Keep students' utterance audio (deleted after retention days)."
    )
    monthly_budget = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Provider spend per calendar month in USD; empty means no limit.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(monthly_budget__isnull=True) | Q(monthly_budget__gte=0),
                name="tenant_budget_not_negative",
            ),
            models.CheckConstraint(condition=Q(retention_days__gte=1), name="tenant_retention_min_1"),
        ]

    def __str__(self) -> str:
        return self.name

    def feature_enabled(self, flag: str, default: bool = False) -> bool:
        return bool(self.feature_flags.get(flag, default))


class User(AbstractUser):
    """A person who logs in. Superusers may have no tenant; everybody else has exactly one."""

    class Role(models.TextChoices):
        STAFF = "staff", "Staff"
        PROFESSOR = "professor", "Professor"
        STUDENT = "student", "Student"

    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="users"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.STUDENT)

    objects = TenantUserManager()

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        indexes = [models.Index(fields=["tenant", "role"], name="user_tenant_role_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(role__in=["staff", "professor", "student"]), name="user_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(tenant__isnull=False) | Q(is_superuser=True),
                name="user_tenant_required_unless_superuser",
            ),
        ]

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username

    @property
    def is_professor(self) -> bool:
        return self.role == self.Role.PROFESSOR

    @property
    def is_student(self) -> bool:
        return self.role == self.Role.STUDENT


class Professor(models.Model):
    """Teaching profile of a user with the professor role."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="professor")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="professors")
    title = models.CharField(max_length=100, blank=True, help_text="e.g. Dr., Prof.")
    department = models.CharField(max_length=200, blank=True)

    objects = models.Manager.from_queryset(TenantScopedQuerySet)()  # type: ignore[misc]

    class Meta:
        ordering = ["user__last_name", "user__username"]

    def __str__(self) -> str:
        name = self.user.display_name
        return f"{self.title} {name}".strip()


class Student(models.Model):
    """Learning profile of a user with the student role."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="student")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="students")
    student_number = models.CharField(max_length=50, blank=True)
    preferred_name = models.CharField(
        max_length=100, blank=True, help_text="How the tutor addresses the student."
    )

    objects = models.Manager.from_queryset(TenantScopedQuerySet)()  # type: ignore[misc]

    class Meta:
        ordering = ["user__last_name", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "student_number"],
                condition=~Q(student_number=""),
                name="student_number_unique_per_tenant",
            )
        ]

    def __str__(self) -> str:
        return self.user.display_name

    @property
    def first_name(self) -> str:
        return self.preferred_name or self.user.first_name or self.user.username


class TeachingMode(models.TextChoices):
    """How a tutor behaves. Quiz-lock gives no answers during graded work."""

    SOCRATIC = "socratic", "Socratic"
    TEACHER = "teacher", "Teacher"
    QA = "qa", "Q&A"
    QUIZ_LOCK = "quiz_lock", "Quiz lock"


class Course(models.Model):
    """A course of a tenant, taught by one or more professors."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="courses")
    code = models.CharField(max_length=30)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    professors = models.ManyToManyField(Professor, related_name="courses", blank=True)
    # The guardrail's keyword tier: terms that mark a question as on topic...
    scope_terms = models.JSONField(default=list, blank=True)
    # ...and terms that mark it as off topic unless a scope term is present too.
    off_topic_terms = models.JSONField(default=list, blank=True)
    guardrail_enabled = models.BooleanField(default=True)
    default_persona = models.ForeignKey(
        "live_sessions.AvatarPersona",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="default_for_courses",
    )
    default_teaching_mode = models.CharField(
        max_length=20, choices=TeachingMode.choices, default=TeachingMode.SOCRATIC
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = models.Manager.from_queryset(TenantScopedQuerySet)()  # type: ignore[misc]

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(
                "tenant", Lower("code"), name="course_code_unique_per_tenant"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.title}"


class Enrollment(models.Model):
    """A student taking a course."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DROPPED = "dropped", "Dropped"

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="enrollments")
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="enrollments")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["course", "student"]
        constraints = [
            models.UniqueConstraint(fields=["course", "student"], name="enrollment_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.student} in {self.course.code}"


def course_document_path(instance: CourseDocument, filename: str) -> str:
    return f"tenants/{instance.course.tenant_id}/courses/{instance.course_id}/documents/{filename}"


class CourseDocument(models.Model):
    """Uploaded course material and the state of its ingestion."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=255)
    file = models.FileField(upload_to=course_document_path, max_length=500, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Ingestion progress, 0-100.")
    error = models.TextField(blank=True, help_text="Why ingestion failed, in words for people.")
    page_count = models.PositiveIntegerField(null=True, blank=True)
    # Bumped when the file is replaced: an ingestion task started for an older revision finds a
    # newer one and leaves its work unwritten (courses.ingestion.document_ingest).
    revision = models.PositiveIntegerField(default=1)
    uploaded_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["course", "title"]
        indexes = [models.Index(fields=["course", "status"], name="document_course_status_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=100),
                name="document_progress_0_100",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class DocumentChunk(models.Model):
    """A retrievable passage of a document, with where it came from."""

    document = models.ForeignKey(CourseDocument, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField(help_text="Order of the chunk in its document.")
    page = models.PositiveIntegerField(null=True, blank=True, help_text="Page or slide number.")
    heading = models.CharField(max_length=500, blank=True)
    text = models.TextField()
    token_count = models.PositiveIntegerField(default=0)
    # The chunk's vector when an embeddings engine is configured (a list of floats, the portable
    # copy). On PostgreSQL with pgvector the same vector also sits in the `embedding_vector` column
    # (HNSW-indexed) and the lexical index in `search_vector`; on SQLite the lexical index is the
    # FTS5 table `courses_documentchunk_fts`. Those are made by migrations 0004/0005 outside the
    # model, so this model works on every database (courses/search_schema.py).
    embedding = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["document", "position"]
        constraints = [
            models.UniqueConstraint(fields=["document", "position"], name="chunk_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.document} #{self.position}"
