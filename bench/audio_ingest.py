"""Audio ingest: N simulated speaking connections through VoiceInput in one process, at real pace.

Each stream replays real speech (espeak-ng sentences, 16 kHz PCM16) with pauses between
sentences, in 20 ms frames, each frame due at t0 + 20 ms x i; streams start at random offsets
within the first frame period. The delay of a frame is from its due time to when
`VoiceInput.feed()` returned: the time a real consumer would hold the next frame back. Three
pipelines per N, each in a fresh subprocess (so CPU and RSS are its own):

- `bare`: the same scheduling calling an empty coroutine (the baseline: asyncio itself);
- `vad`: VoiceInput with a null STT engine (frame checks, webrtcvad, utterance bookkeeping);
- `pocketsphinx`: VoiceInput with the real pocketsphinx engine, the sentences as keywords
  (decoders pooled, settings.VOICE_POCKETSPHINX_DECODERS; decoding in threads).

Reported per N: frame delay p50/p99/max, CPU% of one core (utime+stime over the load window,
threads and decoder processes included), RSS per stream (the process's RSS growth from before the
streams to the end, / N: VoiceInput's own state plus the delay samples, while the audio scripts
are made before; the decoder processes' RSS is a fixed cost, printed apart), and for
pocketsphinx the finals heard against utterances spoken and final latency (end of speech to
final) p50/p99. Ratios: p99 against `bare`. The largest N with p99 < 100 ms per pipeline.
The bench reports; it asserts nothing.

    .venv/bin/python bench/audio_ingest.py                      # N = 25,50,100,150,200; 20 s each
    .venv/bin/python bench/audio_ingest.py --quick              # N = 10, 5 s: a smoke run
    .venv/bin/python bench/audio_ingest.py --streams 100 --seconds 60 --pipelines vad

`--through daphne`: the same streams over real WebSockets. A scratch SQLite database gets one live
session with rooms of 5 students; for each (pipeline, N) a fresh Daphne process serves
`tutor_project.asgi` (pipelines `vad`: the STT chain is `NullSttEngine` alone, patched into
`voice.live.stt_chain_factory` by this script's server wrapper, the client-recognises case;
`pocketsphinx`: the production chain with no cloud keys), and N students connect to their room
socket (`/ws/rooms/<id>/`, join tickets) from client processes (one per 50 streams), sending the
audio as binary frames at real pace plus a `ping` once a second between frames. The server
answers a socket's messages in order, so the ping's round trip bounds how long that socket's
frames queue. Reported: ping RTT p50/p99/max, Daphne's CPU % (its decoder processes included),
RSS growth per connection (connected, idle) and per stream (after speaking), the client
processes' CPU % and their own send lag p99 (a client bottleneck shows there), finals heard,
errors and closes. Four warm-up speakers first (imports, decoder processes). `--profile FILE`
runs Daphne under cProfile (stats written on exit);
AUDIO_INGEST_SWITCH_INTERVAL=SECONDS sets its `sys.setswitchinterval` (an experiment). Production limits stay on (messages a
second, audio seconds a minute); the room tutors never answer (debounce of an hour, no LLM).

    .venv/bin/python bench/audio_ingest.py --through daphne     # N = 25..200, both pipelines
    .venv/bin/python bench/audio_ingest.py --through daphne --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAME_MS = 20
TARGET_P99_MS = 100.0
SENTENCES = (
    "what is recursion",
    "explain binary search",
    "why does recursion need a base case",
    "what is a linked list",
    "how does a hash table work",
    "can you give me an example",
)
PIPELINES = ("bare", "vad", "pocketsphinx")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds() -> float:
    """This process's CPU (threads included) plus its live children's (the decoder processes)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    me, tick = str(os.getpid()), os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def children_rss_bytes() -> int:
    me, total = str(os.getpid()), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[1] != me:
                    continue
            with open(f"/proc/{entry}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def script(rng: random.Random, seconds: float, speech: dict[str, bytes]) -> tuple[bytes, int]:
    """One stream's audio: pause, sentence, pause... for `seconds`; and how many sentences."""
    from tests.voice.audio_support import silence

    parts, total_ms, count = [silence(rng.randrange(0, 1500, 20))], 0, 0
    while True:
        sentence = speech[rng.choice(SENTENCES)]
        pause = silence(rng.randrange(900, 2500, 20))
        total_ms = sum(len(p) for p in parts) // 32
        if total_ms + (len(sentence) + len(pause)) // 32 > seconds * 1000:
            break
        parts += [sentence, pause]
        count += 1
    pcm = b"".join(parts)
    return pcm + silence(int(seconds * 1000) - len(pcm) // 32), count


class Listener:
    def __init__(self, latencies: list[int]):
        self.latencies = latencies
        self.finals = 0

    async def on_speech_start(self, *, start_ms):
        return None

    async def on_speech(self, *, voiced_ms):
        return None

    async def on_partial(self, transcript):
        return None

    async def on_final(self, utterance):
        self.finals += 1
        self.latencies.append(utterance.latency_ms)

    async def on_switch(self, *, from_engine, to_engine, reason):
        return None


async def run_one(pipeline: str, streams: int, seconds: float, seed: int) -> dict:
    """One pipeline with `streams` connections for `seconds` (in this process)."""
    from tests.voice.audio_support import speak
    from voice.pipeline import VoiceInput
    from voice.providers import NullSttEngine
    from voice.providers.base import StreamOptions, SttChain
    from voice.providers.pocketsphinx import PocketsphinxEngine, decoder_pool

    rng = random.Random(seed)
    speech = {text: speak(text) for text in SENTENCES}
    scripts = [script(rng, seconds, speech) for _ in range(streams)]
    spoken = sum(count for _, count in scripts)
    options = StreamOptions(keywords=SENTENCES)
    if pipeline == "pocketsphinx":  # load the decoders before measuring (a warm server)
        pool = decoder_pool()
        warm = [await pool.acquire() for _ in range(pool.size)]
        for decoder in warm:
            pool.release(decoder)

    rss_before, latencies = rss_bytes(), []
    listeners, inputs = [], []
    for _ in range(streams):
        listener = Listener(latencies)
        listeners.append(listener)
        if pipeline == "bare":
            inputs.append(None)
            continue
        engine = NullSttEngine() if pipeline == "vad" else PocketsphinxEngine()
        inputs.append(VoiceInput(chain=SttChain([engine]), options=options, listener=listener))

    delays: list[float] = []

    async def nothing(frame: bytes) -> None:
        return None

    async def stream(index: int, start: float) -> None:
        voice = inputs[index]
        feed = nothing if voice is None else voice.feed
        loop_time = loop.time
        pcm, size = scripts[index][0], FRAME_MS * 32
        for i in range(len(pcm) // size):
            due = start + i * FRAME_MS / 1000
            wait = due - loop_time()
            if wait > 0:
                await asyncio.sleep(wait)
            await feed(pcm[i * size : (i + 1) * size])  # a fresh bytes object, as off a socket
            delays.append(loop_time() - due)
        if voice is not None:
            await voice.end()

    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.5
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(stream(i, t0 + rng.random() * FRAME_MS / 1000) for i in range(streams)))
    cpu1, wall1 = cpu_seconds(), time.perf_counter()
    drain_started = time.perf_counter()
    for voice in inputs:
        if voice is not None:
            await voice.idle()
    drain = time.perf_counter() - drain_started
    rss_after = rss_bytes()
    for voice in inputs:
        if voice is not None:
            await voice.aclose()
    delays_ms = [d * 1000 for d in delays]
    return {
        "pipeline": pipeline, "streams": streams, "seconds": seconds, "frames": len(delays),
        "p50": percentile(delays_ms, 0.5), "p99": percentile(delays_ms, 0.99), "max": max(delays_ms),
        "cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "rss_per_stream_kib": (rss_after - rss_before) / streams / 1024,
        "rss_mib": rss_after / 2**20,
        "decoders_rss_mib": children_rss_bytes() / 2**20,
        "spoken": spoken, "finals": sum(listener.finals for listener in listeners),
        "final_p50": percentile(latencies, 0.5), "final_p99": percentile(latencies, 0.99),
        "drain_s": drain,
    }


def child(pipeline: str, streams: int, seconds: float, seed: int) -> dict:
    """Run one measurement in a fresh interpreter; its JSON result."""
    out = subprocess.run(
        [sys.executable, __file__, "--_one", pipeline, str(streams), str(seconds), str(seed)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- --through daphne: a real Daphne process, N WebSocket clients in other processes ----------

CLIENT_STREAMS_PER_PROCESS = 50  # one client process per 50 streams (its CPU is reported)
STUDENTS_PER_ROOM = 5
STARTUP_SECONDS = 2.0
WARM = 4  # warm-up speakers: settings.VOICE_POCKETSPHINX_DECODERS' default
SERVER_PIPELINES = ("vad", "pocketsphinx")


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live children (the decoder processes)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if entry == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pid_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def daphne_server_main(pipeline: str, port: int) -> None:
    """The bench's Daphne: tutor_project.asgi as in production, except for `vad`, where the STT
    chain is the null engine alone (the client-recognises case). Run as `--_daphne PIPELINE PORT`."""
    import django

    django.setup()
    if pipeline == "vad":
        import voice.live
        from voice.providers import NullSttEngine
        from voice.providers.base import SttChain

        voice.live.stt_chain_factory = lambda: SttChain([NullSttEngine()])
    from daphne.cli import CommandLineInterface

    if os.environ.get("AUDIO_INGEST_SWITCH_INTERVAL"):  # an experiment: the GIL's hand-over period
        sys.setswitchinterval(float(os.environ["AUDIO_INGEST_SWITCH_INTERVAL"]))
    argv = ["-b", "127.0.0.1", "-p", str(port), "tutor_project.asgi:application"]
    profile = os.environ.get("AUDIO_INGEST_PROFILE")
    if not profile:
        CommandLineInterface().run(argv)
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(CommandLineInterface().run, argv)
    finally:
        profiler.dump_stats(profile)


async def _client_stream(target: dict, pcm: bytes, start: float, stats: dict) -> None:
    """One speaking student: 20 ms binary frames at real pace from loop time `start`, a `ping`
    every second between them, `audio.end` at the end; then a short wait for finals."""
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    ws = stats["sockets"][target["url"]]
    sent_at: dict[int, float] = {}
    stats["pending"].append(sent_at)

    async def reader() -> None:
        try:
            async for raw in ws:
                now = loop.time()
                message = json.loads(raw)
                kind = message.get("type")
                stats["messages"][kind] = stats["messages"].get(kind, 0) + 1
                data = message.get("data") or {}
                if kind == "pong" and isinstance(data, dict) and data.get("n") in sent_at:
                    sent = sent_at.pop(data["n"])
                    stats["rtt"].append((sent - start, (now - sent) * 1000))
                elif kind == "error":
                    code = f"error:{data.get('code')}"
                    stats["messages"][code] = stats["messages"].get(code, 0) + 1
                elif kind == "transcript.final" and (data.get("speaker") or {}).get("id") == target["user_id"]:
                    stats["finals"] += 1
        except ConnectionClosed:
            pass
        if not stats["closing"]:
            stats["closed"].append(ws.close_code)

    read = asyncio.create_task(reader())
    size, offset = FRAME_MS * 32, random.randrange(50)
    try:
        for i in range(len(pcm) // size):
            due = start + i * FRAME_MS / 1000
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            stats["lag"].append((loop.time() - due) * 1000)
            await ws.send(pcm[i * size : (i + 1) * size])
            if i % 50 == offset:
                sent_at[i] = loop.time()
                await ws.send(json.dumps({"type": "ping", "data": {"n": i}}))
                stats["pings"] += 1
        await ws.send(json.dumps({"type": "audio.end", "data": {}}))
    except ConnectionClosed:
        pass
    stats["readers"].append(read)


def client_process_main(conn, targets: list[dict], seconds: float, seed: int) -> None:
    """A client process: connect its targets, report, wait for the start (wall clock), stream."""
    from websockets.asyncio.client import connect

    from tests.voice.audio_support import speak

    rng = random.Random(seed)
    speech = {text: speak(text) for text in SENTENCES}
    scripts = [script(rng, seconds, speech) for _ in targets]

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stats = {"sockets": {}, "messages": {}, "rtt": [], "lag": [], "finals": 0, "pings": 0,
                 "pending": [], "closed": [], "closing": False, "readers": [], "failed": []}
        gate = asyncio.Semaphore(16)

        async def one(target: dict) -> None:
            async with gate:
                try:
                    ws = await connect(target["url"], compression=None, ping_interval=None, open_timeout=30,
                                       max_queue=None, user_agent_header=None)
                    json.loads(await asyncio.wait_for(ws.recv(), 30))  # room.status
                    stats["sockets"][target["url"]] = ws
                except Exception as exc:
                    stats["failed"].append(repr(exc))

        await asyncio.gather(*(one(t) for t in targets))
        conn.send({"connected": len(stats["sockets"]), "failed": stats["failed"][:3]})
        start_wall = await loop.run_in_executor(None, conn.recv)
        start = loop.time() + (start_wall - time.time())
        live = [(t, s) for t, s in zip(targets, scripts, strict=True) if t["url"] in stats["sockets"]]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(
            _client_stream(t, s[0], start + rng.random() * FRAME_MS / 1000, stats) for t, s in live
        ))
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        await asyncio.sleep(3.0)  # finals of the last utterances
        stats["closing"] = True
        unanswered = sum(len(p) for p in stats["pending"])
        for ws in stats["sockets"].values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        for task in stats["readers"]:
            task.cancel()
        conn.send({
            "rtt": stats["rtt"], "lag": stats["lag"], "messages": stats["messages"], "finals": stats["finals"],
            "spoken": sum(s[1] for _, s in live), "pings": stats["pings"], "unanswered": unanswered,
            "closed": stats["closed"], "cpu_pct": 100 * cpu / wall,
        })

    asyncio.run(run())


def _seed(max_streams: int) -> list[dict]:
    """One tenant, one course, one live session with rooms of 5: the students, room by room."""
    import fanout

    rooms = -(-max_streams // STUDENTS_PER_ROOM)
    from courses.models import Course

    topology = fanout.seed(argparse.Namespace(sessions=1, rooms=rooms, students=STUDENTS_PER_ROOM))
    # The sentences as the course's scope terms: pocketsphinx decodes with their keyword grammar,
    # as in the in-process run (with none it would use its general English model).
    Course.objects.update(scope_terms=list(SENTENCES))
    out = []
    for room_id, users in topology["sessions"][0]["rooms"].items():
        for user_id in users:
            out.append({"kind": "room", "room_id": room_id, "session_id": topology["sessions"][0]["id"],
                        "user_id": user_id})
    return out


def through_daphne_one(pipeline: str, streams: int, seconds: float, seed: int, students: list[dict],
                       env: dict, logs: Path) -> dict:
    """Daphne with `pipeline` and `streams` speaking clients; what the clients and /proc saw."""
    import multiprocessing

    import fanout

    port = fanout.free_port()
    log_path = logs / f"daphne-{pipeline}-{streams}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, __file__, "--_daphne", pipeline, str(port)], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        fanout.wait_until_listening(port, process, log_path, "daphne")
        pid = process.pid
        base = f"ws://127.0.0.1:{port}/ws/rooms/"
        # Warm-up: as many clients as decoders speak for 4 s (imports, voice scopes, decoder processes).
        warm = fanout.with_tickets([{**s, "url": f"{base}{s['room_id']}/"} for s in students[streams:streams + WARM]])
        ctx = multiprocessing.get_context("spawn")
        _run_clients(ctx, warm, 4.0, seed + 1, start_delay=0.5)
        time.sleep(1.0)
        rss0 = pid_rss_bytes(pid)
        targets = fanout.with_tickets([{**s, "url": f"{base}{s['room_id']}/"} for s in students[:streams]])
        cpu_box: dict = {}

        def at_start() -> None:
            cpu_box["rss_connected"] = pid_rss_bytes(pid)
            cpu_box["cpu0"], cpu_box["t0"] = tree_cpu_seconds(pid), time.perf_counter()
            cpu_box["own0"] = fanout.proc_cpu_seconds(pid)

        def at_end() -> None:
            cpu_box["cpu1"], cpu_box["t1"] = tree_cpu_seconds(pid), time.perf_counter()
            cpu_box["own1"] = fanout.proc_cpu_seconds(pid)
            cpu_box["rss_end"] = pid_rss_bytes(pid)
            cpu_box["load"] = os.getloadavg()[0]

        results = _run_clients(ctx, targets, seconds, seed, start_delay=1.0, at_start=at_start, at_end=at_end,
                               end_after=seconds + 0.2)
        alive = process.poll() is None
    finally:
        fanout.stop_process(process)
    # Steady state: pings sent from STARTUP_SECONDS on. Before that, every socket's first frame
    # waits for its voice scope (a database read in the thread-sensitive executor, one at a time).
    rtt = [v for r in results for t, v in r["rtt"] if t >= STARTUP_SECONDS]
    startup = [v for r in results for t, v in r["rtt"] if t < STARTUP_SECONDS]
    lag = [v for r in results for v in r["lag"]]
    messages: dict[str, int] = {}
    for r in results:
        for k, v in r["messages"].items():
            messages[k] = messages.get(k, 0) + v
    return {
        "pipeline": pipeline, "streams": streams, "connected": sum(r["connected"] for r in results),
        "failed": [f for r in results for f in r["failed"]], "pings": sum(r["pings"] for r in results),
        "unanswered": sum(r["unanswered"] for r in results), "closed": [c for r in results for c in r["closed"]],
        "p50": percentile(rtt, 0.5), "p99": percentile(rtt, 0.99), "max": max(rtt) if rtt else float("nan"),
        "client_lag_p99": percentile(lag, 0.99), "startup_max": max(startup) if startup else float("nan"),
        "daphne_cpu_pct": 100 * (cpu_box["own1"] - cpu_box["own0"]) / (cpu_box["t1"] - cpu_box["t0"]),
        "client_cpu_pct": max(r["cpu_pct"] for r in results), "client_procs": len(results),
        "cpu_pct": 100 * (cpu_box["cpu1"] - cpu_box["cpu0"]) / (cpu_box["t1"] - cpu_box["t0"]),
        "rss_idle_conn_kib": (cpu_box["rss_connected"] - rss0) / streams / 1024,
        "rss_stream_kib": (cpu_box["rss_end"] - rss0) / streams / 1024,
        "rss_mib": cpu_box["rss_end"] / 2**20,
        "finals": sum(r["finals"] for r in results), "spoken": sum(r["spoken"] for r in results),
        "messages": messages, "server_alive": alive, "load": cpu_box["load"],
    }


def _run_clients(ctx, targets: list[dict], seconds: float, seed: int, *, start_delay: float,
                 at_start=None, at_end=None, end_after: float = 0.0) -> list[dict]:
    procs = max(1, -(-len(targets) // CLIENT_STREAMS_PER_PROCESS))
    chunks = [targets[i::procs] for i in range(procs)]
    workers = []
    try:
        for i, chunk in enumerate(chunks):
            parent, child_conn = ctx.Pipe()
            p = ctx.Process(target=client_process_main, args=(child_conn, chunk, seconds, seed + i), daemon=True)
            p.start()
            child_conn.close()
            workers.append((p, parent))
        connected = [parent.recv() for _, parent in workers]
        start_wall = time.time() + start_delay
        for _, parent in workers:
            parent.send(start_wall)
        if at_start:
            time.sleep(max(0.0, start_wall - time.time()))
            at_start()
        if at_end:
            time.sleep(max(0.0, start_wall + end_after - time.time()))
            at_end()
        out = []
        for (_, parent), c in zip(workers, connected, strict=True):
            out.append({**parent.recv(), **c})
        return out
    finally:
        for p, _ in workers:
            p.join(10)
            if p.is_alive():
                p.kill()


def through_daphne(args) -> None:
    """`--through daphne`: every (pipeline, N) on a fresh Daphne over one seeded scratch database."""
    import tempfile

    counts = [10] if args.quick else [int(n) for n in args.streams.split(",")]
    seconds = 5.0 if args.quick else args.seconds
    pipelines = [p for p in args.pipelines.split(",") if p in SERVER_PIPELINES]
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = {
            "DJANGO_SETTINGS_MODULE": "tutor_project.settings", "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(48), "DJANGO_MEDIA_ROOT": str(tmp / "media"),
            "LOG_LEVEL": "WARNING", "TUTOR_TURNS_PER_MINUTE": "0", "ROOM_TUTOR_DEBOUNCE_MS": str(3600 * 1000),
            "CELERY_TASK_ALWAYS_EAGER": "true", "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
            "OPENAI_API_KEY": "", "DEEPGRAM_API_KEY": "",  # pocketsphinx alone in the chain
        }
        for name in ("REDIS_URL", "CELERY_BROKER_URL"):
            os.environ.pop(name, None)
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        students = _seed(max(counts) + WARM)
        connections.close_all()
        server_env = {**os.environ, **env}
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (nproc), Python {platform.python_version()}")
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; through Daphne (SQLite, in-memory layer); "
              f"{seconds:g} s of audio per stream, 20 ms frames, a ping a second per stream")
        print(f"{'pipeline':<13}{'N':>5}{'conn':>6}{'ping p50':>10}{'p99':>9}{'max':>9}{'start max':>10}{'CPU %':>11}"
              f"{'KiB/conn':>10}{'KiB/strm':>10}{'client':>12}{'finals':>10}{'load':>6}  other")
        best: dict[str, int] = {}
        for n in counts:
            for pipeline in pipelines:
                if args.profile:
                    server_env["AUDIO_INGEST_PROFILE"] = str(Path(args.profile).resolve()) + f".{n}.{pipeline}"
                r = through_daphne_one(pipeline, n, seconds, args.seed, students, server_env, tmp)
                finals = f"{r['finals']}/{r['spoken']}" if pipeline == "pocketsphinx" else "-"
                other = {k: v for k, v in r["messages"].items() if k not in ("pong", "transcript.final")}
                notes = []
                if r["failed"]:
                    notes.append(f"failed {len(r['failed'])} e.g. {r['failed'][:1]}")
                if r["closed"]:
                    notes.append(f"closed {r['closed'][:5]} ({len(r['closed'])})")
                if r["unanswered"]:
                    notes.append(f"unanswered pings {r['unanswered']}/{r['pings']}")
                print(f"{pipeline:<13}{n:>5}{r['connected']:>6}{r['p50']:>10.1f}{r['p99']:>9.1f}{r['max']:>9.0f}"
                      f"{r['startup_max']:>10.0f}{r['daphne_cpu_pct']:>6.0f}/{r['cpu_pct']:<4.0f}{r['rss_idle_conn_kib']:>10.0f}{r['rss_stream_kib']:>10.0f}"
                      f"{r['client_procs']:>4}x{r['client_cpu_pct']:>3.0f}%/{r['client_lag_p99']:>3.0f}"
                      f"{finals:>10}{r['load']:>6.1f}  {other} {' '.join(notes)}", flush=True)
                if r["p99"] < TARGET_P99_MS and not r["failed"] and not r["closed"] and not r["unanswered"]:
                    best[pipeline] = max(best.get(pipeline, 0), n)
        for pipeline in pipelines:
            print(f"largest N with ping p99 < {TARGET_P99_MS:.0f} ms, {pipeline}: {best.get(pipeline, 'none')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="25,50,100,150,200", help="comma-separated N")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="N = 10 for 5 s")
    parser.add_argument("--through", choices=("process", "daphne"), default="process",
                        help="process: VoiceInput in this process; daphne: a Daphne server, WebSocket clients")
    parser.add_argument("--profile", help="with --through daphne: cProfile Daphne, stats to FILE (.N.pipeline)")
    parser.add_argument("--_one", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--_daphne", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutor_project.settings")
    if args._daphne:
        daphne_server_main(args._daphne[0], int(args._daphne[1]))
        return
    if args.through == "daphne":
        through_daphne(args)
        return
    if args._one:
        import django

        django.setup()
        pipeline, streams, seconds, seed = args._one
        result = asyncio.run(run_one(pipeline, int(streams), float(seconds), int(seed)))
        print(json.dumps(result))
        return

    counts = [10] if args.quick else [int(n) for n in args.streams.split(",")]
    seconds = 5.0 if args.quick else args.seconds
    pipelines = [p for p in args.pipelines.split(",") if p]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (nproc), Python {platform.python_version()}")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {seconds:g} s of audio per stream, 20 ms frames")
    header = (f"{'pipeline':<13}{'N':>5}{'frames':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
              f"{'p99/bare':>10}{'CPU %':>8}{'KiB/stream':>12}{'finals':>10}{'final p50/p99 ms':>18}")
    print(header)
    best: dict[str, int] = {}
    decoders_mib = 0.0
    for n in counts:
        bare_p99 = None
        for pipeline in pipelines:
            r = child(pipeline, n, seconds, args.seed)
            if pipeline == "bare":
                bare_p99 = r["p99"]
            ratio = f"{r['p99'] / bare_p99:.1f}x" if bare_p99 else "-"
            finals = f"{r['finals']}/{r['spoken']}" if pipeline != "bare" else "-"
            final_lat = (f"{r['final_p50']:.0f}/{r['final_p99']:.0f}"
                         if pipeline == "pocketsphinx" and r["finals"] else "-")
            print(f"{pipeline:<13}{n:>5}{r['frames']:>9}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['max']:>9.1f}"
                  f"{ratio:>10}{r['cpu_pct']:>8.0f}{r['rss_per_stream_kib']:>12.0f}{finals:>10}{final_lat:>18}",
                  flush=True)
            decoders_mib = max(decoders_mib, r["decoders_rss_mib"])
            if r["p99"] < TARGET_P99_MS:
                best[pipeline] = max(best.get(pipeline, 0), n)
    if decoders_mib:
        print(f"pocketsphinx decoder processes: {decoders_mib:.0f} MiB RSS in all (fixed, not per stream)")
    for pipeline in pipelines:
        print(f"largest N with p99 < {TARGET_P99_MS:.0f} ms, {pipeline}: {best.get(pipeline, 'none')}")


if __name__ == "__main__":
    main()
