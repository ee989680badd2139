"""Error pages: HTML for the portal, the API's JSON shape under /api/."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory

from courses import views
from tests import factories

pytestmark = pytest.mark.django_db


def test_unknown_course_is_the_404_page(client, logged_in, professor):
    logged_in(professor.user)

    response = client.get("/courses/999999/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "Page not found" in html and "<main" in html


def test_unknown_portal_path_is_the_404_page_for_anonymous_visitors_too(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing/", "/api/no-such-thing/"])
def test_unknown_api_path_is_json_404(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["error"]["code"] == "not_found" and body["error"]["message"]


@pytest.mark.parametrize(
    "handler, status, code",
    [
        (views.error_400, 400, "bad_request"),
        (views.error_403, 403, "forbidden"),
        (views.error_404, 404, "not_found"),
    ],
)
def test_handlers_answer_html_or_json_by_path(handler, status, code):
    factory = RequestFactory()

    page = handler(factory.get("/courses/1/"), Exception("boom"))
    api = handler(factory.get("/api/v1/courses/1/"), Exception("boom"))

    assert page.status_code == status and page["Content-Type"].startswith("text/html")
    assert f">{status}<" in page.content.decode()
    assert api.status_code == status
    assert json.loads(api.content)["error"]["code"] == code


def test_500_handler_takes_no_exception_and_needs_no_context():
    factory = RequestFactory()

    page = views.error_500(factory.get("/courses/1/"))
    api = views.error_500(factory.get("/api/v1/courses/"))

    assert page.status_code == 500 and "Something went wrong" in page.content.decode()
    assert api.status_code == 500
    assert json.loads(api.content)["error"]["code"] == "server_error"


def test_a_crash_renders_the_500_page(client, settings, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(views.selectors, "course_overview_list_for_user", explode)
    client.raise_request_exception = False
    client.force_login(factories.ProfessorFactory().user)

    response = client.get("/")

    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()


def test_disallowed_host_gets_the_400_page_before_authentication_ran(client):
    response = client.get("/", headers={"host": "evil.example"})

    assert response.status_code == 400
    assert "Bad request" in response.content.decode()
