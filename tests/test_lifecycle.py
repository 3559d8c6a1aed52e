"""Every job state transition, from every state: what moves, what stays, what each attempt keeps."""

from datetime import timedelta

import pytest
from django.utils import timezone

from connectors import audit, lifecycle
from connectors.errors import DecryptionError, ProviderError
from connectors.models import AuditEvent, Job, JobAttempt
from connectors.work import Answer, Outcome, WriteBack, WriteOutcome

pytestmark = pytest.mark.django_db

Status = Job.Status
EVERY_STATUS = list(Status)
ADMIN = audit.Actor.system("test")


@pytest.fixture
def connector(make_connector, demo_provider):
    demo_provider.price_per_1m_input = "1000"
    demo_provider.price_per_1m_output = "2000"
    demo_provider.save()
    return make_connector("invoices", max_attempts=2)


@pytest.fixture
def make_job(connector):
    def make(status=Status.PENDING, **fields):
        return Job.objects.create(
            connector=connector,
            idempotency_key=f"{status}-{Job.objects.count()}",
            status=status,
            input_data={"text": "x"},
            prompt="Classify: x",
            **fields,
        )

    return make


def status_of(job) -> str:
    job.refresh_from_db()
    return job.status


CLAIMABLE = {Status.PENDING, Status.QUEUED, Status.FAILED}


@pytest.mark.parametrize("status", EVERY_STATUS)
def test_claim_takes_only_pending_queued_and_due_failed_jobs(make_job, status):
    job = make_job(status)

    claimed = lifecycle.claim([str(job.id)], worker="w1")

    assert bool(claimed) == (status in CLAIMABLE)
    assert status_of(job) == (Status.RUNNING if status in CLAIMABLE else status)
    assert JobAttempt.objects.filter(job=job).count() == (1 if status in CLAIMABLE else 0)


def test_a_failed_job_is_not_claimed_before_its_retry_time(make_job):
    job = make_job(Status.FAILED, next_attempt_at=timezone.now() + timedelta(minutes=5))

    assert lifecycle.claim([str(job.id)]) == []
    assert status_of(job) == Status.FAILED


def test_the_queue_wait_is_kept_on_the_attempt_at_claim_and_on_the_job_at_finish(make_job):
    job = make_job(Status.QUEUED, enqueued_at=timezone.now() - timedelta(seconds=3))

    [claimed] = lifecycle.claim([str(job.id)], worker="w1")

    attempt = claimed.attempt_rows.get()
    assert 3000 <= attempt.queue_wait_ms < 60_000
    assert (claimed.attempts, attempt.number, attempt.worker) == (1, 1, "w1")
    assert claimed.lease_expires_at > timezone.now()
    lifecycle.finish_many([(claimed, answered(claimed))])
    job.refresh_from_db()
    assert job.queue_wait_ms == attempt.queue_wait_ms


def test_a_job_claimed_twice_runs_once(make_job):
    job = make_job()

    first = lifecycle.claim([str(job.id)])
    second = lifecycle.claim([str(job.id)])

    assert (len(first), second) == (1, [])
    assert Job.objects.get(id=job.id).attempts == 1


def answered(job, *, error=None, tokens=(100, 50)):
    return Outcome(
        job_id=str(job.id),
        answer=Answer(
            text='{"ok": true}',
            model="m-1",
            output={"ok": True},
            tokens_in=tokens[0],
            tokens_out=tokens[1],
            ms=12,
        ),
        result={"ok": True},
        write_back=WriteBack(written=WriteOutcome("erp", "200"), ms=3),
        error=error,
    )


@pytest.mark.parametrize(
    ("error", "attempt", "status", "action"),
    [
        (None, 1, Status.SUCCEEDED, "job.succeeded"),
        (ProviderError("provider answered HTTP 503"), 1, Status.FAILED, "job.failed"),
        (ProviderError("provider answered HTTP 503"), 2, Status.DEAD, "job.dead"),
        (ProviderError("provider answered HTTP 401", permanent=True), 1, Status.DEAD, "job.dead"),
        (DecryptionError("no key decrypts"), 1, Status.DEAD, "job.dead"),
    ],
)
def test_finish_moves_a_running_job_by_its_outcome(make_job, error, attempt, status, action):
    job = make_job(Status.FAILED if attempt > 1 else Status.PENDING, attempts=attempt - 1)
    [claimed] = lifecycle.claim([str(job.id)])

    assert lifecycle.finish_many([(claimed, answered(claimed, error=error))]) == 1

    job.refresh_from_db()
    assert (job.status, job.attempts) == (status, attempt)
    assert (job.finished_at is not None) == (status != Status.FAILED)
    assert (job.next_attempt_at is not None) == (status == Status.FAILED)
    assert job.error_code == (error.code if error else "")
    assert AuditEvent.objects.filter(action=action, object_id=str(job.id)).count() == 1


