"""static/js/realtime.js under Node against a scripted `websockets` server: it reconnects after a
drop with `?after_seq=` of the last event it saw, drops replayed duplicates, queues what was sent
while disconnected, and stops on a final close code (4403)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import serve

MODULE = Path(__file__).resolve().parents[2] / "static" / "js" / "realtime.js"
NODE = shutil.which("node")


def _node_has_websocket() -> bool:
    if not NODE:
        return False
    probe = subprocess.run(
        [NODE, "--experimental-websocket", "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
        capture_output=True, timeout=10, check=False,
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _node_has_websocket(), reason="needs Node with a WebSocket global")

SCRIPT = """
const { connect } = await import(process.argv[1]);
const log = (entry) => console.log(JSON.stringify(entry));
const socket = connect(process.argv[2], {
  baseDelayMs: 20,
  maxDelayMs: 100,
  onMessage: (m) => { log({ message: m.type, seq: m.seq }); if (m.type === "done") socket.close(); },
  onStatus: (status) => { log({ status }); if (status === "closed") setTimeout(() => process.exit(0), 20); },
  onClose: (event) => log({ close: event.code }),
});
socket.send("hello", { n: 1 });
setTimeout(() => process.exit(3), 8000);
"""


def envelope(event_type: str, seq: int | None) -> str:
    return json.dumps({"type": event_type, "seq": seq, "ts": "2025-01-01T00:00:00.000Z", "data": {}})


async def run_client(port: int) -> list[dict]:
    process = await asyncio.create_subprocess_exec(
        NODE, "--experimental-websocket", "--no-warnings", "--input-type=module", "-e", SCRIPT,
        MODULE.as_uri(), f"ws://127.0.0.1:{port}/ws/test/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, stderr.decode()
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


async def test_reconnects_with_after_seq_and_drops_replayed_duplicates():
    connections: list[dict] = []

    async def handler(ws):
        query = parse_qs(urlsplit(ws.request.path).query)
        received = []
        connections.append({"after_seq": query.get("after_seq", [None])[0], "received": received})
        if len(connections) == 1:
            received.append(json.loads(await ws.recv()))  # the message queued before open
            await ws.send(envelope("transcript.final", 1))
            await ws.send(envelope("transcript.final", 2))
            await ws.send(envelope("pong", None))  # ephemeral: does not move after_seq
            await ws.close(1011)  # a dropped connection: the client must come back
            return
        await ws.send(envelope("transcript.final", 2))  # replayed: the client has it already
        await ws.send(envelope("transcript.final", 3))
        await ws.send(envelope("done", None))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        log = await run_client(port)

    messages = [(e["message"], e["seq"]) for e in log if "message" in e]
    assert messages == [
        ("transcript.final", 1), ("transcript.final", 2), ("pong", None),
        ("transcript.final", 3), ("done", None),
    ]
    assert [c["after_seq"] for c in connections] == [None, "2"]
    assert connections[0]["received"] == [{"type": "hello", "data": {"n": 1}}]
    statuses = [e["status"] for e in log if "status" in e]
    assert statuses[0] == "connecting" and "reconnecting" in statuses and statuses[-1] == "closed"


async def test_a_final_close_code_stops_reconnecting():
    attempts = 0

    async def handler(ws):
        nonlocal attempts
        attempts += 1
        await ws.close(4403, "forbidden")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        log = await run_client(port)
        await asyncio.sleep(0.3)  # time enough for a (wrong) reconnect

    assert attempts == 1
    assert {"close": 4403} in log
    assert log[-1] == {"status": "closed"}
