"""Events from services to sockets: tenant announcements reach their tenant only, forwarding costs
no database work, and closing a user's sockets (deactivation, a move out of a room) works."""

from __future__ import annotations

import pytest
from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

import sessions.signals  # noqa: F401  (connects the deactivation receiver; SessionsConfig.ready does in the app)
from courses.exceptions import DomainError
from sessions import groups, services
from sessions.realtime import group_event
from tests import factories
from tests.sessions.conftest import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]


@pytest.fixture
def outsider_student(other_tenant):
    return factories.StudentFactory(user__tenant=other_tenant, user__username="elsewhere")


async def test_announcement_reaches_the_tenant_and_not_another_tenant(
    tenant, professor, assigned_student, outsider_student
):
    ours = [
        await open_socket("/ws/tenant/", user=professor.user),
        await open_socket("/ws/tenant/", user=assigned_student.user),
    ]
    theirs = await open_socket("/ws/tenant/", user=outsider_student.user)

    await database_sync_to_async(services.tenant_announce)(
        tenant_id=tenant.id, text="  Campus closes at 6 pm today.  ", author=professor.user
    )

    for socket in ours:
        message = await socket.receive()
        assert message["type"] == "tenant.announcement"
        assert message["seq"] is None
        assert message["data"]["text"] == "Campus closes at 6 pm today."
        assert message["data"]["author"] == {"id": professor.user.id, "name": professor.user.display_name}
        assert message["data"]["tenant_id"] == tenant.id
    assert await theirs.nothing(0.3)
    for socket in [*ours, theirs]:
        await socket.close()


async def test_announcement_is_sent_only_after_commit(tenant, professor):
    socket = await open_socket("/ws/tenant/", user=professor.user)

    def announce_then_roll_back():
        from django.db import transaction

        try:
            with transaction.atomic():
                services.tenant_announce(tenant_id=tenant.id, text="never", author=None)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass

    await database_sync_to_async(announce_then_roll_back)()
    assert await socket.nothing(0.3)
    await socket.close()


def test_empty_or_huge_announcements_are_refused(tenant):
    with pytest.raises(DomainError):
        services.tenant_announce(tenant_id=tenant.id, text="   ", author=None)
    with pytest.raises(DomainError):
        services.tenant_announce(tenant_id=tenant.id, text="x" * 2001, author=None)


async def test_forwarding_a_group_event_touches_no_database(tenant, professor, monkeypatch):
    """The forward path is one `send`: no thread hop, hence no ORM, per delivered event."""
    socket = await open_socket("/ws/tenant/", user=professor.user)
    hops = []
    original = SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        hops.append(getattr(self, "func", None))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting)
    await get_channel_layer().group_send(
        groups.tenant_group(tenant.id), group_event("tenant.announcement", {"text": "hi"})
    )
    assert (await socket.receive())["data"] == {"text": "hi"}
    assert hops == []
    monkeypatch.undo()
    await socket.close()


async def test_events_a_route_does_not_know_are_dropped_not_fatal(tenant, professor):
    socket = await open_socket("/ws/tenant/", user=professor.user)
    await get_channel_layer().group_send(groups.tenant_group(tenant.id), {"type": "no.such.event"})
    assert await socket.nothing(0.2)
    await socket.send({"type": "ping"})
    assert (await socket.receive())["type"] == "pong"
    await socket.close()


async def test_deactivating_a_user_closes_their_open_sockets(room, assigned_student):
    tenant_socket = await open_socket("/ws/tenant/", user=assigned_student.user)
    room_socket = await open_socket(f"/ws/rooms/{room.id}/", user=assigned_student.user)
    assert (await room_socket.receive())["type"] == "room.status"

    def deactivate():
        user = assigned_student.user
        user.is_active = False
        user.save()

    await database_sync_to_async(deactivate)()
    await tenant_socket.expect_close(4401)
    await room_socket.expect_close(4401)
    await tenant_socket.close()
    await room_socket.close()


async def test_saving_an_active_user_closes_nothing(assigned_student):
    socket = await open_socket("/ws/tenant/", user=assigned_student.user)

    def rename():
        user = assigned_student.user
        user.first_name = "Ada"
        user.save()

    await database_sync_to_async(rename)()
    assert await socket.nothing(0.3)
    await socket.close()


async def test_closing_one_rooms_sockets_leaves_the_others_open(room, assigned_student):
    """What moving a student to another room will do: close their socket of the old room only."""
    tenant_socket = await open_socket("/ws/tenant/", user=assigned_student.user)
    room_socket = await open_socket(f"/ws/rooms/{room.id}/", user=assigned_student.user)
    await room_socket.receive()

    await database_sync_to_async(services.user_sockets_close)(
        user_id=assigned_student.user.id, code=4403, kind="room", object_id=room.id
    )
    await room_socket.expect_close(4403)
    assert await tenant_socket.nothing(0.3)
    for socket in (tenant_socket, room_socket):
        await socket.close()


@pytest.mark.parametrize(
    "backend",
    ["channels_redis.pubsub.RedisPubSubChannelLayer", "channels_redis.core.RedisChannelLayer"],
)
async def test_channel_layer_down_at_connect_closes_4503(professor, settings, backend):
    """Redis down: the client is told to come back later (4503), not left with a server error."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": backend, "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}
    socket = await open_socket("/ws/tenant/", user=professor.user)
    await socket.expect_close(4503, timeout=5)
    await socket.close()