def test_each_attempt_keeps_what_it_spent_and_the_job_keeps_the_totals(make_job):
    job = make_job()
    [first] = lifecycle.claim([str(job.id)])
    lifecycle.finish_many([(first, answered(first, error=ProviderError("503"), tokens=(100, 0)))])
    [second] = lifecycle.claim([str(job.id)])
    lifecycle.finish_many([(second, answered(second, tokens=(300, 500)))])

    job.refresh_from_db()
    attempts = list(job.attempt_rows.order_by("number"))
    assert [(a.tokens_in, a.tokens_out) for a in attempts] == [(100, 0), (300, 500)]
    assert [float(a.cost) for a in attempts] == [0.1, 1.3]
    assert [a.outcome for a in attempts] == ["failed", "succeeded"]
    assert attempts[1].write_outcome == {"target": "erp", "status": "200", "detail": ""}
    assert (job.tokens_in, job.tokens_out, float(job.cost)) == (400, 500, 1.4)


def test_a_finish_for_a_job_another_worker_took_over_is_dropped(make_job):
    job = make_job()
    [stale] = lifecycle.claim([str(job.id)])
    Job.objects.filter(id=job.id).update(status=Status.FAILED, next_attempt_at=None)
    lifecycle.claim([str(job.id)])  # the reconciler gave it to another worker: attempt 2

    assert lifecycle.finish_many([(stale, answered(stale))]) == 0
    assert status_of(job) == Status.RUNNING


@pytest.mark.parametrize(
    ("attempts", "status", "action"),
    [(1, Status.FAILED, "job.lost"), (2, Status.DEAD, "job.dead")],
)
def test_recover_takes_back_running_jobs_past_their_lease(make_job, attempts, status, action):
    job = make_job(Status.FAILED if attempts > 1 else Status.PENDING, attempts=attempts - 1)
    lifecycle.claim([str(job.id)])
    now = timezone.now()

    assert lifecycle.recover_lost(now) == (0, [])  # the lease still runs
    later = now + timedelta(seconds=lifecycle.settings.JOB_LEASE_SECONDS + 1)
    recovered, dead = lifecycle.recover_lost(later)

    assert (recovered, dead) == (1, [str(job.id)] if status == Status.DEAD else [])
    job.refresh_from_db()
    assert (job.status, job.error_code) == (status, "worker_lost")
    assert job.attempt_rows.get().outcome == JobAttempt.Outcome.LOST
    assert AuditEvent.objects.filter(action=action, object_id=str(job.id)).exists()


@pytest.mark.parametrize("status", [status for status in Status if status != Status.RUNNING])
def test_recover_leaves_jobs_that_are_not_running_alone(make_job, status):
    job = make_job(status, lease_expires_at=timezone.now() - timedelta(hours=1))

    assert lifecycle.recover_lost() == (0, [])
    assert status_of(job) == status


RETRYABLE = {Status.FAILED, Status.DEAD, Status.CANCELLED}


@pytest.mark.parametrize("status", EVERY_STATUS)
def test_retry_restarts_only_failed_dead_and_cancelled_jobs(make_job, status):
    job = make_job(status, attempts=2, error_code="provider_error")

    retried = lifecycle.retry([job], ADMIN)

    assert retried == ([str(job.id)] if status in RETRYABLE else [])
    job.refresh_from_db()
    assert job.status == (Status.PENDING if status in RETRYABLE else status)
    if status in RETRYABLE:  # a new round: two more attempts, the old error gone
        assert (job.attempts_before_retry, job.error_code, job.is_last_attempt) == (2, "", False)


CANCELLABLE = {Status.PENDING, Status.QUEUED, Status.FAILED}


@pytest.mark.parametrize("status", EVERY_STATUS)
def test_cancel_stops_only_jobs_that_are_not_running_or_finished(make_job, status):
    job = make_job(status)

    assert lifecycle.cancel([job], ADMIN) == (1 if status in CANCELLABLE else 0)
    assert status_of(job) == (Status.CANCELLED if status in CANCELLABLE else status)


def test_a_claim_tops_its_batch_up_with_the_oldest_queued_jobs_of_its_connector(
    make_job, make_connector
):
    own, *others = [make_job(Status.QUEUED) for _ in range(5)]
    Job.objects.create(
        connector=make_connector("elsewhere"),
        idempotency_key="other-connector",
        status=Status.QUEUED,
        input_data={},
        prompt="p",
    )
    running = make_job(Status.RUNNING)

    claimed = lifecycle.claim([str(own.id)], fill_to=3)

    assert {job.id for job in claimed} == {own.id, others[0].id, others[1].id}
    assert all(job.connector_id == own.connector_id for job in claimed)
    assert status_of(running) == Status.RUNNING  # untouched: not claimable
    assert lifecycle.claim([str(others[2].id)]) != []  # without fill_to: only its own


def test_a_claim_whose_own_jobs_are_taken_takes_nothing_else(make_job):
    own, other = make_job(Status.QUEUED), make_job(Status.QUEUED)
    lifecycle.claim([str(own.id)])

    assert lifecycle.claim([str(own.id)], fill_to=10) == []
    assert status_of(other) == Status.QUEUED
