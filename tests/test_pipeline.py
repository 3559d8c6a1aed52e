"""End to end: the HTTP API, a real RQ worker, a local OpenAI-compatible server and a callback."""

import json
import logging
import re
import signal
import sqlite3
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connectors import audit, batches, finish_notices, jobs, lifecycle
from connectors.api import views
from connectors.models import AuditEvent, Credential, Job, JobAttempt
from tests.conftest import CANARY_SECRET, CANARY_SSN, post_records
from tests.test_intake_cache import in_another_process
from tests.worker import drain, run_worker, start_worker_process

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "reason": {"type": "string"}},
}
CALLBACK_SECRET = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci1jYWxsYmFja3M="


@pytest.fixture
def callback_credential(db):
    credential = Credential(name="erp-signing", kind=Credential.Kind.HMAC)
    credential.set_value(CALLBACK_SECRET)
    credential.save()
    return credential


@pytest.fixture
def connector(make_connector, openai_provider, callback_server, callback_credential):
    return make_connector(
        "invoices",
        provider=openai_provider,
        inputs=[("note", "text", True), ("customer.ssn", "ssn", False)],
        outputs=[("decision", "ai_decision"), ("reason", "ai_reason")],
        redaction=[("ssn", "tokenize")],
        prompt="Decide on: {{ text }} (customer {{ ssn }}). Answer JSON.",
        output_format="json",
        output_schema=SCHEMA,
        sink_kind="http",
        sink_config={"url": callback_server.url, "signing_credential": "erp-signing"},
        max_attempts=3,
    )


def send(client, key, record):
    response = post_records(client, "invoices", record, key=key)
    assert response.status_code == 202, response.content
    return Job.objects.get(id=response.json()["jobs"][0]["id"])


def echo_token(body):
    """An AI that approves and quotes the customer placeholder it was given."""
    prompt = body["messages"][0]["content"]
    token = re.search(r"<SSN_\d+>", prompt)
    return json.dumps({"decision": "approve", "reason": f"customer {token.group(0)} ok"})


def test_record_travels_from_webhook_to_ai_to_callback(client, key, openai_server, callback_server):
    openai_server.responder = echo_token
    job = send(client, key, {"note": "Invoice 42", "customer": {"ssn": CANARY_SSN}})

    drain()

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 1
    # The AI saw a placeholder, never the SSN.
    [request] = openai_server.requests
    assert request[2]["messages"][0]["content"] == (
        "Decide on: Invoice 42 (customer <SSN_1>). Answer JSON."
    )
    assert request[2]["response_format"]["json_schema"]["schema"] == SCHEMA
    assert request[1]["authorization"] == f"Bearer {CANARY_SECRET}"
    # The legacy system got the real value back, signed, with the job id as webhook-id.
    [(headers, _, payload)] = callback_server.received
    assert payload["job_id"] == str(job.id)
    assert payload["result"] == {"ai_decision": "approve", "ai_reason": f"customer {CANARY_SSN} ok"}
    assert headers["webhook-id"] == str(job.id)
    assert callback_server.verify(CALLBACK_SECRET, 0)
    # What we stored is redacted, and the token map is gone once the job is done.
    assert job.result == {"ai_decision": "approve", "ai_reason": "customer <SSN_1> ok"}
    assert job.input_data == {"text": "Invoice 42", "ssn": "<SSN_1>"}
    assert job.encrypted_tokens == ""
    assert job.token_report["restored"] == ["<SSN_1>"]
    assert job.write_outcome == {"target": callback_server.url, "status": "200", "detail": ""}
    assert job.tokens_in > 0
    assert job.cost > 0
    assert job.ai_ms is not None and job.write_ms is not None
    actions = list(
        AuditEvent.objects.filter(object_id=str(job.id))
        .order_by("sequence")
        .values_list("action", flat=True)
    )
    assert actions == ["job.created", "job.started", "job.succeeded"]


