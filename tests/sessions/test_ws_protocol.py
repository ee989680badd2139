"""The wire protocol every route shares: the envelope, JSON commands and their errors, and the
per-connection limits (frame size, message rate) that end in a 4429 close when repeated."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest

from tests.sessions.conftest import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]


@pytest.fixture
async def tenant_socket(professor):
    socket = await open_socket("/ws/tenant/", user=professor.user)
    yield socket
    await socket.close()


async def test_every_message_is_an_envelope(tenant_socket):
    await tenant_socket.send({"type": "ping", "data": {"t": 1}})
    message = await tenant_socket.receive()  # asserts the four keys
    assert message["type"] == "pong"
    assert message["seq"] is None  # ephemeral
    assert message["data"] == {"t": 1}
    assert message["ts"].endswith("Z")
    assert datetime.fromisoformat(message["ts"]).utcoffset().total_seconds() == 0


async def test_fields_next_to_type_are_the_data(tenant_socket):
    await tenant_socket.send({"type": "ping", "t": 2})
    assert (await tenant_socket.receive())["data"] == {"t": 2}


async def test_malformed_json_gets_bad_json_and_the_connection_stays_open(tenant_socket):
    await tenant_socket.comm.send_to(text_data="{not json")
    error = await tenant_socket.receive()
    assert error["type"] == "error"
    assert error["data"]["code"] == "bad_json"
    assert error["data"]["message"]
    await tenant_socket.send({"type": "ping"})
    assert (await tenant_socket.receive())["type"] == "pong"


@pytest.mark.parametrize("payload", ["[1, 2]", '"ping"', '{"data": {}}', '{"type": 3}'])
async def test_json_that_is_not_a_command_gets_bad_message(tenant_socket, payload):
    await tenant_socket.comm.send_to(text_data=payload)
    error = await tenant_socket.receive()
    assert (error["type"], error["data"]["code"]) == ("error", "bad_message")


@pytest.mark.parametrize("command", ["room.broadcast", "binary", "_private", "ws.close", "x" * 200])
async def test_unknown_type_gets_unknown_type(tenant_socket, command):
    await tenant_socket.send({"type": command, "data": {}})
    error = await tenant_socket.receive()
    assert (error["type"], error["data"]["code"]) == ("error", "unknown_type")
    await tenant_socket.send({"type": "ping"})
    assert (await tenant_socket.receive())["type"] == "pong"


async def test_monitor_rejects_unknown_commands_and_ends_the_session(live_session, professor):
    socket = await open_socket(f"/ws/sessions/{live_session.id}/monitor/", user=professor.user)
    assert (await socket.receive())["type"] == "session.status"
    await socket.send({"type": "session.explode"})
    assert (await socket.receive())["data"]["code"] == "unknown_type"
    await socket.send({"type": "session.end"})
    final = await socket.receive()
    assert (final["type"], final["data"]["status"]) == ("session.status", "ended")
    await socket.expect_close(4000)


async def test_binary_frames_are_not_supported_on_text_routes(tenant_socket):
    await tenant_socket.comm.send_to(bytes_data=b"\x00\x01")
    error = await tenant_socket.receive()
    assert (error["type"], error["data"]["code"]) == ("error", "binary_not_supported")


async def test_oversized_text_frame_gets_an_error_then_repeated_ones_close_4429(tenant_socket, settings):
    limit = settings.WS_MAX_TEXT_FRAME_BYTES
    big = json.dumps({"type": "ping", "data": "x" * limit})
    for _ in range(settings.WS_VIOLATIONS_BEFORE_CLOSE - 1):
        await tenant_socket.comm.send_to(text_data=big)
        error = await tenant_socket.receive()
        assert (error["type"], error["data"]["code"]) == ("error", "frame_too_large")
        # Still open: a normal message still works.
        await tenant_socket.send({"type": "ping"})
        assert (await tenant_socket.receive())["type"] == "pong"
    await tenant_socket.comm.send_to(text_data=big)
    assert (await tenant_socket.receive())["data"]["code"] == "frame_too_large"
    await tenant_socket.expect_close(4429)


async def test_text_limit_counts_bytes_not_characters(tenant_socket, settings):
    limit = settings.WS_MAX_TEXT_FRAME_BYTES
    assert limit == 16 * 1024
    # 6,000 three-byte characters: 18,000 bytes, over the 16 KiB default though under 16,384 chars.
    await tenant_socket.comm.send_to(text_data=json.dumps({"type": "ping", "data": "€" * 6000}, ensure_ascii=False))
    assert len(("€" * 6000).encode()) > limit
    assert (await tenant_socket.receive())["data"]["code"] == "frame_too_large"


async def test_oversized_binary_frame_gets_frame_too_large(tenant_socket, settings):
    await tenant_socket.comm.send_to(bytes_data=b"\x00" * (settings.WS_MAX_BINARY_FRAME_BYTES + 1))
    assert (await tenant_socket.receive())["data"]["code"] == "frame_too_large"


async def test_flood_gets_rate_limited_then_4429(tenant_socket, settings):
    sent = settings.WS_MESSAGE_BURST + 2 * settings.WS_VIOLATIONS_BEFORE_CLOSE + 10
    for i in range(sent):
        await tenant_socket.send({"type": "ping", "data": i})
    pongs, codes = 0, []
    while True:
        output = await tenant_socket.comm.receive_output(2)
        if output["type"] == "websocket.close":
            assert output["code"] == 4429
            break
        message = json.loads(output["text"])
        if message["type"] == "pong":
            pongs += 1
        else:
            codes.append(message["data"]["code"])
    assert codes == ["rate_limited"] * settings.WS_VIOLATIONS_BEFORE_CLOSE
    # The burst went through (a token or two may have refilled meanwhile), the rest did not.
    assert settings.WS_MESSAGE_BURST <= pongs < sent - settings.WS_VIOLATIONS_BEFORE_CLOSE


async def test_messages_within_the_rate_are_never_limited(professor, settings):
    settings.WS_MESSAGE_BURST = 1
    settings.WS_MAX_MESSAGES_PER_SECOND = 40
    socket = await open_socket("/ws/tenant/", user=professor.user)
    for i in range(10):
        await asyncio.sleep(0.03)  # 33 a second, under the 40 allowed, with no burst to spend
        await socket.send({"type": "ping", "data": i})
        assert (await socket.receive())["type"] == "pong"
    await socket.close()


async def test_limits_are_read_from_settings(professor, settings):
    settings.WS_MESSAGE_BURST = 2
    settings.WS_MAX_MESSAGES_PER_SECOND = 1
    settings.WS_VIOLATIONS_BEFORE_CLOSE = 1
    socket = await open_socket("/ws/tenant/", user=professor.user)
    for i in range(3):
        await socket.send({"type": "ping", "data": i})
    assert (await socket.receive())["type"] == "pong"
    assert (await socket.receive())["type"] == "pong"
    assert (await socket.receive())["data"]["code"] == "rate_limited"
    await socket.expect_close(4429)
