"""The join-ticket API: the same access rules as the sockets, the contract's error shape, and
tickets that really open the socket they name."""

from __future__ import annotations

import pytest
from django.urls import include, path, reverse
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework_simplejwt.tokens import AccessToken

from sessions.tickets import ticket_verify
from tests.sessions.conftest import open_socket

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


def monitor_join(session_id: int) -> str:
    return reverse("api:session-monitor-join", args=[session_id])


def room_join(room_id: int) -> str:
    return reverse("api:room-join", args=[room_id])


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_urls_are_the_contracts(live_session, room):
    assert monitor_join(live_session.id) == f"/api/v1/sessions/{live_session.id}/monitor/join/"
    assert room_join(room.id) == f"/api/v1/rooms/{room.id}/join/"
    assert reverse("api:tenant-join") == "/api/v1/tenant/join/"


def test_professor_gets_a_monitor_ticket(client, live_session, professor):
    client.force_login(professor.user)
    response = client.post(monitor_join(live_session.id))
    assert response.status_code == 200
    body = response.json()
    assert body["ws_url"] == f"ws://testserver/ws/sessions/{live_session.id}/monitor/"
    assert body["expires_in"] == 60
    claims = ticket_verify(body["ticket"])
    assert (claims.user_id, claims.kind, claims.object_id) == (professor.user.id, "monitor", live_session.id)


def test_assigned_student_gets_a_room_ticket_with_a_bearer_token(client, room, assigned_student):
    token = AccessToken.for_user(assigned_student.user)
    response = client.post(room_join(room.id), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ws_url"] == f"ws://testserver/ws/rooms/{room.id}/"
    claims = ticket_verify(body["ticket"])
    assert (claims.user_id, claims.kind, claims.object_id) == (assigned_student.user.id, "room", room.id)


def test_https_requests_get_wss_urls(client, room, professor):
    client.force_login(professor.user)
    response = client.post(room_join(room.id), secure=True)
    assert response.json()["ws_url"] == f"wss://testserver/ws/rooms/{room.id}/"


def test_each_call_gets_a_new_ticket(client, room, professor):
    client.force_login(professor.user)
    first = client.post(room_join(room.id)).json()["ticket"]
    second = client.post(room_join(room.id)).json()["ticket"]
    assert first != second


def test_tenant_ticket(client, tenant, assigned_student):
    client.force_login(assigned_student.user)
    response = client.post(reverse("api:tenant-join"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ws_url"] == "ws://testserver/ws/tenant/"
    claims = ticket_verify(body["ticket"])
    assert (claims.user_id, claims.kind, claims.object_id) == (assigned_student.user.id, "tenant", tenant.id)


def test_superuser_without_tenant_gets_no_tenant_ticket(client, superuser):
    client.force_login(superuser)
    assert_error(client.post(reverse("api:tenant-join")), 403, "forbidden")


def test_anonymous_gets_401(client, live_session, room):
    for url in (monitor_join(live_session.id), room_join(room.id), reverse("api:tenant-join")):
        assert_error(client.post(url), 401, "not_authenticated")


def test_student_of_another_room_gets_403(client, room, student_of_other_room):
    client.force_login(student_of_other_room.user)
    assert_error(client.post(room_join(room.id)), 403, "forbidden")


def test_student_cannot_get_a_monitor_ticket(client, live_session, assigned_student):
    client.force_login(assigned_student.user)
    assert_error(client.post(monitor_join(live_session.id)), 403, "forbidden")


def test_professor_of_another_session_gets_403(client, live_session, other_professor):
    client.force_login(other_professor.user)
    assert_error(client.post(monitor_join(live_session.id)), 403, "forbidden")


def test_other_tenant_and_unknown_ids_get_404(client, live_session, room, outsider):
    client.force_login(outsider.user)
    assert_error(client.post(monitor_join(live_session.id)), 404, "not_found")
    assert_error(client.post(room_join(room.id)), 404, "not_found")
    assert_error(client.post(monitor_join(999999)), 404, "not_found")
    assert_error(client.post(room_join(999999)), 404, "not_found")


def test_get_is_not_allowed(client, room, professor):
    client.force_login(professor.user)
    assert client.get(room_join(room.id)).status_code == 405


@pytest.mark.django_db(transaction=True)
async def test_the_api_ticket_opens_the_socket_once(async_client, room, assigned_student):
    await async_client.aforce_login(assigned_student.user)
    body = (await async_client.post(room_join(room.id))).json()
    path = body["ws_url"].removeprefix("ws://testserver")
    socket = await open_socket(path, origin=None, ticket=body["ticket"])
    assert (await socket.receive())["type"] == "room.status"
    await socket.close()


def test_schema_of_the_join_endpoints_has_no_warnings():
    GENERATOR_STATS.reset()
    generator = SchemaGenerator(patterns=[path("api/v1/", include("sessions.api.urls"))])
    schema = generator.get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache, (
        dict(GENERATOR_STATS._warn_cache), dict(GENERATOR_STATS._error_cache)
    )
    operation = schema["paths"]["/api/v1/rooms/{room_id}/join/"]["post"]
    assert set(operation["responses"]) == {"200", "401", "403", "404"}
    assert "requestBody" not in operation