def test_job_api_shows_the_result_and_timings(client, key, openai_server):
    openai_server.reply('{"decision": "reject", "reason": "too expensive"}')
    job = send(client, key, {"note": "Invoice 43"})
    drain()

    body = client.get(f"/api/v1/jobs/{job.id}/", HTTP_AUTHORIZATION=f"Bearer {key}").json()

    assert body["status"] == "succeeded"
    assert body["result"] == {"ai_decision": "reject", "ai_reason": "too expensive"}
    assert body["error"] is None
    assert set(body["timings"]) == {"queue_wait_ms", "ai_ms", "write_ms"}
    assert body["timings"]["queue_wait_ms"] is not None


def test_transient_failures_are_retried_then_succeed(client, key, openai_server):
    openai_server.script(
        [
            ("status", 429, {"Retry-After": "1"}),
            ("status", 500),
            '{"decision": "approve"}',
        ]
    )
    job = send(client, key, {"note": "retry me"})

    drain()

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 3
    outcomes = list(job.attempt_rows.values_list("outcome", "error_code"))
    assert outcomes == [
        ("failed", "provider_error"),
        ("failed", "provider_error"),
        ("succeeded", ""),
    ]
    assert len(openai_server.requests) == 3


def test_retry_after_is_honoured(client, key, openai_server):
    openai_server.script([("status", 429, {"Retry-After": "30"})])
    job = send(client, key, {"note": "slow down"})

    run_worker()

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    wait = (job.next_attempt_at - job.attempt_rows.get().finished_at).total_seconds()
    assert 29 <= wait <= 31


def test_job_is_dead_when_attempts_are_exhausted(client, key, openai_server):
    openai_server.script([("status", 500)] * 3)
    job = send(client, key, {"note": "always failing"})

    drain()

    job.refresh_from_db()
    assert job.status == Job.Status.DEAD
    assert job.attempts == 3
    assert job.error_code == "provider_error"
    assert "500" in job.error_message
    assert AuditEvent.objects.filter(object_id=str(job.id), action="job.dead").count() == 1


def test_permanent_errors_are_not_retried(client, key, openai_server):
    openai_server.script([("status", 400)])
    job = send(client, key, {"note": "bad request"})

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.DEAD, 1)
    assert len(openai_server.requests) == 1


def test_invalid_answer_gets_one_repair_attempt(client, key, openai_server):
    openai_server.script(['{"decision": "maybe"}', '{"decision": "approve"}'])
    job = send(client, key, {"note": "repair"})

    drain()

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 1
    assert "maybe" in job.repair_prompt
    assert job.result == {"ai_decision": "approve", "ai_reason": None}


def test_answer_invalid_after_repair_is_dead_without_retry(
    client, key, openai_server, callback_server
):
    openai_server.script(['{"decision": "maybe"}', "not json at all"])
    job = send(client, key, {"note": "hopeless"})

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts, job.error_code) == (Job.Status.DEAD, 1, "invalid_output")
    assert callback_server.received == []


def test_malformed_provider_answer_is_retried(client, key, openai_server):
    openai_server.script([("malformed",), '{"decision": "approve"}'])
    job = send(client, key, {"note": "glitch"})

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 2)


def test_write_back_retry_does_not_call_the_ai_again(client, key, openai_server, callback_server):
    openai_server.reply('{"decision": "approve"}')
    callback_server.script([503, 503, 200])
    job = send(client, key, {"note": "callback down"})

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 3)
    assert len(openai_server.requests) == 1
    assert len(callback_server.received) == 3
    assert {headers["webhook-id"] for headers, _, _ in callback_server.received} == {str(job.id)}


def test_records_wait_until_redis_is_back(client, key, openai_server, settings, redis_url):
    openai_server.reply('{"decision": "approve"}')
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    job = send(client, key, {"note": "redis is down"})
    job.refresh_from_db()
    assert job.status == Job.Status.PENDING

    settings.REDIS_URL = redis_url
    settings.JOB_PENDING_GRACE_SECONDS = 0
    drain()

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED


