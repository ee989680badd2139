"""Tutors, prompts, model chains, live sessions with breakout rooms, transcripts, conversations."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from courses.models import Course, Professor, Student, TeachingMode, Tenant, TenantScopedQuerySet


class AvatarPersona(models.Model):
    """Who the tutor is: name, manner and voice. Global (no tenant) or a tenant's own."""

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="personas",
        help_text="Empty: available to every tenant.",
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    style_prompt = models.TextField(
        blank=True, help_text="Personality and manner, added to every prompt of this persona."
    )
    greeting = models.CharField(max_length=300, blank=True)
    default_teaching_mode = models.CharField(
        max_length=20, choices=TeachingMode.choices, default=TeachingMode.SOCRATIC
    )
    # The voice per TTS engine; each engine reads its own.
    voice_openai = models.CharField(max_length=50, default="alloy", blank=True)
    voice_piper = models.CharField(max_length=100, default="joe", blank=True)
    voice_browser = models.CharField(
        max_length=100, blank=True, help_text="speechSynthesis voice name; empty: the default."
    )
    avatar_provider = models.CharField(
        max_length=30, blank=True, help_text="e.g. heygen; empty: no video avatar."
    )
    avatar_external_id = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="persona_name_unique_per_tenant"),
            models.UniqueConstraint(
                fields=["name"], condition=Q(tenant__isnull=True), name="persona_name_unique_global"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PromptTemplate(models.Model):
    """A versioned prompt. The active version of a kind (tenant's own first, else global) is used."""

    class Kind(models.TextChoices):
        SOCRATIC = "socratic", "Socratic tutor"
        TEACHER = "teacher", "Teacher"
        QA = "qa", "Q&A"
        QUIZ_LOCK = "quiz_lock", "Quiz lock"
        GUARDRAIL = "guardrail", "Guardrail (YES/NO)"
        SUMMARY = "summary", "Session summary"
        ANALYTICS = "analytics", "Analytics classification"

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="prompt_templates",
        help_text="Empty: the global default for every tenant.",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    body = models.TextField(help_text="Django template syntax; see docs/decisions.md for context names.")
    is_active = models.BooleanField(default=True)
    notes = models.CharField(max_length=300, blank=True, help_text="What changed in this version.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "tenant_id", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "kind", "version"], name="prompt_version_unique_per_tenant"
            ),
            models.UniqueConstraint(
                fields=["kind", "version"], condition=Q(tenant__isnull=True),
                name="prompt_version_unique_global",
            ),
            models.UniqueConstraint(
                fields=["tenant", "kind"], condition=Q(is_active=True),
                name="prompt_one_active_per_tenant",
            ),
            models.UniqueConstraint(
                fields=["kind"], condition=Q(is_active=True) & Q(tenant__isnull=True),
                name="prompt_one_active_global",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="prompt_version_min_1"),
        ]

    def __str__(self) -> str:
        scope = self.tenant.name if self.tenant_id else "global"
        return f"{self.get_kind_display()} v{self.version} ({scope})"


