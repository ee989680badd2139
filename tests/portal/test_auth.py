"""Login, logout and brute-force lockout of the portal."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.urls import reverse

pytestmark = pytest.mark.django_db

LOGIN = "/login/"


def test_login_page_renders_labelled_fields_with_autocomplete(client):
    response = client.get(LOGIN)

    assert response.status_code == 200
    html = response.content.decode()
    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html
    assert 'autocomplete="username"' in html
    assert 'autocomplete="current-password"' in html
    assert "<main" in html


def test_demo_logins_are_hinted_only_in_debug(client, settings):
    settings.DEBUG = False
    assert "Demo logins" not in client.get(LOGIN).content.decode()

    settings.DEBUG = True
    assert "Demo logins" in client.get(LOGIN).content.decode()


def test_login_redirects_home_and_shows_the_user(client, professor, password):
    response = client.post(LOGIN, {"username": "prof", "password": password})

    assert response.status_code == 302
    assert response.url == reverse("home")
    home = client.get(response.url)
    assert professor.user.display_name in home.content.decode()


def test_login_follows_a_safe_next_only(client, professor, course, password):
    course_url = reverse("course-detail", args=[course.pk])
    response = client.post(LOGIN, {"username": "prof", "password": password, "next": course_url})
    assert response.url == course_url

    client.logout()
    response = client.post(LOGIN, {"username": "prof", "password": password, "next": "https://evil.example/"})
    assert response.url == reverse("home")


def test_wrong_password_shows_an_error(client, professor):
    response = client.post(LOGIN, {"username": "prof", "password": "not it"})

    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert "Please enter a correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_five_failures_lock_the_account_with_429(client, professor, password):
    for _ in range(4):
        assert client.post(LOGIN, {"username": "prof", "password": "wrong"}).status_code == 200

    locked = client.post(LOGIN, {"username": "prof", "password": "wrong"})
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "registration/locked_out.html" in [t.name for t in locked.templates]

    # Even the right password is refused while locked out.
    right = client.post(LOGIN, {"username": "prof", "password": password})
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


def test_logout_is_post_only(client, logged_in, professor):
    logged_in(professor.user)

    assert client.get(reverse("logout")).status_code == 405
    assert "_auth_user_id" in client.session

    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response.url == reverse("login")
    assert "_auth_user_id" not in client.session


def test_logged_in_user_visiting_login_goes_home(client, logged_in, professor):
    logged_in(professor.user)

    response = client.get(LOGIN)

    assert response.status_code == 302
    assert response.url == reverse("home")


@pytest.mark.parametrize(
    "username, password_value",
    [
        ("", ""),
        ("prof", ""),
        ("x" * 100_000, "y" * 100_000),
        ("x" * 151, "secret"),
        ("prof", "p" * 100_000),
        ("ünïcødé 日本語 🎓", "пароль🔑"),
        ("prof\x00", "secret"),
        ("prof", "sec\x00ret"),
        ("\x00" * 10, "\x00" * 10),
    ],
    ids=[
        "empty",
        "empty-password",
        "huge",
        "username-too-long",
        "huge-password",
        "unicode",
        "nul-user",
        "nul-password",
        "all-nul",
    ],
)
def test_bad_login_input_is_a_form_error_never_a_500(client, professor, username, password_value):
    response = client.post(LOGIN, {"username": username, "password": password_value})

    assert response.status_code == 200
    assert response.context["form"].errors
    assert "_auth_user_id" not in client.session


def test_overlong_username_is_refused_before_authentication(client, professor):
    response = client.post(LOGIN, {"username": "x" * 300, "password": "secret"})

    assert response.status_code == 200
    assert "at most 150 characters" in response.content.decode()
    assert not AccessAttempt.objects.exists()  # never reached authenticate()
