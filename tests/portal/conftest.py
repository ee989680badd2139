"""Portal fixtures: fast password hashing everywhere, and a course with a bit of everything."""

from __future__ import annotations

import pytest

from tests import factories


@pytest.fixture(autouse=True)
def _fast_passwords(fast_password_hashing):
    """Roster and query-count tests create dozens of users (see tests/conftest.py)."""


@pytest.fixture
def logged_in(client):
    """Log a user in (force_login: the login form itself is tested in test_auth.py)."""

    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def populated_course(course, professor):
    """Extend the shared CS101 fixture with documents and sessions of each status."""
    factories.CourseDocumentFactory(course=course, title="Week 1 slides", page_count=12, size_bytes=48_213)
    factories.CourseDocumentFactory(course=course, title="Week 2 notes", status="processing", progress=40)
    live = factories.LiveSessionFactory(course=course, professor=professor, title="Loops lab", status="live")
    factories.BreakoutRoomFactory(session=live, number=1)
    factories.BreakoutRoomFactory(session=live, number=2)
    factories.LiveSessionFactory(course=course, professor=professor, title="Kick-off", status="ended")
    return course
