"""Real-time fixtures: a live session with two rooms, and helpers that open WebSockets through
the real ASGI application (`tutor_project.asgi.application`) the way browsers and native clients do."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.test import Client

from tests import factories

ORIGIN = b"http://testserver"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fast_passwords(settings):
    """MD5 instead of PBKDF2 (0.3 s a user): the WebSocket modules create and log in many users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Each test gets its own layer instance (pytest-asyncio gives each test a new event loop)."""
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.fixture
def live_session(course, professor):
    return factories.LiveSessionFactory(course=course, professor=professor, title="Loops lab", status="live")


@pytest.fixture
def room(live_session):
    return factories.BreakoutRoomFactory(session=live_session, number=1, name="Room 1", topic="for loops")


@pytest.fixture
def other_room(live_session):
    return factories.BreakoutRoomFactory(session=live_session, number=2, name="Room 2")


@pytest.fixture
def assigned_student(room, course, student):
    """The shared `student` persona, enrolled in the course and placed in `room`."""
    factories.RoomAssignmentFactory(room=room, student=student)
    return student


@pytest.fixture
def student_of_other_room(other_room, course):
    student = factories.EnrollmentFactory(course=course, student__user__username="stud2").student
    factories.RoomAssignmentFactory(room=other_room, student=student)
    return student


@pytest.fixture
def other_professor(tenant, course):
    """A professor of the same tenant and course who does not run `live_session`."""
    prof = factories.ProfessorFactory(user__tenant=tenant, user__username="prof2")
    course.professors.add(prof)
    return prof


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def browser_headers(user=None, origin: bytes | None = ORIGIN) -> list[tuple[bytes, bytes]]:
    headers = []
    if origin is not None:
        headers.append((b"origin", origin))
    if user is not None:
        headers.append((b"cookie", session_cookie(user)))
    return headers


def communicator(path: str, headers=None, ticket: str | None = None) -> WebsocketCommunicator:
    from tutor_project.asgi import application

    if ticket is not None:
        path = f"{path}{'&' if '?' in path else '?'}ticket={quote(ticket)}"
    return WebsocketCommunicator(application, path, headers=headers or [])


class Socket:
    """An open connection with the helpers the tests need."""

    def __init__(self, comm: WebsocketCommunicator):
        self.comm = comm

    async def receive(self, timeout: float = 2) -> dict:
        message = json.loads(await self.comm.receive_from(timeout))
        assert set(message) == {"type", "seq", "ts", "data"}, message
        return message

    async def send(self, content) -> None:
        await self.comm.send_to(text_data=json.dumps(content))

    async def expect_close(self, code: int, timeout: float = 2) -> dict:
        """Skip data frames until the server closes; assert the close code."""
        while True:
            output = await self.comm.receive_output(timeout)
            if output["type"] == "websocket.close":
                assert output.get("code") == code, output
                return output

    async def nothing(self, timeout: float = 0.2) -> bool:
        return await self.comm.receive_nothing(timeout)

    async def until(self, event_type: str, timeout: float = 5, where=None) -> tuple[dict, list[dict]]:
        """Read until an event of `event_type` (for which `where(data)` holds, if given);
        (that event, everything read before it)."""
        seen = []
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive(timeout)
                if message["type"] == event_type and (where is None or where(message["data"])):
                    return message, seen
                seen.append(message)

    async def drain(self, quiet: float = 0.3) -> list[dict]:
        """Everything the socket receives until it has been quiet for `quiet` seconds."""
        out = []
        # receive_nothing, not a receive that times out: a timed-out receive cancels the application.
        while not await self.nothing(quiet):
            out.append(await self.receive())
        return out

    async def close(self) -> None:
        await self.comm.disconnect()


async def open_socket(path: str, *, user=None, origin: bytes | None = ORIGIN, ticket: str | None = None) -> Socket:
    """Connect and assert the server accepted and did not close straight away."""
    comm = communicator(path, await database_sync_to_async(browser_headers)(user, origin), ticket)
    connected, _ = await comm.connect(timeout=3)
    assert connected, "handshake rejected"
    return Socket(comm)


async def refusal(path: str, *, user=None, origin: bytes | None = ORIGIN, ticket: str | None = None, headers=None):
    """How the server refused: ("handshake", None) before accept, or ("close", code) after it.

    Fails if the connection is accepted and stays open.
    """
    if headers is None:
        headers = await database_sync_to_async(browser_headers)(user, origin)
    comm = communicator(path, headers, ticket)
    connected, _ = await comm.connect(timeout=3)
    if not connected:
        await comm.disconnect()
        return ("handshake", None)
    output = await comm.receive_output(3)
    assert output["type"] == "websocket.close", f"accepted and open: {output}"
    await comm.disconnect()
    return ("close", output.get("code"))


# --- Real servers ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _daphne() -> str:
    beside_python = Path(sys.executable).with_name("daphne")
    return str(beside_python) if beside_python.exists() else (shutil.which("daphne") or "daphne")


def _wait_until_listening(port: int, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"daphne exited: {log.read().decode(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("daphne did not start within 30 s") from None
            time.sleep(0.1)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def daphne_servers(count: int, **env_vars: str):
    """Start `count` real Daphne processes serving `tutor_project.asgi:application` on free ports,
    with `env_vars` on top of this environment; yield their ports; stop them."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tutor_project.settings",
        "LOG_LEVEL": "WARNING",
        **env_vars,
    }
    processes: list[subprocess.Popen] = []
    with ExitStack() as stack:
        stack.callback(_stop, processes)
        started = []
        for _ in range(count):
            port = _free_port()
            log = stack.enter_context(tempfile.TemporaryFile())
            process = subprocess.Popen(
                [_daphne(), "-b", "127.0.0.1", "-p", str(port), "tutor_project.asgi:application"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            processes.append(process)
            started.append((port, process, log))
        for port, process, log in started:
            _wait_until_listening(port, process, log)
        yield [port for port, _, _ in started]

from tests.support.openai_standin import openai_standin  # noqa: E402, F401  (a fixture)
