"""Held answers, end to end through a real RQ worker: the policy holds, nothing is written back
while a job waits, and each decision (approve, edit, reject, four eyes, races) acts once."""

import json
import threading

import pytest
from django.db import connection

from connectors import audit, crypto, review
from connectors.models import AuditEvent, Credential, Job, JobAttempt, Review
from tests.conftest import CANARY_SSN, post_records
from tests.worker import run_worker

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = {
    "type": "object",
    "required": ["decision", "confidence"],
    "properties": {
        "decision": {"enum": ["approve", "reject"]},
        "confidence": {"type": "number"},
        "reason": {"type": "string"},
    },
}
CONDITION = 'decision == "reject" or confidence < 0.8 or record["amount"] > 10000'
ALICE = audit.Actor(AuditEvent.ActorType.USER, "alice")
BOB = audit.Actor(AuditEvent.ActorType.USER, "bob")
UNFINISHED = ("pending", "queued", "running", "failed")


def settle(rounds: int = 40) -> None:
    """Reconcile and work until no job is on its way (held jobs stay where they are)."""
    from connectors import jobs

    for _ in range(rounds):
        jobs.reconcile()
        run_worker()
        if not Job.objects.filter(status__in=UNFINISHED).exists():
            return
    raise AssertionError(list(Job.objects.values_list("status", flat=True)))


@pytest.fixture
def connector(make_connector, openai_provider, callback_server):
    callback = Credential(name="erp-token", kind=Credential.Kind.BEARER)
    callback.set_value("erp-bearer-token-1234")
    callback.save()
    return make_connector(
        "invoices",
        provider=openai_provider,
        inputs=[("note", "text", True), ("amount", "amount", True), ("ssn", "ssn", False)],
        outputs=[("decision", "ai_decision"), ("reason", "ai_reason")],
        redaction=[("ssn", "tokenize")],
        prompt="Decide on {{ text }} ({{ amount }}, customer {{ ssn }}). Answer JSON.",
        output_format="json",
        output_schema=SCHEMA,
        sink_kind="http",
        sink_config={"url": callback_server.url, "credential": "erp-token"},
        review_policy="condition",
        review_condition=CONDITION,
    )


def answer(decision="approve", confidence=0.95, reason="ok"):
    return json.dumps({"decision": decision, "confidence": confidence, "reason": reason})


def send(client, key, record) -> Job:
    response = post_records(client, "invoices", record, key=key)
    assert response.status_code == 202, response.content
    return Job.objects.get(id=response.json()["jobs"][0]["id"])


def held(client, key, openai_server, **record) -> Job:
    openai_server.reply(answer(reason="customer <SSN_1> checked", confidence=0.5))
    job = send(client, key, {"note": "Invoice 7", "amount": 50, "ssn": CANARY_SSN, **record})
    settle()
    job.refresh_from_db()
    assert job.status == "awaiting_review"
    return job


def test_an_answer_the_condition_holds_waits_and_nothing_is_written(
    client, key, openai_server, callback_server
):
    job = held(client, key, openai_server)

    assert callback_server.received == []
    assert job.review.rule == CONDITION
    assert job.review.held_output == {
        "decision": "approve",
        "confidence": 0.5,
        "reason": "customer <SSN_1> checked",
    }
    assert job.review.deadline > job.review.held_at
    assert job.finished_at is None and job.lease_expires_at is None
    # The token map waits with the job, encrypted: the SSN is nowhere in the row in clear.
    assert json.loads(crypto.decrypt(job.encrypted_tokens)) == {"<SSN_1>": CANARY_SSN}
    row = json.dumps(Job.objects.filter(id=job.id).values().get(), default=str)
    assert CANARY_SSN not in row
    assert JobAttempt.objects.get(job=job).outcome == "held"
    changes = dict(AuditEvent.objects.get(action="job.held").changes)
    digests = changes.pop("digests")  # the lineage the event pins (signed audit evidence)
    assert changes == {"attempt": 1, "provider": "gpt", "rule": CONDITION}
    assert {"prompt", "redacted_input", "ai_output"} <= set(digests)


