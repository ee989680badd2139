"""Fixtures for tutor tests: a practice conversation, course notes to retrieve from, and model
chains (the offline tutor, or models served by the local OpenAI stand-in).

Import the fixtures a module uses: `from tests.sessions.tutor_fixtures import *  # noqa: F403`.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests import factories
from tests.support.openai_standin import openai_standin  # noqa: F401  (a fixture)

NOTES = [
    (
        "Loops > for loops",
        "A for loop repeats a block once for every item of a sequence. The loop stops by itself "
        "when the sequence has no items left, so a for loop over range(5) runs five times.",
    ),
    (
        "Loops > while loops",
        "A while loop repeats as long as its condition is true. If nothing in the body changes the "
        "condition, the loop never stops: that is an infinite loop.",
    ),
    (
        "Recursion",
        "A recursive function calls itself on a smaller problem. Every recursive function needs a "
        "base case that returns without calling itself, or the recursion never ends.",
    ),
    (
        "Functions",
        "A function is defined with def, takes parameters and returns a value with return. A "
        "function without a return statement returns None.",
    ),
]


@pytest.fixture
def scoped_course(course):
    """The `course` persona with a CS scope and off-topic list, and a persona tutor."""
    course.scope_terms = ["python", "variable", "loop", "function", "recursion", "list", "string"]
    course.off_topic_terms = ["football", "celebrity", "weather", "recipe"]
    course.default_persona = factories.AvatarPersonaFactory(
        tenant=course.tenant, name="Professor Ada", style_prompt="Warm and patient."
    )
    course.save()
    return course


@pytest.fixture
def notes(scoped_course):
    document = factories.CourseDocumentFactory(course=scoped_course, title="CS101 notes")
    for position, (heading, text) in enumerate(NOTES):
        factories.DocumentChunkFactory(document=document, position=position, heading=heading, text=text)
    return document


@pytest.fixture
def conversation(scoped_course, student):
    return factories.ConversationFactory(
        course=scoped_course, student=student, mode="socratic", persona=None
    )


@pytest.fixture
def other_student(scoped_course):
    return factories.EnrollmentFactory(course=scoped_course, student__user__username="stud-other").student


@pytest.fixture
def offline_chain(db):
    return factories.LLMModelFactory(
        tenant=None, position=1, provider="offline", model_name="offline-socratic",
        base_url_setting="", api_key_setting="",
    )


def online_model(settings, standin, *, position: int = 1, name: str = "model-a", tenant=None, **prices):
    """An "openai" chain entry served by `standin`, its URL and key in test-only settings."""
    settings.TEST_LLM_BASE_URL = standin.base_url
    settings.TEST_LLM_API_KEY = "sk-test-key"
    return factories.LLMModelFactory(
        tenant=tenant, position=position, provider="openai", model_name=name,
        base_url_setting="TEST_LLM_BASE_URL", api_key_setting="TEST_LLM_API_KEY",
        price_per_1k_prompt_tokens=prices.get("prompt", Decimal("0.001")),
        price_per_1k_completion_tokens=prices.get("completion", Decimal("0.002")),
    )


@pytest.fixture
def online_chain(settings, openai_standin, db):  # noqa: F811  (the fixture imported above)
    """One online model (the stand-in), then the offline tutor as the last resort."""
    model = online_model(settings, openai_standin)
    factories.LLMModelFactory(
        tenant=None, position=2, provider="offline", model_name="offline-socratic",
        base_url_setting="", api_key_setting="",
    )
    return model
