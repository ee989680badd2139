"""Hostile and clumsy input to the API: always a 4xx in the error shape, never a 500.

Runs against SQLite and PostgreSQL alike (PostgreSQL refuses NUL bytes in text, SQLite does not).
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
ME_URL = "/api/v1/me/"

HUGE = "a" * 1_000_000
FULLWIDTH_PROF = "\uff50\uff52\uff4f\uff46"  # NFKC-normalised to "prof"


@pytest.fixture
def client(client):
    # A crash must show up as the 500 a real client would get, not as an exception in the test.
    client.raise_request_exception = False
    return client


def post_json(client, url, payload, **extra):
    return client.post(url, json.dumps(payload), content_type="application/json", **extra)


def post_raw(client, url, body: bytes, content_type="application/json", **extra):
    return client.generic("POST", url, body, content_type=content_type, **extra)


# --- Credentials of the wrong kind: 400 naming the field ------------------------------------------


@pytest.mark.parametrize(
    ("payload", "bad_field"),
    [
        ({"username": "", "password": "x"}, "username"),
        ({"username": "prof", "password": ""}, "password"),
        ({"username": HUGE, "password": "x"}, "username"),
        ({"username": "prof", "password": HUGE}, "password"),
        ({"username": ["prof"], "password": "x"}, "username"),
        ({"username": 12345, "password": "x"}, "username"),
        ({"username": 1.5, "password": "x"}, "username"),
        ({"username": True, "password": "x"}, "username"),
        ({"username": None, "password": "x"}, "username"),
        ({"username": {"$ne": ""}, "password": "x"}, "username"),
        ({"username": "prof", "password": ["x"]}, "password"),
        ({"username": "prof", "password": 12345}, "password"),
        ({"username": "prof", "password": None}, "password"),
        ({"username": "prof", "password": {"a": 1}}, "password"),
        ({"username": "pr\x00of", "password": "x"}, "username"),
        ({"username": "\x00", "password": "x"}, "username"),
        ({"username": "prof", "password": "pass\x00word"}, "password"),
        ({"username": "\ud800", "password": "x"}, "username"),  # a lone surrogate
    ],
)
def test_bad_credentials_payload_is_400_with_the_field(
    client, professor, payload, bad_field, assert_api_error
):
    response = post_json(client, TOKEN_URL, payload)

    error = assert_api_error(response, 400, "invalid")
    assert bad_field in error["fields"], error


@pytest.mark.parametrize(
    "username",
    [
        "😀🎓",
        "مرحبا",  # right-to-left
        "\u202eforp",  # RTL override + "prof" reversed
        "prof\u200b",  # zero-width space
        FULLWIDTH_PROF,
        "' OR 1=1 --",
        "a" * 150,
    ],
)
def test_odd_but_valid_usernames_get_401_or_200_never_500(client, professor, username, password):
    response = post_json(client, TOKEN_URL, {"username": username, "password": "wrong"})

    assert response.status_code == 401, response.content[:300]
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_fullwidth_username_is_normalised_like_the_portal_does(client, professor, password):
    assert post_json(client, TOKEN_URL, {"username": FULLWIDTH_PROF, "password": password}).status_code == 200


def test_unicode_failures_still_count_towards_the_lockout(client, tenant, settings, assert_api_error):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = post_json(client, TOKEN_URL, {"username": "😀 مرحبا", "password": "x"})
    assert_api_error(response, 429, "locked_out")


@pytest.mark.parametrize("user_agent", ["evil\x00agent", "\x00", "ü" * 1000])
def test_odd_user_agent_on_failed_login_is_not_a_500(client, professor, user_agent, assert_api_error):
    # axes stores the User-Agent of each failure; PostgreSQL refuses NUL bytes in text.
    response = post_json(client, TOKEN_URL, {"username": "prof", "password": "x"}, HTTP_USER_AGENT=user_agent)

    assert_api_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"refresh": ""},
        {"refresh": None},
        {"refresh": 123},
        {"refresh": ["a.b.c"]},
        {"refresh": HUGE},
        {"refresh": "a.b\x00.c"},
    ],
)
def test_bad_refresh_payload_is_400_with_the_field(client, db, payload, assert_api_error):
    error = assert_api_error(post_json(client, REFRESH_URL, payload), 400, "invalid")
    assert "refresh" in error["fields"]


@pytest.mark.parametrize("token", ["😀.😀.😀", "eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoiMSJ9.", "مرحبا"])
def test_odd_refresh_strings_are_401(client, db, token, assert_api_error):
    # "alg: none" must never be accepted.
    assert_api_error(post_json(client, REFRESH_URL, {"refresh": token}), 401, "token_not_valid")


# --- Bodies that are not the JSON object asked for ------------------------------------------------


@pytest.mark.parametrize("url", [TOKEN_URL, REFRESH_URL])
@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"username": "prof", "password": }',
        b"{'username': 'prof'}",  # Python, not JSON
        b"\xff\xfe\xfa",  # not UTF-8
        b"NaN-ish garbage",
        b"[" * 100_000,  # deep enough to blow Python's recursion limit in the json module
    ],
)
def test_malformed_json_is_400_parse_error(client, db, url, body, assert_api_error):
    assert_api_error(post_raw(client, url, body), 400, "parse_error")


@pytest.mark.parametrize("url", [TOKEN_URL, REFRESH_URL])
@pytest.mark.parametrize("body", [b"[]", b'"prof"', b"null", b"42", b"true", b'[{"username": "prof"}]'])
def test_json_that_is_not_an_object_is_400_invalid(client, db, url, body, assert_api_error):
    assert_api_error(post_raw(client, url, body), 400, "invalid")


@pytest.mark.parametrize("url", [TOKEN_URL, REFRESH_URL])
def test_empty_body_is_400_naming_the_fields(client, db, url, assert_api_error):
    error = assert_api_error(post_raw(client, url, b""), 400, "invalid")
    assert error["fields"]


def test_huge_json_body_is_a_4xx(client, professor, assert_api_error):
    body = json.dumps({"username": "prof", "password": "x", "padding": "p" * 3_000_000}).encode()
    response = post_raw(client, TOKEN_URL, body)

    assert 400 <= response.status_code < 500
    assert_api_error(response, response.status_code)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
        "garbage",
    ],
)
def test_wrong_content_type_is_415_in_shape(client, professor, password, content_type, assert_api_error):
    body = json.dumps({"username": "prof", "password": password}).encode()

    assert_api_error(
        post_raw(client, TOKEN_URL, body, content_type=content_type), 415, "unsupported_media_type"
    )


def test_json_with_charset_is_fine(client, professor, password):
    body = json.dumps({"username": "prof", "password": password}).encode()

    response = post_raw(client, TOKEN_URL, body, content_type="application/json; charset=utf-8")

    assert response.status_code == 200


# --- Authorization headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer not-a-jwt",
        "Bearer \x00",
        "Bearer " + "a" * 100_000,
        # Servers hand header bytes to Django decoded as latin-1: this is how UTF-8 emoji arrive.
        "Bearer " + "😀".encode().decode("latin-1"),
        "Bearer eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoiMSJ9.",
    ],
)
def test_bad_bearer_header_is_401_in_shape(client, professor, header, assert_api_error):
    response = client.get(ME_URL, HTTP_AUTHORIZATION=header)

    assert_api_error(response, 401)


@pytest.mark.parametrize("header", ["Basic cHJvZjp4", "Token abc", "", "garbage"])
def test_foreign_auth_schemes_are_not_authenticated(client, professor, header, assert_api_error):
    assert_api_error(client.get(ME_URL, HTTP_AUTHORIZATION=header), 401, "not_authenticated")


# --- URLs and query strings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/courses/%00/",
        "/api/v1/courses/😀/",
        "/api/v1/courses/-1/",
        "/api/v1/courses/1e9/",
        "/api/v1/" + "a" * 5000 + "/",
        "/api/v1/../../etc/passwd",
    ],
)
def test_odd_paths_are_404_in_shape(client, professor, api_headers, path, assert_api_error):
    assert_api_error(client.get(path, **api_headers(professor.user)), 404, "not_found")


@pytest.mark.parametrize(
    "query",
    [
        {"page": "\x00"},
        {"page": "😀"},
        {"page": "9" * 400},
        {"page_size": "\x00"},
        {"page_size": "9" * 400},
        {"ordering": "; DROP TABLE courses_course"},
    ],
)
def test_odd_query_strings_are_200_or_404_never_500(client, course, professor, api_headers, query):
    response = client.get("/api/v1/courses/", query, **api_headers(professor.user))

    assert response.status_code in (200, 404), response.content[:300]
    if response.status_code == 404:
        assert response.json()["error"]["code"] == "not_found"
