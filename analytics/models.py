"""What happened: per-student progress, per-session analytics, and every provider call's usage."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from courses.models import Course, Student, Tenant, TenantScopedQuerySet
from sessions.models import Conversation, LiveSession


class StudentProgress(models.Model):
    """One student's part in one session, computed from transcripts and messages."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="progress")
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="progress")
    talk_time_ms = models.PositiveIntegerField(default=0)
    speech_turns = models.PositiveIntegerField(default=0)
    text_turns = models.PositiveIntegerField(default=0)
    questions_asked = models.PositiveIntegerField(default=0)
    words = models.PositiveIntegerField(default=0)
    hints_needed = models.PositiveIntegerField(default=0)
    # [{"topic": "recursion", "segments": [seq, ...]}]: every number links to its evidence.
    topics_covered = models.JSONField(default=list, blank=True)
    # [{"topic", "signal", "seq"}]
    confusion_points = models.JSONField(default=list, blank=True)
    engagement_score = models.PositiveSmallIntegerField(default=0, help_text="0-100.")
    evidence = models.JSONField(default=dict, blank=True, help_text="Metric name -> segment seqs.")
    version = models.PositiveIntegerField(default=0, help_text="Computation version that wrote it.")
    computed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["session", "student"]
        verbose_name_plural = "student progress"
        constraints = [
            models.UniqueConstraint(fields=["session", "student"], name="progress_unique_per_session"),
            models.CheckConstraint(
                condition=Q(engagement_score__gte=0) & Q(engagement_score__lte=100),
                name="progress_engagement_0_100",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.student} in {self.session}"

    @property
    def turns(self) -> int:
        return self.speech_turns + self.text_turns


class SessionAnalytics(models.Model):
    """The whole session at a glance; recomputation with a newer version replaces it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        COMPUTING = "computing", "Computing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    session = models.OneToOneField(LiveSession, on_delete=models.CASCADE, related_name="analytics")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)
    participation = models.JSONField(default=dict, blank=True)
    room_comparison = models.JSONField(default=list, blank=True)
    confusion_topics = models.JSONField(default=list, blank=True)
    summary = models.TextField(blank=True)
    summary_offline = models.BooleanField(default=False, help_text="Extractive summary, no LLM.")
    version = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "session analytics"
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=100), name="analytics_progress_0_100"
            ),
        ]

    def __str__(self) -> str:
        return f"Analytics of {self.session}"


class UsageEvent(models.Model):
    """One provider call: what it cost, how long it took, how it ended."""

    class Kind(models.TextChoices):
        LLM = "llm", "LLM"
        STT = "stt", "Speech to text"
        TTS = "tts", "Text to speech"
        EMBEDDINGS = "embeddings", "Embeddings"
        AVATAR = "avatar", "Avatar"
        MEETING = "meeting", "Meeting"

    class Outcome(models.TextChoices):
        OK = "ok", "OK"
        ERROR = "error", "Error"
        TIMEOUT = "timeout", "Timeout"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected (circuit open or over budget)"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_events")
    course = models.ForeignKey(Course, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    session = models.ForeignKey(
        LiveSession, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage_events"
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage_events"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # Seconds of audio for STT, characters for TTS; tokens live in the two fields above.
    units = models.DecimalField(max_digits=14, decimal_places=3, default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0, help_text="USD.")
    latency_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.OK)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)

    objects = models.Manager.from_queryset(TenantScopedQuerySet)()  # type: ignore[misc]

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # monthly roll-ups per tenant and kind: WHERE tenant = ? AND created_at in [month)
            models.Index(fields=["tenant", "created_at"], name="usage_tenant_created_idx"),
            models.Index(fields=["tenant", "kind", "created_at"], name="usage_tenant_kind_idx"),
            models.Index(fields=["course", "created_at"], name="usage_course_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0) & Q(units__gte=0), name="usage_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.model or self.provider} {self.created_at:%Y-%m-%d}"


# --- usage roll-up, budget alerts, data rights (an-ops) ---------------------------------------


class UsageDaily(models.Model):
    """One day's usage per tenant, course, kind, provider and model: the sum of its UsageEvents.

    Written only by `analytics.usage.usage_rollup`, which replaces a whole day at a time, so it is
    safe to run again. Course-less rows (calls outside a course) are unique through the roll-up
    itself: a partial unique constraint covers only rows with a course, because deleting a course
    turns its rows course-less (SET_NULL) and they must not collide with the day's others.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_days")
    course = models.ForeignKey(Course, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    day = models.DateField(help_text="UTC calendar day.")
    kind = models.CharField(max_length=20, choices=UsageEvent.Kind.choices)
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200, blank=True)
    calls = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="Calls whose outcome was not ok.")
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    units = models.DecimalField(max_digits=16, decimal_places=3, default=0, help_text="STT seconds, TTS characters.")
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0, help_text="USD.")
    computed_at = models.DateTimeField(auto_now=True)

    objects = models.Manager.from_queryset(TenantScopedQuerySet)()  # type: ignore[misc]

    class Meta:
        ordering = ["-day", "tenant", "kind"]
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        indexes = [models.Index(fields=["tenant", "day"], name="usagedaily_tenant_day_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "course", "day", "kind", "provider", "model"],
                condition=Q(course__isnull=False),
                name="usagedaily_unique_with_course",
            ),
            models.CheckConstraint(condition=Q(cost__gte=0) & Q(units__gte=0), name="usagedaily_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.kind} {self.model or self.provider}"


class BudgetAlert(models.Model):
    """A budget e-mail sent to a tenant's staff: at most one per tenant, month and threshold."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="budget_alerts")
    month = models.DateField(help_text="First day of the month (UTC).")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the monthly budget.")
    spend = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    budget = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    recipients = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(auto_now_add=True)

    objects = models.Manager.from_queryset(TenantScopedQuerySet)()  # type: ignore[misc]

    class Meta:
        ordering = ["-month", "tenant", "threshold"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "month", "threshold"], name="budget_alert_once"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.month:%Y-%m} {self.threshold}%"


class DataRightsAudit(models.Model):
    """Who exported or erased which student's data, and how much. Keeps no personal data: the
    student is an id (not a foreign key, which would vanish with the row it records erasing)."""

    class Action(models.TextChoices):
        EXPORT = "export", "Export"
        EXPORT_ZIP = "export_zip", "Export with audio (zip)"
        ANONYMISE = "anonymise", "Anonymise"
        DELETE = "delete", "Delete"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="data_rights_audits")
    student_id = models.PositiveBigIntegerField()
    user_id = models.PositiveBigIntegerField(null=True, blank=True, help_text="The student's user id.")
    action = models.CharField(max_length=20, choices=Action.choices)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    by_username = models.CharField(max_length=150, blank=True, help_text="Kept if the actor is deleted.")
    counts = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = models.Manager.from_queryset(TenantScopedQuerySet)()  # type: ignore[misc]

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "data rights audit record"
        indexes = [models.Index(fields=["tenant", "student_id"], name="datarights_tenant_student_idx")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} of student {self.student_id}"