def test_answers_the_condition_lets_through_are_written_back_at_once(
    client, key, openai_server, callback_server
):
    openai_server.reply(answer(confidence=0.9))
    job = send(client, key, {"note": "Invoice 8", "amount": 50})
    settle()

    job.refresh_from_db()
    assert job.status == "succeeded"
    assert not Review.objects.exists()
    assert len(callback_server.received) == 1


@pytest.mark.parametrize(
    ("reply", "amount"),
    [(answer("reject"), 50), (answer(confidence=0.2), 50), (answer(), 20000)],
    ids=["decision", "confidence", "record-amount"],
)
def test_each_clause_of_the_condition_holds(client, key, openai_server, reply, amount):
    openai_server.reply(reply)
    send(client, key, {"note": "n", "amount": amount})
    settle()

    assert Job.objects.get().status == "awaiting_review"


def test_a_held_job_is_left_alone_by_the_reconciler_and_retention(
    client, key, openai_server, connector
):
    from datetime import timedelta

    from django.utils import timezone

    from connectors import jobs, operations

    job = held(client, key, openai_server)
    connector.retention_days = 0
    connector.save()
    later = timezone.now() + timedelta(days=30)

    jobs.reconcile(now=later)
    operations.purge_payloads(now=later)
    run_worker()

    job.refresh_from_db()
    assert job.status == "awaiting_review"
    assert job.prompt and job.encrypted_tokens and job.payload_purged_at is None


def test_approval_writes_the_answer_back_once_with_the_values_restored(
    client, key, openai_server, callback_server
):
    job = held(client, key, openai_server)

    decided = review.decide(job.id, ALICE, "approve")
    settle()

    assert decided.outcome == "approved"
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.encrypted_tokens == ""
    assert len(openai_server.requests) == 1  # the AI is not asked again
    [(_, _, payload)] = callback_server.received
    assert payload["result"] == {
        "ai_decision": "approve",
        "ai_reason": f"customer {CANARY_SSN} checked",
    }
    job.review.refresh_from_db()
    assert (job.review.decision, job.review.decided_by) == ("approved", "alice")
    event = AuditEvent.objects.get(action="review.approved")
    assert (event.actor, event.object_id, event.connector) == ("alice", str(job.id), "invoices")
    with pytest.raises(review.ReviewRefused) as refused:
        review.decide(job.id, BOB, "approve")
    assert refused.value.code == "already_decided"


def test_an_edited_answer_is_validated_against_the_schema_then_written(
    client, key, openai_server, callback_server
):
    job = held(client, key, openai_server)

    with pytest.raises(review.ReviewRefused) as refused:
        review.decide(job.id, ALICE, "edit", answer={"decision": "maybe", "confidence": 1})
    assert refused.value.code == "invalid_answer" and refused.value.field == "answer"
    assert "'maybe' is not one of" in refused.value.message
    assert Job.objects.get().status == "awaiting_review"

    edited = {"decision": "reject", "confidence": 1, "reason": "duplicate of <SSN_1>'s invoice"}
    assert review.decide(job.id, ALICE, "edit", answer=edited).outcome == "edited"
    settle()

    [(_, _, payload)] = callback_server.received
    assert payload["result"] == {
        "ai_decision": "reject",
        "ai_reason": f"duplicate of {CANARY_SSN}'s invoice",
    }
    job.refresh_from_db()
    assert job.output == edited
    assert job.review.held_output["decision"] == "approve"  # the AI's answer stays as evidence
    event = AuditEvent.objects.get(action="review.edited")
    assert event.changes["answer"][0]["decision"] == "approve"
    assert event.changes["answer"][1] == edited
    assert event.changes["result"][1]["ai_decision"] == "reject"


def test_a_rejected_job_ends_rejected_and_its_sink_hears_of_it(
    client, key, openai_server, callback_server
):
    job = held(client, key, openai_server)

    with pytest.raises(review.ReviewRefused) as refused:
        review.decide(job.id, ALICE, "reject", reason="  ")
    assert refused.value.field == "reason"

    review.decide(job.id, ALICE, "reject", reason="the amount is wrong")
    settle()

    job.refresh_from_db()
    assert job.status == "rejected" and job.finished_at is not None
    assert job.encrypted_tokens == ""
    assert callback_server.received == []  # the http sink takes no failure report
    assert review.report_rejections() == 1
    assert review.report_rejections() == 0  # once
    assert AuditEvent.objects.get(action="review.rejected").changes == {
        "reason": "the amount is wrong"
    }


