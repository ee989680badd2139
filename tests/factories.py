"""factory_boy factories for every model the tests build.

Factories keep tenants consistent: a course's professor, students and sessions all belong to the
course's tenant unless a test says otherwise.
"""

from __future__ import annotations

import factory
from django.utils import timezone

from analytics.models import SessionAnalytics, StudentProgress, UsageEvent
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

PASSWORD = "correct horse battery staple"


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"University {n}")
    slug = factory.Sequence(lambda n: f"uni-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    tenant = factory.SubFactory(TenantFactory)
    role = User.Role.STUDENT

    @factory.post_generation
    def password(obj, create, extracted, **kwargs):
        obj.set_password(extracted or PASSWORD)
        if create:
            obj.save(update_fields=["password"])


class StaffUserFactory(UserFactory):
    role = User.Role.STAFF
    is_staff = True


class ProfessorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Professor

    user = factory.SubFactory(UserFactory, role=User.Role.PROFESSOR)
    tenant = factory.SelfAttribute("user.tenant")
    title = "Dr."


class StudentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Student

    user = factory.SubFactory(UserFactory, role=User.Role.STUDENT)
    tenant = factory.SelfAttribute("user.tenant")


class CourseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Course
        skip_postgeneration_save = True

    tenant = factory.SubFactory(TenantFactory)
    code = factory.Sequence(lambda n: f"CS{100 + n}")
    title = factory.Faker("catch_phrase")
    scope_terms = ["python", "variable", "loop", "function", "recursion"]

    @factory.post_generation
    def professors(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.professors.add(*extracted)


class EnrollmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Enrollment

    course = factory.SubFactory(CourseFactory)
    student = factory.SubFactory(
        StudentFactory, user__tenant=factory.SelfAttribute("...course.tenant")
    )


class CourseDocumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CourseDocument

    course = factory.SubFactory(CourseFactory)
    title = factory.Sequence(lambda n: f"Notes {n}")
    content_type = "text/markdown"
    status = CourseDocument.Status.READY
    progress = 100


class DocumentChunkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DocumentChunk

    document = factory.SubFactory(CourseDocumentFactory)
    position = factory.Sequence(lambda n: n)
    text = factory.Faker("paragraph")


class AvatarPersonaFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AvatarPersona

    tenant = None
    name = factory.Sequence(lambda n: f"Persona {n}")


class PromptTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PromptTemplate

    tenant = None
    kind = PromptTemplate.Kind.SOCRATIC
    name = "Socratic"
    version = 1
    body = "You are {{ persona.name }}, tutoring {{ student_name }} in {{ course.title }}."


class LLMModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LLMModel

    tenant = None
    position = factory.Sequence(lambda n: n + 1)
    model_name = "gpt-4o-mini"


class LiveSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LiveSession

    course = factory.SubFactory(CourseFactory)
    tenant = factory.SelfAttribute("course.tenant")
    professor = factory.SubFactory(
        ProfessorFactory, user__tenant=factory.SelfAttribute("...course.tenant")
    )
    title = factory.Sequence(lambda n: f"Session {n}")
    room_count = 2


class BreakoutRoomFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BreakoutRoom

    session = factory.SubFactory(LiveSessionFactory)
    number = factory.Sequence(lambda n: n + 1)
    name = factory.LazyAttribute(lambda r: f"Room {r.number}")


class RoomAssignmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoomAssignment

    room = factory.SubFactory(BreakoutRoomFactory)
    session = factory.SelfAttribute("room.session")
    student = factory.SubFactory(
        StudentFactory, user__tenant=factory.SelfAttribute("...room.session.tenant")
    )


class TranscriptSegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TranscriptSegment

    session = factory.SubFactory(LiveSessionFactory)
    room = None
    seq = factory.Sequence(lambda n: n + 1)
    speaker_kind = "student"
    speaker_name = "Ada"
    text = "What is a variable?"


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    course = factory.SubFactory(CourseFactory)
    tenant = factory.SelfAttribute("course.tenant")
    student = factory.SubFactory(
        StudentFactory, user__tenant=factory.SelfAttribute("...course.tenant")
    )


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    seq = factory.Sequence(lambda n: n + 1)
    role = Message.Role.STUDENT
    text = "How do loops work?"


class StudentProgressFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StudentProgress

    session = factory.SubFactory(LiveSessionFactory)
    student = factory.SubFactory(
        StudentFactory, user__tenant=factory.SelfAttribute("...session.tenant")
    )
    engagement_score = 50


class SessionAnalyticsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SessionAnalytics

    session = factory.SubFactory(LiveSessionFactory)


class UsageEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageEvent

    tenant = factory.SubFactory(TenantFactory)
    kind = UsageEvent.Kind.LLM
    provider = "openai"
    model = "gpt-4o-mini"
    created_at = factory.LazyFunction(timezone.now)
