"""Deactivating an institution locks its people out of the portal and the API."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_user_of_inactive_tenant_cannot_get_a_token(client, professor, password, assert_api_error):
    payload = {"username": professor.user.username, "password": password}
    assert client.post("/api/v1/auth/token/", payload, content_type="application/json").status_code == 200
    professor.tenant.is_active = False
    professor.tenant.save()
    response = client.post("/api/v1/auth/token/", payload, content_type="application/json")
    assert_api_error(response, 401, "invalid_credentials")


def test_user_of_inactive_tenant_cannot_log_in_to_the_portal(client, professor, password):
    professor.tenant.is_active = False
    professor.tenant.save()
    response = client.post("/login/", {"username": professor.user.username, "password": password})
    assert response.status_code == 200  # the form again, with an error
    assert "_auth_user_id" not in client.session


def test_portal_session_ends_when_the_tenant_is_deactivated(client, professor, password):
    client.force_login(professor.user)
    assert client.get("/").status_code == 200
    professor.tenant.is_active = False
    professor.tenant.save()
    response = client.get("/")
    assert response.status_code == 302 and "/login/" in response["Location"]
