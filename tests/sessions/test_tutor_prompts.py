"""Prompts come from the admin's versioned templates: the tenant's own active version wins over the
global one, each teaching mode has its own, the history is token-budgeted, and a template renders
whether or not passages and a lecture buffer are there."""

from __future__ import annotations

import pytest

from courses.services import PROMPT_BODIES
from sessions.providers.base import HistoryLine, LectureLine, Passage, TutorContext
from sessions.services import prompt_template_new_version
from sessions.tutor import prompts
from tests import factories

pytestmark = pytest.mark.django_db


def context(**overrides) -> TutorContext:
    values = {
        "tenant_id": 1, "course_id": 1, "course_code": "CS101", "course_title": "Introduction to Programming",
        "question": "How does a for loop stop?", "student_name": "Grace", "persona_name": "Professor Ada",
        "persona_style": "Warm and patient.", "scope_terms": ["loop", "recursion"],
    }
    values.update(overrides)
    return TutorContext(**values)


def test_the_tenants_active_version_wins_over_the_global_one(tenant, other_tenant):
    factories.PromptTemplateFactory(tenant=None, kind="socratic", body="GLOBAL {{ student_name }}")
    own = factories.PromptTemplateFactory(tenant=tenant, kind="socratic", body="OWN {{ student_name }}")

    assert prompts.prompt_template_resolve(tenant_id=tenant.pk, kind="socratic").template_id == own.pk
    other = prompts.prompt_template_resolve(tenant_id=other_tenant.pk, kind="socratic")
    assert prompts.prompt_render(other, context()) == "GLOBAL Grace"


def test_a_new_version_takes_effect_and_the_old_one_does_not(tenant):
    v1 = factories.PromptTemplateFactory(tenant=None, kind="teacher", body="v1 {{ question }}")
    v2 = prompt_template_new_version(source=v1, tenant_id=None, created_by=None)
    v2.body = "v2 {{ question }}"
    v2.save()
    resolved = prompts.prompt_template_resolve(tenant_id=tenant.pk, kind="teacher")
    assert (resolved.template_id, resolved.version) == (v2.pk, 2)
    assert prompts.prompt_render(resolved, context()).startswith("v2 ")


def test_without_any_row_the_built_in_default_is_used(tenant):
    resolved = prompts.prompt_template_resolve(tenant_id=tenant.pk, kind="qa")
    assert resolved.template_id is None
    assert resolved.body == PROMPT_BODIES["qa"][1]


@pytest.mark.parametrize("mode", ["socratic", "teacher", "qa", "quiz_lock"])
def test_each_mode_renders_its_own_prompt_without_passages_or_lecture(tenant, mode):
    resolved = prompts.prompt_template_resolve(tenant_id=tenant.pk, kind=prompts.MODE_TO_KIND[mode])
    text = prompts.prompt_render(resolved, context(teaching_mode=mode))
    assert "Professor Ada" in text and "Grace" in text and "CS101" in text
    assert "loop, recursion" in text
    assert "No course material matched" in text  # the empty slot renders, no stray tags
    assert "{%" not in text and "{{" not in text
    assert {"socratic": "Socratic", "teacher": "teacher", "qa": "questions and answers", "quiz_lock": "quiz lock"}[mode] in text


def test_passages_lecture_and_history_fill_their_slots(tenant):
    resolved = prompts.prompt_template_resolve(tenant_id=tenant.pk, kind="socratic")
    text = prompts.prompt_render(
        resolved,
        context(
            passages=[Passage(document="Notes", page=3, text="A loop repeats a block.")],
            lecture=[LectureLine(at="14:32", text="Loops end when the condition is false.")],
            history=[HistoryLine(role="student", name="Grace", text="I tried range(3).")],
        ),
    )
    assert "[Notes, p. 3] A loop repeats a block." in text
    assert "[14:32] Loops end when the condition is false." in text
    assert "Grace (student): I tried range(3)." in text


def test_a_template_broken_in_the_admin_falls_back_to_the_default(tenant):
    factories.PromptTemplateFactory(tenant=tenant, kind="socratic", body="{% if %}broken")
    text = prompts.prompt_render(prompts.prompt_template_resolve(tenant_id=tenant.pk, kind="socratic"), context())
    assert "Teaching mode: Socratic" in text


def test_history_keeps_the_newest_lines_within_the_token_budget(settings):
    settings.TUTOR_HISTORY_MESSAGES = 10
    settings.TUTOR_HISTORY_TOKEN_BUDGET = 30  # about 120 characters
    lines = [HistoryLine(role="student", name="G", text=f"{n:02d} " + "x" * 37) for n in range(8)]  # 10 tokens each
    kept = prompts.history_within_budget(lines)
    assert [line.text[:2] for line in kept] == ["05", "06", "07"]


def test_history_is_capped_by_message_count_too(settings):
    settings.TUTOR_HISTORY_MESSAGES = 2
    settings.TUTOR_HISTORY_TOKEN_BUDGET = 10_000
    lines = [HistoryLine(role="student", name="G", text=str(n)) for n in range(5)]
    assert [line.text for line in prompts.history_within_budget(lines)] == ["3", "4"]


def test_an_overlong_last_line_is_cut_not_dropped(settings):
    settings.TUTOR_HISTORY_TOKEN_BUDGET = 10
    kept = prompts.history_within_budget([HistoryLine(role="student", name="G", text="y" * 1000)])
    assert len(kept) == 1 and len(kept[0].text) < 100


def test_tutor_messages_are_the_system_prompt_then_the_question(tenant):
    resolved = prompts.prompt_template_resolve(tenant_id=tenant.pk, kind="socratic")
    messages = prompts.tutor_messages(context=context(), prompt=resolved)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "How does a for loop stop?"