def test_jobs_lost_by_a_redis_flush_are_enqueued_again(
    client, key, openai_server, settings, redis_client
):
    openai_server.reply('{"decision": "approve"}')
    job = send(client, key, {"note": "flushed"})
    redis_client.flushdb()
    settings.JOB_STALE_QUEUED_SECONDS = 0

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 1)


def test_job_of_a_dead_worker_is_recovered_when_its_lease_expires(client, key, openai_server):
    openai_server.reply('{"decision": "approve"}')
    job = send(client, key, {"note": "worker killed"})
    [_claimed] = lifecycle.claim([str(job.id)], worker="doomed:1")  # then the worker "dies"
    Job.objects.filter(id=job.id).update(lease_expires_at="2000-01-01T00:00:00Z")

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 2)
    assert list(job.attempt_rows.values_list("outcome", flat=True)) == ["lost", "succeeded"]
    assert len(openai_server.requests) == 1


def test_a_worker_killed_mid_job_loses_nothing_and_writes_back_once(
    client, key, openai_server, callback_server, settings, redis_url
):
    openai_server.script([("slow", 30, '{"decision": "reject"}')])  # the first call hangs
    openai_server.reply('{"decision": "approve"}')
    job = send(client, key, {"note": "the worker dies"})
    worker = start_worker_process(
        settings, redis_url, JOB_LEASE_SECONDS="2", JOB_HEARTBEAT_SECONDS="0.5"
    )
    deadline = time.monotonic() + 30
    while not openai_server.requests:  # the AI call is in flight
        assert time.monotonic() < deadline and worker.poll() is None, "the worker never called"
        time.sleep(0.05)

    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
    assert jobs.reconcile(now=timezone.now())["lost"] == 0  # its lease still runs
    # Past the lease that nobody renews any more, the reconciler takes the job back.
    assert jobs.reconcile(now=timezone.now() + timedelta(seconds=3))["lost"] == 1
    drain()

    job.refresh_from_db()
    assert (job.status, job.result["ai_decision"]) == (Job.Status.SUCCEEDED, "approve")
    assert list(job.attempt_rows.values_list("outcome", flat=True)) == ["lost", "succeeded"]
    assert len(callback_server.received) == 1


@pytest.fixture
def database_outage(monkeypatch):
    """Break the job database for a few seconds once the AI has been called.

    PostgreSQL: every connection to the database is terminated (what a failover or a restart
    does). SQLite has no connection to lose: another process holds its write lock longer than
    the busy timeout instead ("database is locked")."""
    settings_dict = connection.settings_dict
    is_sqlite = settings_dict["ENGINE"].endswith("sqlite3")
    if is_sqlite:
        monkeypatch.setitem(settings_dict["OPTIONS"], "timeout", 0.5)
        connection.close()  # reopen with the short busy timeout

    def break_when_called(openai_server, seconds: float) -> None:
        deadline = time.monotonic() + 20
        while not openai_server.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        if is_sqlite:
            lock = sqlite3.connect(settings_dict["NAME"], isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            time.sleep(seconds)
            lock.execute("ROLLBACK")
            lock.close()
        else:
            with connection.cursor() as cursor:  # this thread's own connection
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            connection.close()

    yield break_when_called
    connection.close()  # the next test opens one with the configured timeout


@pytest.mark.parametrize(
    ("refill_seconds", "where"),
    [(0, "recording outcomes"), (30, "")],  # with the refill on, its claim may meet it first
)
def test_a_database_outage_mid_job_loses_no_answer_and_writes_back_once(
    client,
    key,
    openai_server,
    callback_server,
    database_outage,
    caplog,
    settings,
    refill_seconds,
    where,
):
    settings.BATCH_REFILL_SECONDS = refill_seconds
    openai_server.script([("slow", 1, '{"decision": "approve"}')])
    job = send(client, key, {"note": "the database blinks"})
    outage = threading.Thread(target=database_outage, args=(openai_server, 2.5))
    outage.start()

    with caplog.at_level(logging.WARNING, logger="connectors.database"):
        drain()
    outage.join()

    assert f"database error while {where}" in caplog.text  # the outage happened
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 1)
    assert len(openai_server.requests) == 1
    assert len(callback_server.received) == 1