def test_four_eyes_needs_a_second_different_person(
    client, key, openai_server, callback_server, connector
):
    connector.review_four_eyes = True
    connector.save()
    job = held(client, key, openai_server)

    assert review.decide(job.id, ALICE, "approve").outcome == "first_approval"
    with pytest.raises(review.ReviewRefused) as refused:
        review.decide(job.id, ALICE, "approve")
    assert refused.value.code == "second_approver_required"
    settle()
    assert Job.objects.get().status == "awaiting_review"
    assert callback_server.received == []

    assert review.decide(job.id, BOB, "approve").outcome == "approved"
    settle()
    assert Job.objects.get().status == "succeeded"
    assert len(callback_server.received) == 1
    assert AuditEvent.objects.get(action="review.approved").changes == {
        "first_approved_by": "alice"
    }


def test_two_reviewers_racing_act_once(client, key, openai_server, callback_server):
    job = held(client, key, openai_server)
    start = threading.Barrier(2)
    outcomes = []

    def act(actor, decision, **extra):
        start.wait()
        try:
            outcomes.append(review.decide(job.id, actor, decision, **extra).outcome)
        except review.ReviewRefused as refused:
            outcomes.append(refused.code)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=act, args=(ALICE, "approve")),
        threading.Thread(target=act, args=(BOB, "reject"), kwargs={"reason": "no"}),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    settle()

    assert sorted(outcomes) in (["already_decided", "approved"], ["already_decided", "rejected"])
    decisions = AuditEvent.objects.filter(action__startswith="review.")
    assert decisions.count() == 1
    expected = 1 if "approved" in outcomes else 0
    assert len(callback_server.received) == expected


def test_a_held_job_survives_a_worker_sigkill_and_a_redis_flush(
    client, key, openai_server, callback_server, settings, redis_url, redis_client
):
    import signal
    import time
    from datetime import timedelta

    from django.utils import timezone

    from connectors import jobs
    from tests.worker import start_worker_process

    openai_server.reply(answer(confidence=0.3))
    job = send(client, key, {"note": "Invoice 9", "amount": 70, "ssn": CANARY_SSN})
    worker = start_worker_process(settings, redis_url)
    try:
        deadline = time.monotonic() + 30
        while Job.objects.get(id=job.id).status != "awaiting_review":
            assert time.monotonic() < deadline and worker.poll() is None, "never held"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    redis_client.flushdb()
    later = timezone.now() + timedelta(hours=1)  # past every lease and grace

    assert jobs.reconcile(now=later) == {"lost": 0, "stale_queued": 0, "enqueued": 0}
    run_worker()

    job.refresh_from_db()
    assert job.status == "awaiting_review"
    assert Review.objects.get(job=job).is_waiting
    assert json.loads(crypto.decrypt(job.encrypted_tokens)) == {"<SSN_1>": CANARY_SSN}
    assert callback_server.received == []
    review.decide(job.id, ALICE, "approve")
    settle()
    assert Job.objects.get(id=job.id).status == "succeeded"
    assert len(callback_server.received) == 1
    assert len(openai_server.requests) == 1


@pytest.mark.parametrize("decision", ["edit", "reject"])
def test_a_reviewed_job_s_evidence_bundle_verifies(
    client, key, openai_server, callback_server, tmp_path, decision
):
    """The review's decision is part of the job's evidence: an edited answer or a rejection
    must not make the auditor's verifier report a mismatch."""
    from tests.test_evidence import export, verify

    job = held(client, key, openai_server)
    if decision == "edit":
        edited = {"decision": "reject", "confidence": 1, "reason": "duplicate"}
        review.decide(job.id, ALICE, "edit", answer=edited)
    else:
        review.decide(job.id, ALICE, "reject", reason="the amount is wrong")
    settle()

    bundle = export(tmp_path, job=str(job.id))
    result = verify(tmp_path, bundle)
    assert result.returncode == 0, result.stderr
    actions = {event["action"] for event in bundle["events"] if event.get("action")}
    assert {"job.held", f"review.{decision}ed"} <= actions
