"""Shared fixtures: personas (professor, student, outsider from another tenant, staff), and the
service switches that skip, or under REQUIRE_SERVICES=1 fail, tests needing Redis or PostgreSQL."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.core.cache import cache

from tests import factories


def pytest_report_header(config) -> list[str]:
    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    return [
        f"ai-professor: database={db} channel_layer={layer} "
        f"redis={'yes' if settings.REDIS_URL else 'no'} "
        f"require_services={'yes' if settings.REQUIRE_SERVICES else 'no'}"
    ]


def pytest_collection_modifyitems(config, items) -> None:
    """Skip what needs a missing service, loudly; with REQUIRE_SERVICES=1 run it and let it fail."""
    if settings.REQUIRE_SERVICES:
        return
    missing = {
        "requires_redis": None if settings.REDIS_URL else "REDIS_URL is not set",
        "requires_postgres": None if settings.USING_POSTGRES else "DATABASE_URL is not PostgreSQL",
        "browser": None if os.path.exists("/usr/bin/chromium") else "/usr/bin/chromium is missing",
    }
    for item in items:
        for marker, reason in missing.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=f"{reason} (service test)"))


@pytest.fixture(autouse=True)
def _clear_cache():
    """Tickets, lockouts and rate counters live in the cache: no test sees another's."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def password() -> str:
    return factories.PASSWORD


@pytest.fixture
def tenant(db):
    return factories.TenantFactory(name="Demo University", slug="demo")


@pytest.fixture
def other_tenant(db):
    return factories.TenantFactory(name="Other College", slug="other")


@pytest.fixture
def professor(tenant):
    return factories.ProfessorFactory(user__tenant=tenant, user__username="prof")


@pytest.fixture
def course(tenant, professor):
    return factories.CourseFactory(tenant=tenant, code="CS101", professors=[professor])


@pytest.fixture
def student(course):
    return factories.EnrollmentFactory(course=course, student__user__username="stud").student


@pytest.fixture
def outsider(other_tenant):
    """A professor of another tenant, with a course of their own."""
    prof = factories.ProfessorFactory(user__tenant=other_tenant, user__username="outsider")
    factories.CourseFactory(tenant=other_tenant, code="CS101", professors=[prof])
    return prof


@pytest.fixture
def staff_user(tenant):
    return factories.StaffUserFactory(tenant=tenant, username="staff")


@pytest.fixture
def superuser(db):
    from courses.models import User

    return User.objects.create_superuser("root", "root@example.org", factories.PASSWORD)


@pytest.fixture(autouse=True, scope="session")
def _celery_tasks_run_in_process():
    """Tests run tasks eagerly even when REDIS_URL configures a broker; the one test that needs
    a real worker switches this off for itself."""
    from tutor_project.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


# --- REST API helpers -------------------------------------------------------------------------


@pytest.fixture
def api_headers():
    """`api_headers(user)`: Django test-client headers carrying a fresh JWT access token."""
    from rest_framework_simplejwt.tokens import AccessToken

    def make(user) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {AccessToken.for_user(user)}"}

    return make


@pytest.fixture
def assert_api_error():
    """`assert_api_error(response, status, code)`: the contract's error shape; returns the error."""

    def check(response, status: int, code: str | None = None) -> dict:
        assert response.status_code == status, (response.status_code, response.content[:500])
        assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
        body = response.json()
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) <= {"code", "message", "fields"}, error
        assert isinstance(error["code"], str) and error["code"], error
        assert isinstance(error["message"], str) and error["message"], error
        if "fields" in error:
            assert all(isinstance(v, list) for v in error["fields"].values()), error
        if code is not None:
            assert error["code"] == code, error
        return error

    return check


@pytest.fixture
def fast_password_hashing(settings):
    """MD5 instead of PBKDF2 (0.3 s per user): for modules that create many users or log in often.

    Use with `pytestmark = pytest.mark.usefixtures("fast_password_hashing")`.
    """
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
