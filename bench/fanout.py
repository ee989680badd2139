"""Transcript fan-out: a persisted line to its arrival at every room socket and at the monitor.

Several live sessions (default 2) of 30 rooms x 5 students are set up in a scratch database
(SQLite in a temp dir, or a throwaway PostgreSQL database with --postgres) and started; one real
Daphne process serves `tutor_project.asgi:application`; every student connects to their room
(`/ws/rooms/<id>/`, join ticket, no Origin) and the professor to each session's monitor. Lines
are then posted at a fixed rate, spread round-robin over all rooms, and each `transcript.final`
is timed from t0 (wall clock, `time.time_ns()`, carried in the line's text) to its arrival.

Two drivers:

- `socket`: a student of the room sends `chat.message` on their socket; Daphne persists the line
  (`room_line_post`) and broadcasts it. t0 is taken just before the client sends. This is what a
  typed line does in production, and the only driver that works with the in-memory layer (a
  group_send from another process cannot reach Daphne's in-memory layer).
- `external`: this process calls `sessions.live.room_line_post` (through
  `database_sync_to_async`, as a consumer or task would) against the same database; t0 is taken
  just before persisting. Needs a cross-process layer (Redis). Daphne's CPU is then fan-out only.

Baseline, same run, same clients and topology: a bare `websockets` server (a subprocess) that
sends the same `{type, seq, ts, data}` envelope to the room's sockets and the session's monitor,
fed by the same driver (a room socket's `chat.message`, or a control socket).

Reported per server: p50/p95/p99 at room sockets and at monitors, deliveries against expected
(drops and duplicates), server CPU per delivered event (utime+stime from /proc/<pid>/stat over
the load window; for Redis also redis-server's own CPU from INFO), and memory per idle
connection (RSS from /proc before and after every client connected). Ratios Channels / bare.
The bench reports; it asserts nothing.

    .venv/bin/python bench/fanout.py                       # 2 x 30 rooms x 5, both layers
    .venv/bin/python bench/fanout.py --quick               # smoke run, a few seconds
    .venv/bin/python bench/fanout.py --layers redis --drivers external --seconds 60
    .venv/bin/python bench/fanout.py --postgres            # postgres://postgres@127.0.0.1/postgres

Daphne runs with DJANGO_DEBUG=false, TUTOR_TURNS_PER_MINUTE=0, WS_MAX_MESSAGES_PER_SECOND=0 and
ROOM_TUTOR_DEBOUNCE_MS of an hour (no LLM chain either): the room tutors never answer, only the
students' lines travel. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import ExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROOM, MONITOR = 0, 1
CONNECT_BATCH = 50  # tickets are issued per batch, right before its connections (TTL <= 60 s)
CONNECT_CONCURRENCY = 16
WARMUP_SECONDS = 1.0
DRAIN_IDLE_SECONDS = 5.0  # stop waiting for deliveries after this long without one
TARGET_P99_MS = 50.0
TARGET_RATIO = 2.0


# --- small helpers ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_summary(ns: list[int]) -> dict[str, float]:
    if not ns:
        return {"n": 0}
    ms = [v / 1e6 for v in ns]
    return {
        "n": len(ms), "p50": percentile(ms, 0.5), "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99), "max": max(ms),
    }


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (not its children), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, log_path: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start within 30 s") from None
            time.sleep(0.1)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def line_text(line_id: int, t0_ns: int) -> str:
    return f"bench {line_id} {t0_ns}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the bare websockets server (a subprocess: --_bare PORT) -----------------------------------


def bare_server_main(port: int) -> None:
    """The same fan-out with nothing in between: `/ws/rooms/<id>/?session=<sid>`,
    `/ws/sessions/<sid>/monitor/`, and `/control/` taking {session_id, room_id, text}."""
    from websockets.asyncio.server import broadcast, serve

    rooms: dict[int, set] = defaultdict(set)
    monitors: dict[int, set] = defaultdict(set)
    seqs: Counter = Counter()

    def fan_out(session_id: int, room_id: int, user_id: int | None, text: str) -> None:
        seqs[session_id] += 1
        seq = seqs[session_id]
        envelope = {
            "type": "transcript.final", "seq": seq, "ts": utc_now(),
            "data": {
                "segment_id": seq, "session_id": session_id, "room_id": room_id,
                "speaker": {"id": user_id, "name": f"Student {user_id}", "kind": "student"},
                "text": text, "source": "text", "start_ms": 0, "end_ms": 0, "provider": "",
            },
        }
        payload = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
        broadcast([*rooms[room_id], *monitors[session_id]], payload)

    async def handler(ws) -> None:
        url = urlsplit(ws.request.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if parts[:2] == ["ws", "rooms"]:
            room_id, session_id = int(parts[2]), int(query["session"])
            user_id = int(query.get("user", 0))
            members, kind = rooms[room_id], "room.status"
            snapshot = {"id": room_id, "session_id": session_id}
        elif parts[:2] == ["ws", "sessions"]:
            session_id, room_id, user_id = int(parts[2]), None, None
            members, kind = monitors[session_id], "session.status"
            snapshot = {"id": session_id}
        elif parts == ["control"]:
            async for raw in ws:
                line = json.loads(raw)
                fan_out(line["session_id"], line["room_id"], line.get("user_id"), line["text"])
            return
        else:
            await ws.close(4404, "not_found")
            return
        await ws.send(json.dumps({"type": kind, "seq": None, "ts": utc_now(), "data": snapshot}))
        members.add(ws)
        try:
            async for raw in ws:
                message = json.loads(raw)
                if room_id is not None and message.get("type") == "chat.message":
                    fan_out(session_id, room_id, user_id, message["data"]["text"])
        finally:
            members.discard(ws)

    async def run() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, max_queue=None):
            await asyncio.get_running_loop().create_future()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with suppress(KeyboardInterrupt):
        asyncio.run(run())


# --- the clients (a spawned process, driven through a Pipe) ------------------------------------


class ClientState:
    def __init__(self) -> None:
        self.sockets: list[Any] = []  # index -> connection (None once closed)
        self.targets: list[dict] = []
        self.readers: list[asyncio.Task] = []
        self.records: list[tuple[int, int, int, int]] = []  # kind, line id, latency ns, socket
        self.other: Counter = Counter()
        self.closes: Counter = Counter()


async def _reader(state: ClientState, index: int, ws, kind: int) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for raw in ws:
            now = time.time_ns()
            message = json.loads(raw)
            if message["type"] == "transcript.final":
                parts = message["data"]["text"].split()
                if len(parts) == 3 and parts[0] == "bench":
                    # state.records is swapped by _collect: look it up each time.
                    state.records.append((kind, int(parts[1]), now - int(parts[2]), index))
                    continue
            state.other[message["type"]] += 1
            if message["type"] == "error":
                state.other["error:" + str(message["data"].get("code"))] += 1
    except ConnectionClosed:
        pass
    state.closes[str(ws.close_code)] += 1


async def _connect_all(state: ClientState, targets: list[dict]) -> dict:
    from websockets.asyncio.client import connect

    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    failed: list[str] = []

    async def one(target: dict) -> None:
        async with gate:
            try:
                ws = await connect(
                    target["url"], compression=None, ping_interval=None, open_timeout=30,
                    max_queue=None, user_agent_header=None,
                )
            except Exception as exc:
                failed.append(f"{target['url'].split('?')[0]}: {exc!r}")
                return
            try:
                snapshot = json.loads(await asyncio.wait_for(ws.recv(), 30))
            except Exception as exc:
                failed.append(f"{target['url'].split('?')[0]}: no snapshot, {exc!r} (close {ws.close_code})")
                await ws.close()
                return
            if snapshot["type"] not in ("room.status", "session.status"):
                failed.append(f"{target['url'].split('?')[0]}: first message {snapshot['type']}")
            index = len(state.sockets)
            state.sockets.append(ws)
            state.targets.append(target)
            kind = MONITOR if target["kind"] == "monitor" else ROOM
            state.readers.append(asyncio.create_task(_reader(state, index, ws, kind)))

    started = time.monotonic()
    await asyncio.gather(*(one(t) for t in targets))
    return {"connected": len(targets) - len(failed), "failed": failed, "seconds": time.monotonic() - started}


async def _socket_load(state: ClientState, rate: float, seconds: float, first_id: int) -> dict:
    """Students send `chat.message` at `rate` lines/s, spread round-robin over rooms."""
    senders: dict[int, list[int]] = defaultdict(list)
    for index, target in enumerate(state.targets):
        if target["kind"] == "room" and state.sockets[index] is not None:
            senders[target["room_id"]].append(index)
    rooms = _interleave_rooms(state, list(senders))
    count = max(1, int(rate * seconds))
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    lines: list[tuple[int, int]] = []
    worst_lag = 0.0
    for n in range(count):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            worst_lag = max(worst_lag, -delay)
        room_id = rooms[n % len(rooms)]
        members = senders[room_id]
        sender = members[(n // len(rooms)) % len(members)]
        line_id = first_id + n
        t0 = time.time_ns()
        await state.sockets[sender].send(
            json.dumps({"type": "chat.message", "data": {"text": line_text(line_id, t0)}})
        )
        lines.append((line_id, room_id))
    return {"lines": lines, "seconds": loop.time() - start, "worst_lag": worst_lag}


def _interleave_rooms(state: ClientState, rooms: list[int]) -> list[int]:
    """Rooms ordered session by session alternately (s1 r1, s2 r1, s1 r2, ...)."""
    by_session: dict[int, list[int]] = defaultdict(list)
    session_of = {t["room_id"]: t["session_id"] for t in state.targets if t["kind"] == "room"}
    for room_id in sorted(rooms):
        by_session[session_of[room_id]].append(room_id)
    columns = [by_session[s] for s in sorted(by_session)]
    out = []
    for i in range(max(len(c) for c in columns)):
        out.extend(c[i] for c in columns if i < len(c))
    return out


async def _collect(state: ClientState, expected: int, timeout: float) -> dict:
    """Wait until `expected` timed deliveries arrived (or none for a while); hand them over."""
    last_count, last_change = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while len(state.records) < expected and time.monotonic() < deadline:
        if len(state.records) != last_count:
            last_count, last_change = len(state.records), time.monotonic()
        elif time.monotonic() - last_change > DRAIN_IDLE_SECONDS:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # let duplicates or stragglers show
    records, other, closes = state.records, dict(state.other), dict(state.closes)
    state.records, state.other, state.closes = [], Counter(), Counter()
    return {"records": records, "other": other, "closes": closes}


async def _close_all(state: ClientState) -> None:
    for ws in state.sockets:
        if ws is not None:
            with suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
    for task in state.readers:
        task.cancel()
    await asyncio.gather(*state.readers, return_exceptions=True)
    state.sockets, state.targets, state.readers = [], [], []
    state.records, state.other, state.closes = [], Counter(), Counter()


def client_process_main(conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sends "exit" or kills us

    async def run() -> None:
        loop = asyncio.get_running_loop()
        state = ClientState()
        while True:
            try:
                op, kwargs = await loop.run_in_executor(None, conn.recv)
            except EOFError:
                break
            try:
                if op == "connect":
                    result = await _connect_all(state, **kwargs)
                elif op == "socket_load":
                    result = await _socket_load(state, **kwargs)
                elif op == "collect":
                    result = await _collect(state, **kwargs)
                elif op == "close_all":
                    result = await _close_all(state)
                elif op == "exit":
                    await _close_all(state)
                    conn.send(("ok", None))
                    break
                else:
                    raise ValueError(op)
                conn.send(("ok", result))
            except Exception as exc:
                conn.send(("error", repr(exc)))

    asyncio.run(run())


class Clients:
    """The client process, as seen from the layer process."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=client_process_main, args=(child,), daemon=True, name="fanout-clients")
        self.process.start()
        child.close()

    def call(self, op: str, **kwargs: Any) -> Any:
        self.conn.send((op, kwargs))
        status, result = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"client process: {op} failed: {result}")
        return result

    def stop(self) -> None:
        if self.process.is_alive():
            with suppress(Exception):
                self.conn.send(("exit", {}))
                if self.conn.poll(15):
                    self.conn.recv()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# --- one layer's run (a subprocess: --_layer NAME --_out FILE) --------------------------------


