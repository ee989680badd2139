"""`seed_demo`: the demo tenant of `make run`, idempotent, with working logins."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.template import Context, Template

from courses.models import Course, CourseDocument, Enrollment, Tenant, User
from courses.services import CS101_SCOPE_TERMS, demo_seed
from sessions.models import AvatarPersona, LLMModel, PromptTemplate

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _row_counts() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in apps.get_models()}


def test_seed_creates_the_demo_tenant_people_and_course():
    result = demo_seed()

    tenant = Tenant.objects.get(slug="demo")
    assert tenant.name == "Demo University" == result["tenant"]
    course = Course.objects.get(tenant=tenant, code="CS101")
    assert course.title == "Introduction to Programming"
    assert course.professors.get().user.username == "professor"
    assert set(CS101_SCOPE_TERMS) >= {
        "variable",
        "loop",
        "function",
        "recursion",
        "list",
        "dictionary",
        "string",
        "conditional",
        "python",
        "algorithm",
        "debugging",
    }
    assert len(course.scope_terms) >= 30
    assert {"football", "celebrity", "stock market", "weather", "recipe"} <= set(course.off_topic_terms)
    enrolled = Enrollment.objects.filter(course=course, status="active")
    assert sorted(e.student.user.username for e in enrolled) == sorted(f"student{n}" for n in range(1, 11))

    professor = User.objects.get(username="professor")
    assert professor.role == "professor" and professor.tenant == tenant and professor.first_name
    staff = User.objects.get(username="staff")
    assert (staff.role, staff.is_staff, staff.tenant) == ("staff", True, tenant)
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.tenant is None
    assert result["logins"] == ["professor", *(f"student{n}" for n in range(1, 11)), "staff", "admin"]


def test_seed_stores_and_ingests_the_course_notes():
    demo_seed()

    document = CourseDocument.objects.get(course__code="CS101", title="CS101 course notes")
    assert (document.status, document.progress, document.error) == ("ready", 100, "")
    assert document.chunks.count() > 5
    headings = set(document.chunks.values_list("heading", flat=True))
    assert {"5. Loops", "8. Recursion", "10. Debugging"} <= headings
    assert all(chunk.token_count > 0 and chunk.page is None for chunk in document.chunks.all())
    text = document.file.read().decode()
    assert document.size_bytes == len(text.encode())
    for heading in [
        "Variables and types",
        "Conditionals",
        "Loops",
        "Functions",
        "Lists and dictionaries",
        "Recursion",
        "Debugging",
    ]:
        assert re.search(rf"^## .*{heading}", text, re.MULTILINE), heading
    assert 1500 <= len(text.split()) <= 2600


def test_seed_sets_up_the_tutor_configuration():
    demo_seed()

    persona = AvatarPersona.objects.get(name="Professor Ada")
    assert persona.tenant.slug == "demo" and persona.default_teaching_mode == "socratic"
    assert persona.voice_openai and persona.voice_piper
    assert Course.objects.get(code="CS101").default_persona == persona

    kinds = {"socratic", "teacher", "qa", "quiz_lock", "guardrail", "summary", "analytics"}
    prompts = PromptTemplate.objects.filter(tenant__isnull=True, is_active=True, version=1)
    assert set(prompts.values_list("kind", flat=True)) == kinds
    assert "YES" in prompts.get(kind="guardrail").body and "NO" in prompts.get(kind="guardrail").body

    chain = list(LLMModel.objects.filter(tenant__isnull=True).order_by("position"))
    assert [(m.position, m.provider, m.model_name) for m in chain] == [
        (1, "openai", "gpt-4o-mini"),
        (2, "openai", "gpt-4.1-nano"),
        (3, "offline", "offline-socratic"),
    ]
    assert chain[0].price_per_1k_prompt_tokens > chain[1].price_per_1k_prompt_tokens
    assert chain[2].price_per_1k_prompt_tokens == chain[2].price_per_1k_completion_tokens == 0


@pytest.mark.parametrize(
    "kind", ["socratic", "teacher", "qa", "quiz_lock", "guardrail", "summary", "analytics"]
)
def test_prompt_bodies_render_with_the_documented_context(kind):
    demo_seed()
    body = PromptTemplate.objects.get(tenant__isnull=True, kind=kind).body
    context = {
        "persona": {"name": "Professor Ada", "style_prompt": "Be kind."},
        "student_name": "Amara",
        "course": {"title": "Introduction to Programming", "code": "CS101"},
        "scope_terms": ["loop", "function"],
        "teaching_mode": kind,
        "room_topic": "Loops",
        "history": [{"role": "student", "name": "Amara", "text": "Is x < y a boolean?"}],
        "passages": [{"document": "CS101 course notes", "page": 2, "text": "A loop repeats a block."}],
        "lecture": [{"at": "10:02", "text": "Today we look at for loops."}],
        "question": "Why does range(1, 10) stop at 9?",
    }

    text = Template(body).render(Context(context))

    assert "CS101" in text
    assert "x < y" in text  # plain text for a model: never HTML-escaped
    if kind not in {"summary", "analytics"}:
        assert "Why does range(1, 10) stop at 9?" in text


def test_second_run_changes_no_row_counts():
    demo_seed()
    before = _row_counts()

    result = demo_seed()

    assert _row_counts() == before
    assert not any(result["created"].values())
    assert CourseDocument.objects.filter(title="CS101 course notes").count() == 1


def test_second_run_keeps_admin_edits_of_the_tutor_configuration():
    demo_seed()
    v1 = PromptTemplate.objects.get(tenant__isnull=True, kind="socratic")
    v1.is_active = False
    v1.save()
    PromptTemplate.objects.create(kind="socratic", name="Socratic v2", version=2, body="v2")
    LLMModel.objects.filter(tenant__isnull=True, position=1).update(model_name="llama-3.1-8b-instant")

    demo_seed()

    assert PromptTemplate.objects.get(tenant__isnull=True, kind="socratic", is_active=True).version == 2
    assert LLMModel.objects.get(tenant__isnull=True, position=1).model_name == "llama-3.1-8b-instant"


def test_second_run_restores_a_lost_notes_file():
    demo_seed()
    document = CourseDocument.objects.get(title="CS101 course notes")
    document.file.storage.delete(document.file.name)

    demo_seed()

    document.refresh_from_db()
    assert document.file.storage.exists(document.file.name)
    assert CourseDocument.objects.filter(title="CS101 course notes").count() == 1


@pytest.mark.parametrize("username", ["professor", "student1", "student10", "staff", "admin"])
def test_seeded_logins_work_through_the_login_form(client, username):
    demo_seed()
    demo_seed()  # passwords survive a re-run

    response = client.post("/login/", {"username": username, "password": "demo"})

    assert response.status_code == 302, response.content[:300]
    assert int(client.session["_auth_user_id"]) == User.objects.get(username=username).pk


def test_professor_sees_cs101_after_seeding(client):
    demo_seed()
    client.post("/login/", {"username": "professor", "password": "demo"})

    response = client.get("/")

    assert [c.code for c in response.context["courses"]] == ["CS101"]
    assert response.context["courses"][0].student_count == 10


def test_command_prints_what_it_created_and_the_logins():
    out = StringIO()
    call_command("seed_demo", stdout=out)
    first = out.getvalue()
    out = StringIO()
    call_command("seed_demo", stdout=out)
    second = out.getvalue()

    assert "Demo data created" in first and "10 students" in first and "1 tenant," in first
    assert "nothing to create" in second
    for text in (first, second):
        assert "Demo logins (password: demo): professor, student1..student10, staff, admin" in text