def test_a_job_run_twice_is_recorded_once(client, key, openai_server):
    openai_server.reply('{"decision": "approve"}')
    job = send(client, key, {"note": "enqueued twice"})
    jobs.enqueue([str(job.id)])  # a duplicate RQ job, as after a reconciler race

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 1)
    assert JobAttempt.objects.filter(job=job).count() == 1
    assert len(openai_server.requests) == 1


def test_wait_answers_with_the_finished_job(client, key, openai_server):
    openai_server.reply('{"decision": "approve", "reason": "fine"}')
    answers = {}

    def call():
        answers["response"] = client.post(
            "/api/v1/connectors/invoices/records/?wait=10",
            data='{"note": "sync"}',
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
        )

    caller = threading.Thread(target=call)
    caller.start()
    while caller.is_alive():
        run_worker()
        caller.join(0.05)

    response = answers["response"]
    assert response.status_code == 200
    [job] = response.json()["jobs"]
    assert job["status"] == "succeeded"
    assert job["result"] == {"ai_decision": "approve", "ai_reason": "fine"}


def test_wait_times_out_with_202(client, key):
    response = client.post(
        "/api/v1/connectors/invoices/records/?wait=1",
        data='{"note": "no worker"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )

    assert response.status_code == 202
    assert response.json()["jobs"][0]["status"] == "queued"


def test_wait_is_woken_by_the_worker_that_finished_the_job(client, key, openai_server, monkeypatch):
    """The worker announces what it finished: the waiting request looks again at once, not
    after its pause (a minute here: only the announcement can answer within the test)."""
    monkeypatch.setattr(views, "WAIT_FIRST_POLL_SECONDS", 60)
    monkeypatch.setattr(views, "WAIT_POLL_SECONDS", 60)
    openai_server.reply('{"decision": "approve"}')
    answers = {}

    def call():
        answers["response"] = post_records(
            client, "invoices", {"note": "woken"}, key=key, query="?wait=30"
        )

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 15
    while caller.is_alive() and time.monotonic() < deadline:
        run_worker()
        caller.join(0.05)

    assert not caller.is_alive(), "the waiting request slept through the finish"
    response = answers["response"]
    assert response.status_code == 200
    assert response.json()["jobs"][0]["status"] == "succeeded"


def test_wait_polls_once_even_when_its_time_is_up(client, key, openai_server):
    openai_server.reply('{"decision": "approve"}')
    job = send(client, key, {"note": "done already"})
    drain()

    [finished] = views.wait_for([job], 0)

    assert finished.id == job.id
    assert finished.status == Job.Status.SUCCEEDED


def test_a_finish_is_announced_on_the_connector_channel_once_committed(
    client, key, connector, openai_server, redis_client
):
    openai_server.reply('{"decision": "approve"}')
    send(client, key, {"note": "announce me"})
    listener = redis_client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(finish_notices.channel_for(connector.id))

    drain()

    heard = [listener.get_message(timeout=1) for _ in range(3)]
    channels = {message["channel"].decode() for message in heard if message}
    assert channels == {finish_notices.channel_for(connector.id)}
    assert all(message["data"] == b"" for message in heard if message)  # it says nothing else
    listener.close()


def test_an_output_mapping_edited_in_another_process_applies_to_the_next_batch(
    client, key, connector, openai_server, settings
):
    """The worker keeps the connector's mappings and rules per update stamp, as intake does."""
    openai_server.reply('{"decision": "approve", "reason": "fine"}')
    first = send(client, key, {"note": "before the edit"})
    drain()
    in_another_process(
        settings,
        "from connectors.models import FieldMapping; "
        "m = FieldMapping.objects.get(direction='output', target_name='ai_decision'); "
        "m.target_name = 'verdict'; m.save()",
    )

    second = send(client, key, {"note": "after the edit"})
    drain()

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.result == {"ai_decision": "approve", "ai_reason": "fine"}
    assert second.result == {"verdict": "approve", "ai_reason": "fine"}


def test_a_worker_reads_the_mappings_and_rules_once_per_update_stamp(connector):
    batches.prepare_runtime(connector).close()

    with CaptureQueriesContext(connection) as again:
        batches.prepare_runtime(connector).close()

    read = " ".join(query["sql"] for query in again.captured_queries)
    assert "connectors_fieldmapping" not in read
    assert "connectors_redactionrule" not in read


# --- Found by review: ways a record was written back twice, or wrongly ------------------------


def test_a_batch_cut_off_by_the_rq_timeout_writes_each_record_back_once(
    client, key, openai_server, callback_server, connector, settings, monkeypatch
):
    monkeypatch.setattr(jobs, "RQ_JOB_TIMEOUT", 2)
    settings.JOB_LEASE_SECONDS, settings.JOB_HEARTBEAT_SECONDS = 1.0, 0.3
    connector.provider.max_concurrency = 1
    connector.provider.save()
    openai_server.script([("slow", 1.2, '{"decision": "approve"}')] * 3)
    response = client.post(
        "/api/v1/connectors/invoices/records/",
        data=json.dumps({"records": [{"note": f"n{i}"} for i in range(3)]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 202

    run_worker()  # RQ stops the batch after 2 s: one call done, one in flight, one not started
    jobs.reconcile(now=timezone.now() + timedelta(seconds=2))  # past the unrenewed leases
    drain()

    assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.SUCCEEDED}
    assert len(callback_server.received) == 3
    assert len(openai_server.requests) == 3


def test_an_answer_the_database_cannot_hold_is_never_written_back(
    client, key, openai_server, callback_server
):
    openai_server.reply('{"decision": "approve", "reason": "odd \\ud800 text"}')
    job = send(client, key, {"note": "surrogate"})

    drain()

    job.refresh_from_db()
    assert (job.status, job.error_code) == (Job.Status.DEAD, "invalid_output")
    assert "unpaired surrogate" in job.error_message
    assert callback_server.received == []


def test_a_token_map_no_key_decrypts_fails_its_job_only(
    client, key, openai_server, callback_server
):
    openai_server.reply('{"decision": "approve"}')
    good = send(client, key, {"note": "fine", "customer": {"ssn": CANARY_SSN}})
    bad = send(client, key, {"note": "broken", "customer": {"ssn": CANARY_SSN}})
    Job.objects.filter(id=bad.id).update(encrypted_tokens="not-a-fernet-token")

    drain()

    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.status, good.attempts) == (Job.Status.SUCCEEDED, 1)
    # A key that cannot decrypt will not start decrypting on a retry: dead at once, named.
    assert (bad.status, bad.attempts, bad.error_code) == (Job.Status.DEAD, 1, "decryption_failed")
    assert len(callback_server.received) == 1


def test_a_cancelled_job_retried_later_still_restores_its_values(
    client, key, openai_server, callback_server, admin_user
):
    openai_server.responder = echo_token
    settings_actor = audit.Actor.user(admin_user, "127.0.0.1")
    job = send(client, key, {"note": "later", "customer": {"ssn": CANARY_SSN}})
    lifecycle.cancel([job], settings_actor)

    lifecycle.retry([Job.objects.get(id=job.id)], settings_actor)
    drain()

    [(_, _, payload)] = callback_server.received
    assert payload["result"]["ai_reason"] == f"customer {CANARY_SSN} ok"


def test_a_purged_job_cannot_be_retried(client, key, admin_user):
    job = send(client, key, {"note": "old"})
    Job.objects.filter(id=job.id).update(
        status=Job.Status.DEAD, prompt="", payload_purged_at="2026-01-01T00:00:00Z"
    )

    retried = lifecycle.retry([job], audit.Actor.user(admin_user, "127.0.0.1"))

    assert retried == []
    assert Job.objects.get(id=job.id).status == Job.Status.DEAD
