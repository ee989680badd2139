"""Token auth for native clients: login, refresh, `me`, expiry, and brute-force lockout (axes)."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlencode

import jwt
import pytest
import time_machine
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tests import factories

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
ME_URL = "/api/v1/me/"

# Logic, not hashing cost, is under test: one PBKDF2 round is 0.3 s and lockouts need many.
pytestmark = pytest.mark.usefixtures("fast_password_hashing")


def login(client, username, password, **extra):
    return client.post(
        TOKEN_URL, {"username": username, "password": password}, content_type="application/json", **extra
    )


def bearer(token) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


# --- Login ------------------------------------------------------------------------------------


def test_urls_are_the_contracts():
    assert reverse("api:token-obtain") == TOKEN_URL
    assert reverse("api:token-refresh") == REFRESH_URL
    assert reverse("api:me") == ME_URL


def test_login_returns_an_access_and_a_refresh_token_that_work(client, professor, password):
    response = login(client, "prof", password)

    assert response.status_code == 200
    tokens = response.json()
    assert set(tokens) == {"access", "refresh"}
    me = client.get(ME_URL, **bearer(tokens["access"]))
    assert me.status_code == 200
    assert me.json()["username"] == "prof"
    # A token login is not a portal login: no session cookie is handed out.
    assert settings.SESSION_COOKIE_NAME not in response.cookies


def test_access_token_is_short_lived(client, professor, password):
    access = login(client, "prof", password).json()["access"]

    token = AccessToken(access)
    assert token["exp"] - token["iat"] == settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
    assert settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] <= timedelta(minutes=15)


def test_login_records_last_login(client, professor, password):
    assert professor.user.last_login is None
    login(client, "prof", password)
    professor.user.refresh_from_db()
    assert professor.user.last_login is not None


def test_form_encoded_login_works_too(client, professor, password):
    body = urlencode({"username": "prof", "password": password})
    response = client.post(TOKEN_URL, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


def test_unicode_password_works(client, tenant):
    factories.UserFactory(tenant=tenant, username="zoë", password="pässwörd 😀 שלום")
    assert login(client, "zoë", "pässwörd 😀 שלום").status_code == 200


def test_wrong_password_is_401_invalid_credentials(client, professor, assert_api_error):
    response = login(client, "prof", "not the password")

    error = assert_api_error(response, 401, "invalid_credentials")
    assert "fields" not in error
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(client, db, password, assert_api_error):
    unknown = assert_api_error(login(client, "nobody", password), 401, "invalid_credentials")
    assert unknown["message"] == "Invalid username or password."


def test_inactive_user_is_refused_even_with_the_right_password(client, professor, password, assert_api_error):
    professor.user.is_active = False
    professor.user.save()

    assert_api_error(login(client, "prof", password), 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("payload", "missing"),
    [
        ({}, {"username", "password"}),
        ({"username": "prof"}, {"password"}),
        ({"password": "x"}, {"username"}),
        ({"username": "", "password": ""}, {"username", "password"}),
        ({"username": "   ", "password": "x"}, {"username"}),
    ],
)
def test_missing_or_empty_fields_are_400_with_fields(client, professor, payload, missing, assert_api_error):
    response = client.post(TOKEN_URL, payload, content_type="application/json")

    error = assert_api_error(response, 400, "invalid")
    assert set(error["fields"]) == missing


def test_get_on_the_token_url_is_405_in_shape(client, db, assert_api_error):
    assert_api_error(client.get(TOKEN_URL), 405, "method_not_allowed")


# --- Lockout (django-axes) ----------------------------------------------------------------------


def fail_until_locked(client, username="prof"):
    """AXES_FAILURE_LIMIT wrong passwords; returns the responses."""
    return [login(client, username, f"wrong {i}") for i in range(settings.AXES_FAILURE_LIMIT)]


def test_lockout_after_failure_limit_is_429_even_with_the_right_password(
    client, professor, password, assert_api_error
):
    responses = fail_until_locked(client)

    assert [r.status_code for r in responses[:-1]] == [401] * (settings.AXES_FAILURE_LIMIT - 1)
    # The failure that reaches the limit already says so.
    assert_api_error(responses[-1], 429, "locked_out")

    locked = login(client, "prof", password)
    error = assert_api_error(locked, 429, "locked_out")
    assert "15 minutes" in error["message"]
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()


def test_lockout_is_checked_before_the_password(client, professor, password, monkeypatch, assert_api_error):
    fail_until_locked(client)
    # While locked, no password is even looked at (so no timing or error-code oracle).
    monkeypatch.setattr(
        "courses.api.auth.authenticate", lambda **kw: pytest.fail("authenticate() was called")
    )
    assert_api_error(login(client, "prof", password), 429, "locked_out")


def test_lockout_of_one_username_leaves_others_alone(client, professor, staff_user, password):
    fail_until_locked(client, "prof")

    assert login(client, "staff", password).status_code == 200


def test_success_before_the_limit_clears_the_failures(client, professor, password):
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "prof", f"wrong {i}").status_code == 401
    assert login(client, "prof", password).status_code == 200

    # Counting starts again: one more failure does not lock.
    assert login(client, "prof", "wrong again").status_code == 401
    assert login(client, "prof", password).status_code == 200


def test_login_works_again_after_the_lockout_expires(client, professor, password, settings, assert_api_error):
    # A real (short) cool-off: with REDIS_URL axes counts in Redis, whose expiry no fake clock moves.
    settings.AXES_COOLOFF_TIME = timedelta(seconds=2)
    fail_until_locked(client)
    locked = login(client, "prof", password)
    assert_api_error(locked, 429, "locked_out")
    assert locked["Retry-After"] == "2"

    time.sleep(2.2)

    assert login(client, "prof", password).status_code == 200


# --- Refresh ------------------------------------------------------------------------------------


def refresh(client, token):
    return client.post(REFRESH_URL, {"refresh": token}, content_type="application/json")


def test_refresh_returns_a_new_access_token(client, professor, password):
    tokens = login(client, "prof", password).json()

    response = refresh(client, tokens["refresh"])

    assert response.status_code == 200
    assert set(response.json()) == {"access"}
    assert client.get(ME_URL, **bearer(response.json()["access"])).status_code == 200


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 4096])
def test_bad_refresh_token_is_401(client, db, token, assert_api_error):
    assert_api_error(refresh(client, token), 401, "token_not_valid")


def test_access_token_is_not_a_refresh_token(client, professor, assert_api_error):
    assert_api_error(refresh(client, str(AccessToken.for_user(professor.user))), 401, "token_not_valid")


def test_expired_refresh_token_is_401(client, professor, assert_api_error):
    token = str(RefreshToken.for_user(professor.user))
    later = timezone.now() + settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"] + timedelta(minutes=1)
    with time_machine.travel(later):
        assert_api_error(refresh(client, token), 401, "token_not_valid")


def test_refresh_token_of_a_deactivated_or_deleted_user_is_401(client, professor, student, assert_api_error):
    professor.user.is_active = False
    professor.user.save()
    assert_api_error(refresh(client, str(RefreshToken.for_user(professor.user))), 401, "user_inactive")

    token = str(RefreshToken.for_user(student.user))
    student.user.delete()
    assert_api_error(refresh(client, token), 401, "user_inactive")


# --- Access tokens on protected endpoints -----------------------------------------------------------


def test_expired_access_token_is_refused(client, professor, assert_api_error):
    token = str(AccessToken.for_user(professor.user))
    assert client.get(ME_URL, **bearer(token)).status_code == 200

    later = timezone.now() + settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] + timedelta(seconds=1)
    with time_machine.travel(later):
        assert_api_error(client.get(ME_URL, **bearer(token)), 401, "token_not_valid")


def test_token_signed_with_another_key_is_refused(client, professor, assert_api_error):
    claims = dict(AccessToken.for_user(professor.user).payload)
    forged = jwt.encode(claims, "not our key at all, but at least 32 bytes long", algorithm="HS256")

    assert_api_error(client.get(ME_URL, **bearer(forged)), 401, "token_not_valid")


def test_token_of_a_deactivated_user_is_refused(client, professor, api_headers, assert_api_error):
    headers = api_headers(professor.user)
    professor.user.is_active = False
    professor.user.save()

    assert_api_error(client.get(ME_URL, **headers), 401)


@pytest.mark.parametrize("url", [ME_URL, "/api/v1/courses/", "/api/v1/courses/1/"])
def test_unauthenticated_requests_are_401_not_authenticated(client, course, url, assert_api_error):
    response = client.get(url)

    assert_api_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_portal_session_works_on_the_api_too(client, professor):
    client.force_login(professor.user)
    assert client.get(ME_URL).json()["username"] == "prof"


# --- Me --------------------------------------------------------------------------------------------


def test_me_of_a_professor(client, professor, tenant, api_headers):
    response = client.get(ME_URL, **api_headers(professor.user))

    assert response.status_code == 200
    user = professor.user
    assert response.json() == {
        "id": user.id,
        "username": "prof",
        "first_name": user.first_name,
        "last_name": user.last_name,
        "role": "professor",
        "tenant": {"id": tenant.id, "name": "Demo University", "slug": "demo"},
    }


def test_me_of_a_student(client, student, tenant, api_headers):
    body = client.get(ME_URL, **api_headers(student.user)).json()

    assert (body["id"], body["username"], body["role"]) == (student.user.id, "stud", "student")
    assert body["tenant"]["id"] == tenant.id


def test_me_of_staff(client, staff_user, tenant, api_headers):
    body = client.get(ME_URL, **api_headers(staff_user)).json()

    assert (body["username"], body["role"], body["tenant"]["slug"]) == ("staff", "staff", "demo")


def test_me_of_an_outsider_shows_their_own_tenant(client, outsider, other_tenant, api_headers):
    body = client.get(ME_URL, **api_headers(outsider.user)).json()

    assert body["tenant"] == {"id": other_tenant.id, "name": "Other College", "slug": "other"}


def test_me_of_a_superuser_without_tenant_has_null_tenant(client, superuser, api_headers):
    body = client.get(ME_URL, **api_headers(superuser)).json()

    assert body["username"] == "root"
    assert body["tenant"] is None


def test_me_is_read_only(client, professor, api_headers, assert_api_error):
    response = client.post(
        ME_URL, {"role": "staff"}, content_type="application/json", **api_headers(professor.user)
    )

    assert_api_error(response, 405, "method_not_allowed")
