"""The Django admin: every model renders, a tenant's staff see only their tenant, queries stay flat."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from analytics.models import (
    BudgetAlert,
    DataRightsAudit,
    SessionAnalytics,
    StudentProgress,
    UsageDaily,
    UsageEvent,
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
from tests import factories

pytestmark = pytest.mark.django_db

OUR_APPS = ("courses", "live_sessions", "analytics")
OUR_ADMINS = {m: a for m, a in admin.site._registry.items() if m._meta.app_label in OUR_APPS}
OUR_MODELS = sorted(OUR_ADMINS, key=lambda m: m._meta.label)

_versions = itertools.count(1)

# One more row of a model in tenant `t`; callable again and again without breaking a constraint.
MAKE_ROW: dict[type[Model], Callable[[Tenant], Model]] = {
    Tenant: lambda t: factories.TenantFactory(),
    User: lambda t: factories.UserFactory(tenant=t),
    Professor: lambda t: factories.ProfessorFactory(user__tenant=t),
    Student: lambda t: factories.StudentFactory(user__tenant=t),
    Course: lambda t: factories.CourseFactory(tenant=t),
    Enrollment: lambda t: factories.EnrollmentFactory(course__tenant=t),
    CourseDocument: lambda t: factories.CourseDocumentFactory(course__tenant=t),
    DocumentChunk: lambda t: factories.DocumentChunkFactory(document__course__tenant=t, embedding=[0.1, 0.2]),
    AvatarPersona: lambda t: factories.AvatarPersonaFactory(tenant=t),
    PromptTemplate: lambda t: factories.PromptTemplateFactory(tenant=t, version=next(_versions), is_active=False),
    LLMModel: lambda t: factories.LLMModelFactory(tenant=t),
    LiveSession: lambda t: factories.LiveSessionFactory(
        course__tenant=t, started_at=timezone.now() - timedelta(minutes=30)
    ),
    BreakoutRoom: lambda t: factories.BreakoutRoomFactory(session__course__tenant=t),
    RoomAssignment: lambda t: factories.RoomAssignmentFactory(room__session__course__tenant=t),
    TranscriptSegment: lambda t: factories.TranscriptSegmentFactory(session__course__tenant=t),
    Conversation: lambda t: factories.ConversationFactory(course__tenant=t),
    Message: lambda t: factories.MessageFactory(conversation__course__tenant=t),
    StudentProgress: lambda t: factories.StudentProgressFactory(session__course__tenant=t),
    SessionAnalytics: lambda t: factories.SessionAnalyticsFactory(session__course__tenant=t),
    UsageEvent: lambda t: factories.UsageEventFactory(tenant=t, cost=Decimal("0.004200")),
    UsageDaily: lambda t: UsageDaily.objects.create(
        tenant=t, day=timezone.now().date() - timedelta(days=next(_versions)), kind="llm", provider="openai"
    ),
    BudgetAlert: lambda t: BudgetAlert.objects.create(
        tenant=t, month=timezone.now().date() - timedelta(days=31 * next(_versions)), threshold=80
    ),
    DataRightsAudit: lambda t: DataRightsAudit.objects.create(tenant=t, student_id=next(_versions), action="export"),
}

# Models a tenant's staff may not see across tenants: all of them (Tenant: only their own).
SCOPED_MODELS = [m for m in OUR_MODELS if m is not Tenant]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Factories hash a password per user; PBKDF2 would make the 20-row tests slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def url(model: type[Model], view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def assert_not_reachable(response, also: int | None = None) -> None:
    """Another tenant's object: 404, or the admin's "does not exist" redirect to its index."""
    assert response.status_code in (302, 404, also), response.status_code
    if response.status_code == 302:
        assert response["Location"] == reverse("admin:index")


@pytest.fixture
def world(tenant, course, student, professor):
    """One row of every model of ours, linked like real data, so pages show inlines and counts."""
    persona = factories.AvatarPersonaFactory()
    factories.PromptTemplateFactory()
    factories.LLMModelFactory()
    document = factories.CourseDocumentFactory(course=course, uploaded_by=professor.user)
    factories.DocumentChunkFactory(document=document, position=0, embedding=[0.1, 0.2])
    factories.DocumentChunkFactory(document=document, position=1)
    session = factories.LiveSessionFactory(
        course=course, professor=professor, persona=persona, started_at=timezone.now() - timedelta(hours=1)
    )
    room = factories.BreakoutRoomFactory(session=session, number=1)
    factories.RoomAssignmentFactory(room=room, student=student, assigned_by=professor.user)
    factories.TranscriptSegmentFactory(session=session, room=room, speaker_user=student.user)
    conversation = factories.ConversationFactory(course=course, student=student, title="Practice")
    factories.MessageFactory(conversation=conversation, seq=1, author=student.user)
    factories.MessageFactory(conversation=conversation, seq=2, role=Message.Role.TUTOR, text="Think of a loop.")
    factories.StudentProgressFactory(session=session, student=student)
    factories.SessionAnalyticsFactory(session=session)
    factories.UsageEventFactory(tenant=tenant, course=course, session=session, cost=Decimal("0.004200"))
    for model in (UsageDaily, BudgetAlert, DataRightsAudit):
        MAKE_ROW[model](tenant)
    return {"tenant": tenant, "user": professor.user}


def a_row_of(model: type[Model], world: dict) -> Model:
    if model is Tenant:
        return world["tenant"]
    if model is User:
        return world["user"]
    return model._default_manager.first()


# --- every model ---------------------------------------------------------------------------------


def test_every_model_of_our_apps_has_an_admin():
    ours = {m for label in OUR_APPS for m in apps.get_app_config(label).get_models()}
    assert ours == set(OUR_ADMINS)
    assert set(MAKE_ROW) == ours


@pytest.mark.parametrize("model", OUR_MODELS, ids=lambda m: m._meta.label)
def test_superuser_opens_changelist_add_and_change_pages(client, superuser, world, model):
    client.force_login(superuser)
    row = a_row_of(model, world)

    changelist = client.get(url(model, "changelist"))
    assert changelist.status_code == 200
    assert url(model, "change", row.pk) in changelist.content.decode()

    assert client.get(url(model, "add")).status_code == 200
    assert client.get(url(model, "change", row.pk)).status_code == 200


@pytest.mark.parametrize("model", OUR_MODELS, ids=lambda m: m._meta.label)
def test_superuser_searches_every_changelist(client, superuser, world, model):
    client.force_login(superuser)
    assert client.get(url(model, "changelist"), {"q": "a"}).status_code == 200


def test_computed_columns_are_shown(client, superuser, world, course):
    client.force_login(superuser)

    courses = client.get(url(Course, "changelist"))
    result = courses.context["cl"].result_list.get(pk=course.pk)
    assert (result.student_count, result.document_count) == (1, 1)

    session = LiveSession.objects.get()
    sessions = client.get(url(LiveSession, "changelist"))
    result = sessions.context["cl"].result_list.get(pk=session.pk)
    assert (result.room_total, result.student_total) == (1, 1)
    assert "1:00:0" in sessions.content.decode()  # the duration column, an hour in

    conversations = client.get(url(Conversation, "changelist"))
    assert conversations.context["cl"].result_list.get().message_count == 2

    documents = client.get(url(CourseDocument, "changelist"))
    assert documents.context["cl"].result_list.get().chunk_count == 2

    assert "$0.0042" in client.get(url(UsageEvent, "changelist")).content.decode()


def test_course_page_lists_enrollments_and_documents_inline(client, superuser, world, course, student):
    client.force_login(superuser)
    page = client.get(url(Course, "change", course.pk)).content.decode()
    assert str(student) in page
    assert CourseDocument.objects.get().title in page


def test_conversation_page_shows_messages_read_only(client, superuser, world):
    client.force_login(superuser)
    conversation = Conversation.objects.get()
    response = client.get(url(Conversation, "change", conversation.pk))
    inline = next(f for f in response.context["inline_admin_formsets"] if f.opts.model is Message)
    assert not inline.has_add_permission and not inline.has_change_permission
    assert "Think of a loop." in response.content.decode()


def test_document_page_shows_a_limited_number_of_chunks(client, superuser, course):
    document = factories.CourseDocumentFactory(course=course)
    for position in range(25):
        factories.DocumentChunkFactory(document=document, position=position)
    client.force_login(superuser)
    response = client.get(url(CourseDocument, "change", document.pk))
    inline = next(f for f in response.context["inline_admin_formsets"] if f.opts.model is DocumentChunk)
    assert len(inline.formset.forms) == 20
    assert not inline.has_change_permission


# --- tenant scoping -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m._meta.label)
def test_tenant_staff_see_only_their_tenants_rows(client, staff_user, tenant, other_tenant, model):
    own, theirs = MAKE_ROW[model](tenant), MAKE_ROW[model](other_tenant)
    client.force_login(staff_user)

    changelist = client.get(url(model, "changelist"))
    assert changelist.status_code == 200
    page = changelist.content.decode()
    assert url(model, "change", own.pk) in page
    assert url(model, "change", theirs.pk) not in page
    assert theirs.pk not in {row.pk for row in changelist.context["cl"].result_list}

    assert client.get(url(model, "change", own.pk)).status_code == 200
    assert_not_reachable(client.get(url(model, "change", theirs.pk)))
    assert_not_reachable(client.get(url(model, "history", theirs.pk)))
    # Records tenant staff only read answer 403 to any delete, before looking the object up.
    assert_not_reachable(client.get(url(model, "delete", theirs.pk)), also=403)
    assert_not_reachable(client.post(url(model, "delete", theirs.pk), {"post": "yes"}), also=403)
    assert model._default_manager.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize(
    "model", [Course, LiveSession, User, Enrollment, Message], ids=lambda m: m._meta.label
)
def test_other_tenants_object_is_not_found_for_tenant_staff(client, staff_user, other_tenant, model):
    theirs = MAKE_ROW[model](other_tenant)
    client.force_login(staff_user)
    response = client.get(url(model, "change", theirs.pk), follow=True)
    assert response.redirect_chain == [(reverse("admin:index"), 302)]
    assert "doesn\u2019t exist" in response.content.decode()  # the admin's "does not exist" message


READ_ONLY_FOR_TENANT_STAFF = {
    TranscriptSegment, Message, StudentProgress, SessionAnalytics, UsageEvent, UsageDaily, BudgetAlert, DataRightsAudit,
}


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m._meta.label)
def test_tenant_staff_add_pages(client, staff_user, model):
    client.force_login(staff_user)
    expected = 403 if model in READ_ONLY_FOR_TENANT_STAFF else 200
    assert client.get(url(model, "add")).status_code == expected


def room_form(room, **assignments) -> dict:
    data = {
        "session": room.session_id, "number": room.number, "name": room.name, "topic": "", "goal": "",
        "status": room.status, "teaching_mode": "",
        "assignments-TOTAL_FORMS": str(len(assignments)), "assignments-INITIAL_FORMS": "0",
        "assignments-MIN_NUM_FORMS": "0", "assignments-MAX_NUM_FORMS": "1000",
    }
    for index, student in enumerate(assignments.values()):
        data[f"assignments-{index}-student"] = student.pk
        data[f"assignments-{index}-room"] = room.pk
    return data


def test_students_are_placed_in_a_room_inline(client, staff_user, course, student):
    room = factories.BreakoutRoomFactory(session__course=course, number=1)
    client.force_login(staff_user)
    response = client.post(url(BreakoutRoom, "change", room.pk), room_form(room, first=student))
    assert response.status_code == 302
    assignment = RoomAssignment.objects.get()
    assert (assignment.room, assignment.session, assignment.assigned_by) == (room, room.session, staff_user)


def test_a_student_gets_one_room_per_session_in_the_inline_too(client, staff_user, course, student):
    first = factories.BreakoutRoomFactory(session__course=course, number=1)
    second = factories.BreakoutRoomFactory(session=first.session, number=2)
    factories.RoomAssignmentFactory(room=first, student=student)
    client.force_login(staff_user)
    response = client.post(url(BreakoutRoom, "change", second.pk), room_form(second, again=student))
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.errors[0]
    assert "Session and Student already exists" in str(errors)
    assert RoomAssignment.objects.get().room == first


def test_tenant_staff_need_no_model_permissions(client, staff_user):
    assert not staff_user.user_permissions.exists() and not staff_user.groups.exists()
    client.force_login(staff_user)
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    labels = {app["app_label"] for app in index.context["app_list"]}
    assert set(OUR_APPS) <= labels
    assert "auth" not in labels  # groups and permissions stay the superuser's


def test_other_admin_users_keep_djangos_permissions(client, tenant):
    """A professor made `is_staff` by hand gets no rights from the tenant-staff rule."""
    professor_with_admin = factories.UserFactory(tenant=tenant, role=User.Role.PROFESSOR, is_staff=True)
    client.force_login(professor_with_admin)
    assert client.get(url(Course, "changelist")).status_code == 403


def test_other_admin_users_with_permissions_still_see_only_their_tenant(client, course, outsider):
    professor_with_admin = factories.UserFactory(tenant=course.tenant, role=User.Role.PROFESSOR, is_staff=True)
    professor_with_admin.user_permissions.add(Permission.objects.get(codename="view_course"))
    client.force_login(professor_with_admin)
    listed = client.get(url(Course, "changelist")).context["cl"].result_list
    assert list(listed) == [course]
    assert client.get(url(Course, "add")).status_code == 403


def test_tenant_staff_do_not_choose_which_settings_hold_api_keys(client, staff_user, tenant):
    client.force_login(staff_user)
    response = client.post(
        url(LLMModel, "add"),
        {
            "position": 1, "enabled": "on", "provider": "openai", "model_name": "gpt-4o-mini",
            "api_key_setting": "SECRET_KEY", "base_url_setting": "DATABASE_URL",
            "temperature": "0.7", "max_output_tokens": 800,
            "price_per_1k_prompt_tokens": "0", "price_per_1k_completion_tokens": "0",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = LLMModel.objects.get()
    assert (created.tenant, created.api_key_setting, created.base_url_setting) == (
        tenant, "OPENAI_API_KEY", "OPENAI_BASE_URL",
    )


def test_tenant_staff_see_only_their_own_tenant(client, staff_user, tenant, other_tenant):
    client.force_login(staff_user)
    changelist = client.get(url(Tenant, "changelist"))
    assert list(changelist.context["cl"].result_list) == [tenant]
    assert_not_reachable(client.get(url(Tenant, "change", other_tenant.pk)))
    assert client.get(url(Tenant, "add")).status_code == 403
    assert client.get(url(Tenant, "delete", tenant.pk)).status_code == 403


def test_tenant_staff_cannot_change_their_tenants_service_tier(client, staff_user, tenant):
    client.force_login(staff_user)
    response = client.post(
        url(Tenant, "change", tenant.pk),
        {"name": "Demo U", "retention_days": 30, "service_tier": "premium", "monthly_budget": "0"},
    )
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.name, tenant.retention_days) == ("Demo U", 30)
    assert tenant.service_tier == Tenant.ServiceTier.STANDARD and tenant.monthly_budget is None


def course_form(**overrides) -> dict:
    data = {
        "code": "BIO200", "title": "Cells", "description": "", "is_active": "on",
        "default_teaching_mode": "socratic", "guardrail_enabled": "on",
        "scope_terms": "[]", "off_topic_terms": "[]", "default_persona": "",
    }
    for prefix in ("enrollments", "documents"):
        data.update({
            f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000",
        })
    data.update(overrides)
    return data


def test_course_created_by_tenant_staff_gets_their_tenant(client, staff_user, tenant, other_tenant, professor):
    client.force_login(staff_user)
    response = client.post(
        url(Course, "add"), course_form(tenant=other_tenant.pk, professors=[professor.pk])
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = Course.objects.get(code="BIO200")
    assert created.tenant == tenant
    assert list(created.professors.all()) == [professor]


def test_tenant_staff_cannot_pick_another_tenants_rows(client, staff_user, outsider):
    client.force_login(staff_user)
    response = client.post(url(Course, "add"), course_form(professors=[outsider.pk]))
    assert response.status_code == 200
    assert "professors" in response.context["adminform"].form.errors
    assert not Course.objects.filter(code="BIO200").exists()


def test_foreign_key_choices_are_limited_to_the_tenant(client, staff_user, course, outsider):
    global_persona = factories.AvatarPersonaFactory()
    their_persona = factories.AvatarPersonaFactory(tenant=outsider.tenant)
    client.force_login(staff_user)
    fields = client.get(url(LiveSession, "add")).context["adminform"].form.fields
    assert set(fields["course"].queryset) == {course}
    assert set(fields["professor"].queryset) == set(Professor.objects.filter(tenant=course.tenant))
    assert global_persona in fields["persona"].queryset
    assert their_persona not in fields["persona"].queryset
    assert fields["tenant"].disabled


def test_autocomplete_offers_only_the_tenants_rows(client, staff_user, student, outsider):
    their_student = factories.StudentFactory(user__tenant=outsider.tenant)
    client.force_login(staff_user)
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "courses", "model_name": "enrollment", "field_name": "student", "term": ""},
    )
    ids = {int(r["id"]) for r in response.json()["results"]}
    assert student.pk in ids and their_student.pk not in ids


def test_superuser_cannot_tie_rows_of_two_tenants(client, superuser, course, outsider):
    client.force_login(superuser)
    response = client.post(url(LiveSession, "add"), {
        "tenant": course.tenant_id, "course": course.pk, "professor": outsider.pk, "title": "Mixed",
        "teaching_mode": "socratic", "room_count": 1, "assignment_strategy": "round_robin",
        "meeting_provider": "builtin",
        "rooms-TOTAL_FORMS": "0", "rooms-INITIAL_FORMS": "0", "rooms-MIN_NUM_FORMS": "0",
        "rooms-MAX_NUM_FORMS": "1000",
    })
    assert response.status_code == 200
    assert "different tenants" in str(response.context["adminform"].form.non_field_errors())
    assert not LiveSession.objects.exists()


def test_global_rows_are_read_only_for_tenant_staff(client, staff_user):
    persona = factories.AvatarPersonaFactory(tenant=None, name="Global Ada")
    client.force_login(staff_user)
    assert persona.pk in {p.pk for p in client.get(url(AvatarPersona, "changelist")).context["cl"].result_list}
    page = client.get(url(AvatarPersona, "change", persona.pk))
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert client.post(url(AvatarPersona, "change", persona.pk), {"name": "Mine now"}).status_code == 403
    assert client.get(url(AvatarPersona, "delete", persona.pk)).status_code == 403
    persona.refresh_from_db()
    assert persona.name == "Global Ada" and persona.tenant is None


def test_tenant_staff_read_usage_but_do_not_edit_it(client, staff_user, tenant):
    event = factories.UsageEventFactory(tenant=tenant)
    client.force_login(staff_user)
    assert client.get(url(UsageEvent, "change", event.pk)).context["has_change_permission"] is False
    assert client.get(url(UsageEvent, "add")).status_code == 403
    assert client.post(url(UsageEvent, "delete", event.pk), {"post": "yes"}).status_code == 403


# --- users --------------------------------------------------------------------------------------


def test_tenant_staff_cannot_grant_superuser_or_move_a_user(client, staff_user, professor, other_tenant):
    user = professor.user
    client.force_login(staff_user)
    form = client.get(url(User, "change", user.pk)).context["adminform"].form
    assert "is_superuser" not in form.fields and "user_permissions" not in form.fields
    assert form.fields["tenant"].disabled

    response = client.post(url(User, "change", user.pk), {
        "username": user.username, "tenant": other_tenant.pk, "role": "staff", "is_active": "on",
        "is_staff": "on", "is_superuser": "on", "first_name": "", "last_name": "", "email": "",
    })
    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    assert user.tenant_id == staff_user.tenant_id
    assert not user.is_superuser
    assert (user.role, user.is_staff) == ("staff", True)


def test_superusers_are_out_of_reach_of_tenant_staff(client, staff_user, tenant):
    root_of_tenant = User.objects.create_superuser("tenantroot", "r@example.org", "x", tenant=tenant)
    client.force_login(staff_user)
    assert root_of_tenant not in client.get(url(User, "changelist")).context["cl"].result_list
    assert_not_reachable(client.get(url(User, "change", root_of_tenant.pk)))
    assert_not_reachable(client.get(reverse("admin:auth_user_password_change", args=[root_of_tenant.pk])))


def test_tenant_staff_add_a_user_to_their_tenant(client, staff_user, tenant, other_tenant):
    client.force_login(staff_user)
    response = client.post(url(User, "add"), {
        "username": "newprof", "usable_password": "true", "password1": "Xy7!long-password",
        "password2": "Xy7!long-password", "tenant": other_tenant.pk, "role": "professor",
        "first_name": "", "last_name": "", "email": "",
    })
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = User.objects.get(username="newprof")
    assert (created.tenant, created.role, created.is_superuser) == (tenant, "professor", False)


def test_superuser_must_give_a_new_user_a_tenant(client, superuser):
    client.force_login(superuser)
    response = client.post(url(User, "add"), {
        "username": "orphan", "usable_password": "true", "password1": "Xy7!long-password",
        "password2": "Xy7!long-password", "tenant": "", "role": "student",
    })
    assert response.status_code == 200
    assert "tenant" in response.context["adminform"].form.errors


# --- prompt versions ----------------------------------------------------------------------------


def test_save_as_new_version_activates_it_and_deactivates_the_old_one(client, superuser, tenant):
    v1 = factories.PromptTemplateFactory(tenant=tenant, body="Ask, do not tell.")
    client.force_login(superuser)
    response = client.post(
        url(PromptTemplate, "changelist"), {"action": "save_as_new_version", "_selected_action": [v1.pk]}
    )
    assert response.status_code == 302
    v1.refresh_from_db()
    v2 = PromptTemplate.objects.get(tenant=tenant, kind=v1.kind, version=2)
    assert not v1.is_active
    assert v2.is_active and v2.body == v1.body and v2.created_by == superuser
    assert PromptTemplate.objects.filter(tenant=tenant, kind=v1.kind, is_active=True).count() == 1


# --- query counts -------------------------------------------------------------------------------


def changelist_queries(client, model: type[Model]) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url(model, "changelist"))
    assert response.status_code == 200
    return len(queries)


def assert_flat_changelist(client, django_assert_max_num_queries, model, tenant) -> None:
    MAKE_ROW[model](tenant)
    client.get(url(model, "changelist"))  # warm-up: caches filled once per process
    with_one = changelist_queries(client, model)
    for _ in range(19):
        MAKE_ROW[model](tenant)
    with django_assert_max_num_queries(with_one):
        response = client.get(url(model, "changelist"))
    assert response.context["cl"].result_count >= 20
    assert changelist_queries(client, model) == with_one


@pytest.mark.parametrize("model", OUR_MODELS, ids=lambda m: m._meta.label)
def test_superuser_changelist_queries_do_not_grow_with_rows(
    client, superuser, tenant, django_assert_max_num_queries, model
):
    client.force_login(superuser)
    assert_flat_changelist(client, django_assert_max_num_queries, model, tenant)


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m._meta.label)
def test_tenant_staff_changelist_queries_do_not_grow_with_rows(
    client, staff_user, tenant, django_assert_max_num_queries, model
):
    client.force_login(staff_user)
    assert_flat_changelist(client, django_assert_max_num_queries, model, tenant)


# Change pages with inlines: (parent model, make the parent, add one child row to it).
INLINE_PAGES = {
    "course-enrollments": (Course, lambda c: c, lambda c, i: factories.EnrollmentFactory(course=c)),
    "session-rooms": (
        LiveSession,
        lambda c: factories.LiveSessionFactory(course=c),
        lambda s, i: factories.BreakoutRoomFactory(session=s, number=i),
    ),
    "room-assignments": (
        BreakoutRoom,
        lambda c: factories.BreakoutRoomFactory(session__course=c, number=1),
        lambda r, i: factories.RoomAssignmentFactory(room=r),
    ),
    "conversation-messages": (
        Conversation,
        lambda c: factories.ConversationFactory(course=c),
        lambda v, i: factories.MessageFactory(conversation=v, seq=i, author=factories.UserFactory(tenant=v.tenant)),
    ),
    "document-chunks": (
        CourseDocument,
        lambda c: factories.CourseDocumentFactory(course=c),
        lambda d, i: factories.DocumentChunkFactory(document=d, position=i),
    ),
}


@pytest.mark.parametrize("page", INLINE_PAGES)
@pytest.mark.parametrize("persona", ["superuser", "staff_user"])
def test_change_page_queries_do_not_grow_with_inline_rows(request, client, course, persona, page):
    model, make_parent, add_child = INLINE_PAGES[page]
    client.force_login(request.getfixturevalue(persona))
    parent = make_parent(course)
    add_child(parent, 1)
    change = url(model, "change", parent.pk)
    client.get(change)  # warm-up

    with CaptureQueriesContext(connection) as one:
        assert client.get(change).status_code == 200
    for index in range(2, 12):
        add_child(parent, index)
    with CaptureQueriesContext(connection) as eleven:
        assert client.get(change).status_code == 200
    assert len(eleven) == len(one)


def test_a_document_added_in_the_admin_is_ingested(client, superuser, course, settings, tmp_path, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MEDIA_ROOT = tmp_path
    settings.DOCUMENT_INGEST_IN_THREAD = False  # the Celery task, run in process by the test settings
    client.force_login(superuser)
    notes = SimpleUploadedFile(
        "loops.md", b"# Loops\n\nA for loop repeats a block once for every item of a sequence.\n",
        content_type="text/markdown",
    )
    with django_capture_on_commit_callbacks(execute=True):
        form = {"course": course.pk, "title": "Loop notes", "file": notes, "chunks-TOTAL_FORMS": 0, "chunks-INITIAL_FORMS": 0}
        response = client.post(url(CourseDocument, "add"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response.status_code
    document = CourseDocument.objects.get(title="Loop notes")
    assert (document.status, document.progress) == ("ready", 100)
    assert "for loop repeats" in document.chunks.get().text