def _postgres_create(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    return parts._replace(path="/" + name).geturl()


def _postgres_drop(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redis_flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def _redis_cpu_seconds(url: str) -> float | None:
    import redis

    try:
        info = redis.Redis.from_url(url).info("cpu")
    except Exception:
        return None
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def seed(args) -> dict:
    """Tenant, professor, one course per session with its students, sessions created and started.
    Returns the topology: sessions -> professor user, rooms -> student user ids."""
    from django.contrib.auth.hashers import make_password

    from courses.models import Course, Enrollment, Professor, Student, Tenant, User
    from sessions.models import RoomAssignment
    from sessions.orchestration import session_create, session_start

    tenant = Tenant.objects.create(name="Fan-out University", slug="fanout-bench")
    unusable = make_password(None)
    prof_user = User.objects.create(
        username="fanout-prof", first_name="Ada", last_name="Prof", tenant=tenant,
        role=User.Role.PROFESSOR, password=unusable,
    )
    professor = Professor.objects.create(user=prof_user, tenant=tenant, title="Dr.")
    topology: dict[str, Any] = {"sessions": [], "professor_user": prof_user.pk}
    per_session = args.rooms * args.students
    for s in range(args.sessions):
        course = Course.objects.create(tenant=tenant, code=f"FAN{s + 1}", title=f"Fan-out {s + 1}")
        course.professors.add(professor)
        users = User.objects.bulk_create(
            User(
                username=f"fan{s + 1}-{i + 1}", first_name="Student", last_name=f"{s + 1}-{i + 1}",
                tenant=tenant, role=User.Role.STUDENT, password=unusable,
            )
            for i in range(per_session)
        )
        students = Student.objects.bulk_create(Student(user=u, tenant=tenant) for u in users)
        Enrollment.objects.bulk_create(Enrollment(course=course, student=st) for st in students)
        session = session_create(course=course, professor=professor, title=f"Fan-out {s + 1}", room_count=args.rooms)
        session_start(session=session)
        rooms: dict[int, list[int]] = defaultdict(list)
        for room_id, user_id in RoomAssignment.objects.filter(session=session).values_list(
            "room_id", "student__user_id"
        ):
            rooms[room_id].append(user_id)
        topology["sessions"].append({"id": session.pk, "rooms": {r: sorted(u) for r, u in sorted(rooms.items())}})
    return topology


def build_targets(topology: dict, server: str, port: int) -> list[dict]:
    """Every student to their room, the professor to each monitor. URLs get tickets later."""
    base = f"ws://127.0.0.1:{port}"
    targets = []
    for session in topology["sessions"]:
        sid = session["id"]
        for room_id, users in session["rooms"].items():
            for user_id in users:
                url = f"{base}/ws/rooms/{room_id}/"
                if server == "bare":
                    url += f"?session={sid}&user={user_id}"
                targets.append({"kind": "room", "url": url, "room_id": room_id, "session_id": sid, "user_id": user_id})
        targets.append({
            "kind": "monitor", "url": f"{base}/ws/sessions/{sid}/monitor/", "room_id": None,
            "session_id": sid, "user_id": topology["professor_user"],
        })
    return targets


def with_tickets(targets: list[dict]) -> list[dict]:
    from sessions.tickets import ticket_issue

    out = []
    for t in targets:
        kind, object_id = ("monitor", t["session_id"]) if t["kind"] == "monitor" else ("room", t["room_id"])
        ticket = ticket_issue(user_id=t["user_id"], kind=kind, object_id=object_id)
        out.append({**t, "url": f"{t['url']}?ticket={quote(ticket)}"})
    return out


def connect_targets(clients: Clients, targets: list[dict], server: str) -> dict:
    connected, failed, seconds = 0, [], 0.0
    for i in range(0, len(targets), CONNECT_BATCH):
        batch = targets[i : i + CONNECT_BATCH]
        if server == "channels":
            batch = with_tickets(batch)
        result = clients.call("connect", targets=batch)
        connected += result["connected"]
        failed += result["failed"]
        seconds += result["seconds"]
    return {"connected": connected, "failed": failed, "seconds": seconds}


async def _external_drive_channels(rooms: list, rate: float, seconds: float, first_id: int) -> dict:
    """This process persists the lines (room_line_post), from a thread as a consumer would."""
    from channels.db import database_sync_to_async

    from sessions.live import room_line_post

    durations: list[int] = []

    def post(room, user, line_id: int) -> None:
        t0 = time.time_ns()
        room_line_post(room=room, user=user, text=line_text(line_id, t0))
        durations.append(time.time_ns() - t0)  # persist, commit, publish to both groups

    post_async = database_sync_to_async(post)
    cpu = time.process_time()
    result = await _paced(rooms, rate, seconds, first_id, lambda room, user, line_id: post_async(room, user, line_id))
    result["driver_cpu_us_per_line"] = (time.process_time() - cpu) / len(result["lines"]) * 1e6
    result["post"] = latency_summary(durations)
    return result


async def _external_drive_bare(rooms: list, rate: float, seconds: float, first_id: int, port: int) -> dict:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/control", compression=None, ping_interval=None) as control:

        async def send(room, user, line_id: int) -> None:
            await control.send(json.dumps({
                "session_id": room.session_id, "room_id": room.pk, "user_id": user.pk,
                "text": line_text(line_id, time.time_ns()),
            }))

        return await _paced(rooms, rate, seconds, first_id, send)


async def _paced(rooms: list, rate: float, seconds: float, first_id: int, post) -> dict:
    loop = asyncio.get_running_loop()
    count = max(1, int(rate * seconds))
    start = loop.time() + 0.1
    lines, worst_lag = [], 0.0
    for n in range(count):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            worst_lag = max(worst_lag, -delay)
        room, users = rooms[n % len(rooms)]
        user = users[(n // len(rooms)) % len(users)]
        await post(room, user, first_id + n)
        lines.append((first_id + n, room.pk))
    return {"lines": lines, "seconds": loop.time() - start, "worst_lag": worst_lag}


def driver_rooms(topology: dict) -> list:
    """(room, [users]) in the same interleaved order as the socket driver's."""
    from courses.models import User
    from sessions.models import BreakoutRoom

    room_objects = {r.pk: r for r in BreakoutRoom.objects.select_related("session")}
    users = {u.pk: u for u in User.objects.filter(role=User.Role.STUDENT)}
    columns = [list(s["rooms"].items()) for s in topology["sessions"]]
    out = []
    for i in range(max(len(c) for c in columns)):
        for column in columns:
            if i < len(column):
                room_id, user_ids = column[i]
                out.append((room_objects[room_id], [users[u] for u in user_ids]))
    return out


class LoadRunner:
    def __init__(self, args, topology: dict, clients: Clients, redis_url: str | None) -> None:
        self.args, self.topology, self.clients, self.redis_url = args, topology, clients, redis_url
        self.room_size = {r: len(u) for s in topology["sessions"] for r, u in s["rooms"].items()}
        self.session_of = {r: s["id"] for s in topology["sessions"] for r in s["rooms"]}
        self.next_id = 1
        self._rooms = None

    def rooms(self) -> list:
        if self._rooms is None:
            self._rooms = driver_rooms(self.topology)
        return self._rooms

    def drive(self, server: str, driver: str, port: int, rate: float, seconds: float) -> dict:
        first_id = self.next_id
        if driver == "socket":
            result = self.clients.call("socket_load", rate=rate, seconds=seconds, first_id=first_id)
        elif server == "channels":
            result = asyncio.run(_external_drive_channels(self.rooms(), rate, seconds, first_id))
        else:
            result = asyncio.run(_external_drive_bare(self.rooms(), rate, seconds, first_id, port))
        self.next_id += len(result["lines"]) + 1000
        return result

    def measure(self, server: str, driver: str, pid: int, port: int, monitors: dict[int, int]) -> dict:
        args = self.args
        # Warm-up: the first lines take imports and caches; not measured.
        warm = self.drive(server, driver, port, min(args.rate, 20.0), WARMUP_SECONDS)
        self.clients.call("collect", expected=self.expected(warm["lines"], monitors)[2], timeout=15)
        time.sleep(0.5)

        cpu_before = proc_cpu_seconds(pid)
        redis_before = _redis_cpu_seconds(self.redis_url) if self.redis_url and server == "channels" else None
        started = time.monotonic()
        load = self.drive(server, driver, port, args.rate, args.seconds)
        exp_room, exp_monitor, exp_total = self.expected(load["lines"], monitors)
        got = self.clients.call("collect", expected=exp_total, timeout=args.seconds + 30)
        window = time.monotonic() - started
        cpu = proc_cpu_seconds(pid) - cpu_before
        redis_cpu = None
        if redis_before is not None:
            after = _redis_cpu_seconds(self.redis_url)
            redis_cpu = None if after is None else after - redis_before

        wanted = {line_id for line_id, _ in load["lines"]}
        seen: set[tuple[int, int]] = set()
        latencies: dict[int, list[int]] = {ROOM: [], MONITOR: []}
        dupes = 0
        for kind, line_id, latency, index in got["records"]:
            if line_id not in wanted:
                continue
            if (line_id, index) in seen:
                dupes += 1
                continue
            seen.add((line_id, index))
            latencies[kind].append(latency)
        delivered = len(latencies[ROOM]) + len(latencies[MONITOR])
        return {
            "server": server, "driver": driver, "lines": len(load["lines"]),
            "rate_achieved": len(load["lines"]) / load["seconds"] if load["seconds"] else 0.0,
            "driver_worst_lag_ms": load["worst_lag"] * 1000,
            "expected": {"room": exp_room, "monitor": exp_monitor},
            "delivered": {"room": len(latencies[ROOM]), "monitor": len(latencies[MONITOR])},
            "duplicates": dupes,
            "room": latency_summary(latencies[ROOM]), "monitor": latency_summary(latencies[MONITOR]),
            "window_s": window, "cpu_s": cpu,
            "cpu_us_per_delivery": cpu / delivered * 1e6 if delivered else None,
            "redis_cpu_us_per_delivery": redis_cpu / delivered * 1e6 if (redis_cpu is not None and delivered) else None,
            "other_messages": got["other"], "closes": got["closes"],
            "post": load.get("post"), "driver_cpu_us_per_line": load.get("driver_cpu_us_per_line"),
        }

    def expected(self, lines: list[tuple[int, int]], monitors: dict[int, int]) -> tuple[int, int, int]:
        room = sum(self.room_size[r] for _, r in lines)
        monitor = sum(monitors.get(self.session_of[r], 0) for _, r in lines)
        return room, monitor, room + monitor


def run_server(
    *, server: str, command: list[str], env: dict, logs: Path, args, topology: dict,
    clients: Clients, drivers: list[str], redis_url: str | None, stack: ExitStack,
) -> list[dict]:
    port = free_port()
    log_path = logs / f"{server}.log"
    log = stack.enter_context(open(log_path, "wb"))  # noqa: SIM115  (closed by the stack)
    command = [part.replace("{port}", str(port)) for part in command]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(stop_process, process)
    wait_until_listening(port, process, log_path, server)
    pid = process.pid
    targets = build_targets(topology, server, port)
    room_targets = [t for t in targets if t["kind"] == "room"]
    monitor_targets = [t for t in targets if t["kind"] == "monitor"]

    # Warm-up connections (first handshake imports and caches), then the idle baseline.
    connect_targets(clients, [room_targets[0], monitor_targets[0]], server)
    clients.call("close_all")
    time.sleep(1.0)
    rss_before = proc_rss_bytes(pid)
    connected = connect_targets(clients, targets, server)
    time.sleep(2.0)
    rss_after = proc_rss_bytes(pid)
    conns = connected["connected"]
    print(
        f"  {server}: {conns}/{len(targets)} connected in {connected['seconds']:.1f} s"
        + (f", {len(connected['failed'])} failed, e.g. {connected['failed'][:3]}" if connected["failed"] else ""),
        file=sys.stderr, flush=True,
    )
    monitors = Counter(t["session_id"] for t in monitor_targets)
    if connected["failed"]:
        # Expected counts follow the sockets that are really open.
        raise RuntimeError(f"{server}: {len(connected['failed'])} connections failed: {connected['failed'][:5]}")
    runner = LoadRunner(args, topology, clients, redis_url)
    runs = []
    for driver in drivers:
        print(f"  {server}: driver={driver}, {args.rate:g} lines/s for {args.seconds:g} s ...", file=sys.stderr, flush=True)
        result = runner.measure(server, driver, pid, port, monitors)
        result.update({
            "connections": conns, "connect_seconds": connected["seconds"],
            "rss_before": rss_before, "rss_after": rss_after,
            "rss_per_connection": (rss_after - rss_before) / conns if conns else None,
        })
        runs.append(result)
    clients.call("close_all")
    stop_process(process)
    return runs


def layer_main(args) -> None:
    """One layer: settings are read once per process, so each layer runs in its own."""
    layer = args._layer
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    drivers = [d for d in args.drivers.split(",") if d]
    if layer == "memory" and "external" in drivers:
        print("  memory: the external driver cannot reach Daphne's in-memory layer; socket only", file=sys.stderr)
        drivers = [d for d in drivers if d != "external"]
    out: dict[str, Any] = {"layer": layer, "runs": []}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fanout-bench-")))
        secret = secrets.token_urlsafe(48)
        env = {
            "DJANGO_SETTINGS_MODULE": "tutor_project.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secret,  # the tickets this process signs are checked by Daphne
            "DJANGO_MEDIA_ROOT": str(tmp / "media"),
            "LOG_LEVEL": "WARNING",
            "TUTOR_TURNS_PER_MINUTE": "0",
            "WS_MAX_MESSAGES_PER_SECOND": "0",
            "ROOM_TUTOR_DEBOUNCE_MS": str(3600 * 1000),
            "CELERY_TASK_ALWAYS_EAGER": "true",
        }
        if args.postgres:
            name = f"fanout_bench_{os.getpid()}"
            env["DATABASE_URL"] = _postgres_create(args.postgres, name)
            stack.callback(_postgres_drop, args.postgres, name)
        else:
            env["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
        redis_url = None
        os.environ.pop("REDIS_URL", None)
        os.environ.pop("CELERY_BROKER_URL", None)
        if layer == "redis":
            redis_url = args.redis_url
            env["REDIS_URL"] = redis_url
            _redis_flush(redis_url)
            stack.callback(_redis_flush, redis_url)
        os.environ.update(env)

        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connections

        stack.callback(connections.close_all)
        call_command("migrate", verbosity=0)
        topology = seed(args)
        out["database"] = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        out["channel_layer"] = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
        out["topology"] = {
            "sessions": len(topology["sessions"]),
            "rooms": sum(len(s["rooms"]) for s in topology["sessions"]),
            "students": sum(len(u) for s in topology["sessions"] for u in s["rooms"].values()),
        }
        connections.close_all()

        clients = Clients()
        stack.callback(clients.stop)
        server_env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
        server_env.update(env)
        daphne = str(Path(sys.executable).with_name("daphne"))
        common = {"env": server_env, "logs": tmp, "args": args, "topology": topology, "clients": clients,
                  "drivers": drivers, "redis_url": redis_url, "stack": stack}
        out["runs"] += run_server(
            server="channels", command=[daphne, "-b", "127.0.0.1", "-p", "{port}", "tutor_project.asgi:application"],
            **common,
        )
        out["runs"] += run_server(
            server="bare", command=[sys.executable, str(Path(__file__).resolve()), "--_bare", "{port}"], **common
        )
    Path(args._out).write_text(json.dumps(out))


# --- the report ------------------------------------------------------------------------------


def _lat(summary: dict) -> str:
    if not summary.get("n"):
        return "—"
    return f"{summary['p50']:.1f} / {summary['p95']:.1f} / {summary['p99']:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}x" if a and b else "—"


def report(results: list[dict], args) -> str:
    lines = [
        f"Transcript fan-out: {args.sessions} sessions x {args.rooms} rooms x {args.students} students"
        f" (+1 monitor per session), {args.rate:g} lines/s for {args.seconds:g} s, one server process",
        "",
        "| layer | driver | server | delivered / expected | room p50 / p95 / p99 ms | monitor p50 / p95 / p99 ms"
        " | monitor max ms | CPU µs / delivery | idle RSS / conn |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for run in result["runs"]:
            got = run["delivered"]["room"] + run["delivered"]["monitor"]
            want = run["expected"]["room"] + run["expected"]["monitor"]
            drops = want - got
            delivered = f"{got} / {want}" + ("" if drops == 0 else f" (**{drops} dropped**)")
            if run["duplicates"]:
                delivered += f", {run['duplicates']} dupes"
            cpu = f"{run['cpu_us_per_delivery']:.0f}" if run["cpu_us_per_delivery"] else "—"
            if run.get("redis_cpu_us_per_delivery") is not None:
                cpu += f" (+{run['redis_cpu_us_per_delivery']:.0f} redis)"
            rss = f"{run['rss_per_connection'] / 1024:.0f} KiB" if run["rss_per_connection"] else "—"
            lines.append(
                f"| {result['layer']} | {run['driver']} | {'Daphne+Channels' if run['server'] == 'channels' else 'bare websockets'}"
                f" | {delivered} | {_lat(run['room'])} | {_lat(run['monitor'])} | {run['monitor'].get('max', 0):.1f}"
                f" | {cpu} | {rss} |"
            )
    lines += [
        "",
        "| layer | driver | monitor p50 ratio | monitor p99 ratio | room p99 ratio | CPU ratio | memory ratio"
        " | monitor p99 < 50 ms | p99 within 2x bare | all delivered |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        bare = {r["driver"]: r for r in result["runs"] if r["server"] == "bare"}
        for run in result["runs"]:
            if run["server"] != "channels" or run["driver"] not in bare:
                continue
            base = bare[run["driver"]]
            p99 = run["monitor"].get("p99")
            within = p99 is not None and base["monitor"].get("p99") and p99 <= TARGET_RATIO * base["monitor"]["p99"]
            complete = all(
                r["delivered"] == r["expected"] and not r["duplicates"] for r in (run, base)
            )
            lines.append(
                f"| {result['layer']} | {run['driver']} | {_ratio(run['monitor'].get('p50'), base['monitor'].get('p50'))}"
                f" | {_ratio(p99, base['monitor'].get('p99'))} | {_ratio(run['room'].get('p99'), base['room'].get('p99'))}"
                f" | {_ratio(run['cpu_us_per_delivery'], base['cpu_us_per_delivery'])}"
                f" | {_ratio(run['rss_per_connection'], base['rss_per_connection'])}"
                f" | {'met' if p99 is not None and p99 < TARGET_P99_MS else 'NOT met'}"
                f" | {'met' if within else 'NOT met'} | {'yes' if complete else 'NO'} |"
            )
    notes = []
    for result in results:
        for run in result["runs"]:
            if run.get("post"):
                notes.append(
                    f"- {result['layer']}/{run['driver']}/{run['server']}: room_line_post in the driver (persist, commit,"
                    f" publish) p50 / p99 {run['post']['p50']:.1f} / {run['post']['p99']:.1f} ms,"
                    f" driver CPU {run['driver_cpu_us_per_line']:.0f} µs per line"
                )
            extra = {k: v for k, v in run["other_messages"].items() if k not in ("room.status", "session.status")}
            if extra or run["driver_worst_lag_ms"] > 100:
                notes.append(
                    f"- {result['layer']}/{run['driver']}/{run['server']}: achieved {run['rate_achieved']:.1f} lines/s,"
                    f" driver worst lag {run['driver_worst_lag_ms']:.0f} ms, other messages {extra}"
                )
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def redis_up(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--rooms", type=int, default=30, help="rooms per session")
    parser.add_argument("--students", type=int, default=5, help="students per room")
    parser.add_argument("--rate", type=float, default=50.0, help="lines per second, over all rooms")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--layers", default="memory,redis", help="memory,redis")
    parser.add_argument("--drivers", default="socket,external",
                        help="socket (a student's chat.message), external (room_line_post here; Redis only)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="its db is flushed")
    parser.add_argument("--postgres", nargs="?", const="postgres://postgres@127.0.0.1:5432/postgres", default=None,
                        metavar="ADMIN_URL", help="a throwaway database on this server instead of SQLite")
    parser.add_argument("--quick", action="store_true", help="1 session x 4 rooms x 3, 20 lines/s for 5 s")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--_layer", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    parser.add_argument("--_bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._bare:
        bare_server_main(args._bare)
        return
    if args.quick:
        args.sessions, args.rooms, args.students, args.rate, args.seconds = 1, 4, 3, 20.0, 5.0
    if args._layer:
        layer_main(args)
        return

    results = []
    for layer in [x.strip() for x in args.layers.split(",") if x.strip()]:
        if layer not in ("memory", "redis"):
            parser.error(f"unknown layer {layer!r}")
        if layer == "redis" and not redis_up(args.redis_url):
            print(f"Redis is not reachable at {args.redis_url}: skipping the redis layer.", file=sys.stderr)
            continue
        print(f"layer {layer}:", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="fanout-out-") as tmp:
            out = Path(tmp) / "result.json"
            command = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--_layer", layer, "--_out", str(out)]
            child = subprocess.Popen(command, cwd=ROOT)
            try:
                code = child.wait()
            except KeyboardInterrupt:
                # The child got the same Ctrl-C and cleans up; give it the time to.
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                raise
            if code != 0 or not out.exists():
                print(f"layer {layer} failed (exit {code})", file=sys.stderr)
                continue
            results.append(json.loads(out.read_text()))
    if not results:
        sys.exit(1)
    first = results[0]
    print(
        f"\nnproc {os.cpu_count()}, Python {sys.version.split()[0]}, database {first['database']}, "
        f"{first['topology']['students']} students in {first['topology']['rooms']} rooms"
    )
    print(report(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Every process and temp file was released on the way out (ExitStack in layer_main).
        print("interrupted", file=sys.stderr)
        sys.exit(130)
