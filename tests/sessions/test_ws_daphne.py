"""What a real client sees from a real server (Daphne), for the refusals that need no database:
a foreign Origin fails the HTTP handshake with 403, a missing or bad credential is an accepted
socket closed with 4401, an unknown path 4404 (docs/protocol.md, "Close codes")."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.sessions.conftest import daphne_servers


@pytest.fixture(scope="module")
def server_port(tmp_path_factory):
    # No services: the in-memory layer, and a scratch SQLite file nobody reads on these paths.
    database = tmp_path_factory.mktemp("daphne") / "unused.sqlite3"
    with daphne_servers(1, REDIS_URL="", DATABASE_URL=f"sqlite:///{database}") as ports:
        yield ports[0]


async def close_code(url: str, **kwargs) -> int:
    async with connect(url, open_timeout=5, **kwargs) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    return closed.value.rcvd.code


async def test_foreign_origin_gets_http_403(server_port):
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"ws://127.0.0.1:{server_port}/ws/tenant/", origin="https://evil.example", open_timeout=5)
    assert refused.value.response.status_code == 403


async def test_no_origin_and_no_ticket_is_closed_4401(server_port):
    assert await close_code(f"ws://127.0.0.1:{server_port}/ws/tenant/") == 4401


async def test_allowed_origin_without_a_session_is_closed_4401(server_port):
    url = f"ws://127.0.0.1:{server_port}/ws/tenant/"
    assert await close_code(url, origin=f"http://127.0.0.1:{server_port}") == 4401


async def test_forged_ticket_is_closed_4401(server_port):
    assert await close_code(f"ws://127.0.0.1:{server_port}/ws/rooms/1/?ticket=forged:abc:def") == 4401


async def test_unknown_path_is_closed_4404(server_port):
    assert await close_code(f"ws://127.0.0.1:{server_port}/ws/nothing/here/") == 4404