class LLMModel(models.Model):
    """One entry of an LLM model chain: tried in `position` order, per tenant or global."""

    class Provider(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible API"
        OFFLINE = "offline", "Offline tutor (no model)"
        LLAMA_CPP = "llama_cpp", "Local GGUF via llama-cpp-python"

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="llm_models",
        help_text="Empty: the global chain, used by tenants without their own.",
    )
    position = models.PositiveSmallIntegerField(default=1, help_text="Lower is tried first.")
    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.OPENAI)
    model_name = models.CharField(max_length=200, help_text="e.g. gpt-4o-mini, llama-3.1-8b-instant")
    base_url_setting = models.CharField(
        max_length=100, default="OPENAI_BASE_URL", blank=True,
        help_text="Name of the setting/env var holding the base URL (empty: the SDK default).",
    )
    api_key_setting = models.CharField(
        max_length=100, default="OPENAI_API_KEY", blank=True,
        help_text="Name of the setting/env var holding the API key. Keys never live in the database.",
    )
    temperature = models.DecimalField(max_digits=3, decimal_places=2, default=0.7)
    max_output_tokens = models.PositiveIntegerField(default=800)
    price_per_1k_prompt_tokens = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    price_per_1k_completion_tokens = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["tenant_id", "position"]
        verbose_name = "LLM model (chain entry)"
        verbose_name_plural = "LLM model chain"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "position"], name="llm_position_unique_per_tenant"),
            models.UniqueConstraint(
                fields=["position"], condition=Q(tenant__isnull=True), name="llm_position_unique_global"
            ),
            models.CheckConstraint(
                condition=Q(temperature__gte=0) & Q(temperature__lte=2), name="llm_temperature_0_2"
            ),
            models.CheckConstraint(
                condition=Q(price_per_1k_prompt_tokens__gte=0) & Q(price_per_1k_completion_tokens__gte=0),
                name="llm_price_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.model_name} ({self.get_provider_display()})"


class LiveSession(models.Model):
    """A live class: a course's students split into breakout rooms, each with a tutor."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        LIVE = "live", "Live"
        ENDED = "ended", "Ended"

    class Assignment(models.TextChoices):
        ROUND_ROBIN = "round_robin", "Round robin"
        RANDOM = "random", "Random"
        MANUAL = "manual", "By hand"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="live_sessions")
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="live_sessions")
    professor = models.ForeignKey(
        Professor, on_delete=models.PROTECT, related_name="live_sessions"
    )
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    teaching_mode = models.CharField(
        max_length=20, choices=TeachingMode.choices, default=TeachingMode.SOCRATIC
    )
    persona = models.ForeignKey(
        AvatarPersona, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    room_count = models.PositiveSmallIntegerField(default=1)
    students_per_room = models.PositiveSmallIntegerField(null=True, blank=True)
    assignment_strategy = models.CharField(
        max_length=20, choices=Assignment.choices, default=Assignment.ROUND_ROBIN
    )
    tutor_hint = models.TextField(
        blank=True, help_text="Pushed by the professor into every room tutor's context."
    )
    meeting_provider = models.CharField(max_length=20, default="builtin")
    meeting_external_id = models.CharField(max_length=200, blank=True)
    # Soft failures during start ({"tutors": {"<room id>": "reason"}, "transcription": "..."}).
    degraded = models.JSONField(default=dict, blank=True)
    # The last `seq` handed out; allocate with an F() update so processes never collide.
    last_seq = models.PositiveBigIntegerField(default=0)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = models.Manager.from_queryset(TenantScopedQuerySet)()  # type: ignore[misc]

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "status"], name="session_tenant_status_idx"),
            models.Index(fields=["course", "-created_at"], name="session_course_created_idx"),
            models.Index(fields=["status", "last_activity_at"], name="session_status_activity_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(room_count__gte=1), name="session_room_count_min_1"),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(started_at__isnull=True) | Q(ended_at__gte=F("started_at")),
                name="session_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class BreakoutRoom(models.Model):
    """A room of a session, with its own tutor, topic and students."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        CLOSED = "closed", "Closed"

    class TutorStatus(models.TextChoices):
        NOT_STARTED = "not_started", "Not started"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="rooms")
    number = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    topic = models.CharField(max_length=300, blank=True)
    goal = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    teaching_mode = models.CharField(
        max_length=20, choices=TeachingMode.choices, blank=True,
        help_text="Empty: the session's mode.",
    )
    tutor_status = models.CharField(
        max_length=20, choices=TutorStatus.choices, default=TutorStatus.NOT_STARTED
    )
    tutor_error = models.TextField(blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["session", "number"]
        constraints = [
            models.UniqueConstraint(fields=["session", "number"], name="room_number_unique_per_session"),
        ]

    def __str__(self) -> str:
        return f"{self.session} / {self.name}"

    @property
    def effective_teaching_mode(self) -> str:
        return self.teaching_mode or self.session.teaching_mode


class RoomAssignment(models.Model):
    """A student placed in a room. `session` is repeated so the database keeps one room each."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="assignments")
    room = models.ForeignKey(BreakoutRoom, on_delete=models.CASCADE, related_name="assignments")
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="room_assignments")
    assigned_at = models.DateTimeField(auto_now=True)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["room", "student"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "student"], name="one_room_per_student_per_session"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.student} in {self.room.name}"


class Speaker(models.TextChoices):
    STUDENT = "student", "Student"
    PROFESSOR = "professor", "Professor"
    TUTOR = "tutor", "Tutor"
    SYSTEM = "system", "System"


class TranscriptSegment(models.Model):
    """One utterance or typed line in a room, or in the main lecture when `room` is empty."""

    class Source(models.TextChoices):
        SPEECH = "speech", "Speech"
        TEXT = "text", "Text"

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="segments")
    room = models.ForeignKey(
        BreakoutRoom, on_delete=models.CASCADE, null=True, blank=True, related_name="segments",
        help_text="Empty: the main-room lecture.",
    )
    seq = models.PositiveBigIntegerField(help_text="Per-session monotonic sequence number.")
    speaker_kind = models.CharField(max_length=20, choices=Speaker.choices)
    speaker_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    speaker_name = models.CharField(max_length=150, help_text="Name as shown when it was said.")
    text = models.TextField()
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.TEXT)
    is_final = models.BooleanField(default=True)
    provider = models.CharField(max_length=50, blank=True)
    start_ms = models.PositiveIntegerField(default=0, help_text="Offset from session start.")
    end_ms = models.PositiveIntegerField(default=0)
    audio = models.FileField(upload_to="audio/%Y/%m/%d/", blank=True, max_length=500)
    # A tutor's line in a room is the transcript side of a `Message` of the room's conversation,
    # which keeps model, citations and guardrail verdict.
    message = models.OneToOneField(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="segment"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "seq"]
        indexes = [
            models.Index(fields=["room", "seq"], name="segment_room_seq_idx"),
            models.Index(fields=["created_at"], name="segment_created_idx"),  # retention purge
        ]
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="segment_seq_unique_per_session"),
            models.CheckConstraint(condition=Q(end_ms__gte=F("start_ms")), name="segment_end_after_start"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.speaker_name}: {self.text[:40]}"


class Conversation(models.Model):
    """A dialogue with the tutor: a student's practice conversation, or a breakout room's."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="conversations")
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="conversations")
    student = models.ForeignKey(
        Student, on_delete=models.CASCADE, null=True, blank=True, related_name="conversations",
        help_text="The practice conversation's student; empty for a breakout room's.",
    )
    session = models.ForeignKey(
        LiveSession, on_delete=models.CASCADE, null=True, blank=True, related_name="conversations"
    )
    room = models.OneToOneField(
        BreakoutRoom, on_delete=models.CASCADE, null=True, blank=True, related_name="conversation"
    )
    title = models.CharField(max_length=200, blank=True)
    mode = models.CharField(max_length=20, choices=TeachingMode.choices, default=TeachingMode.SOCRATIC)
    persona = models.ForeignKey(
        AvatarPersona, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_seq = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = models.Manager.from_queryset(TenantScopedQuerySet)()  # type: ignore[misc]

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["student", "-updated_at"], name="conversation_student_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(student__isnull=False) | Q(room__isnull=False),
                name="conversation_has_student_or_room",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    """One turn of a conversation. Tutor turns keep model, citations and the guardrail verdict."""

    class Role(models.TextChoices):
        STUDENT = "student", "Student"
        TUTOR = "tutor", "Tutor"
        PROFESSOR = "professor", "Professor"
        SYSTEM = "system", "System"

    class Status(models.TextChoices):
        COMPLETE = "complete", "Complete"
        STREAMING = "streaming", "Streaming"
        INTERRUPTED = "interrupted", "Interrupted"
        FAILED = "failed", "Failed"

    class Guardrail(models.TextChoices):
        NONE = "", "Not checked"
        ON_TOPIC = "on_topic", "On topic"
        OFF_TOPIC = "off_topic", "Off topic"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # Empty while a tutor reply streams: the number is taken when the reply is final, so `seq`
    # order is the order in which events were persisted and broadcast (no gaps, no reordering).
    seq = models.PositiveBigIntegerField(null=True, blank=True)
    role = models.CharField(max_length=20, choices=Role.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    text = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.COMPLETE)
    guardrail = models.CharField(max_length=20, choices=Guardrail.choices, blank=True, default="")
    citations = models.JSONField(default=list, blank=True)
    model = models.CharField(max_length=200, blank=True)
    offline = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # Why a tutor reply failed or was cut short, for the professor and the logs.
    error = models.TextField(blank=True)
    # A note shown with the reply, e.g. that the tenant's budget moved it to a cheaper model.
    notice = models.CharField(max_length=300, blank=True)
    # A student's question: typed or spoken; if spoken, the STT engine and (the tenant's
    # keep_audio) the utterance as WAV, purged past retention like a segment's audio.
    source = models.CharField(
        max_length=10, choices=TranscriptSegment.Source.choices, default=TranscriptSegment.Source.TEXT
    )
    provider = models.CharField(max_length=50, blank=True)
    audio = models.FileField(upload_to="audio/%Y/%m/%d/", blank=True, max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_seq_unique"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.role}: {self.text[:40]}"
