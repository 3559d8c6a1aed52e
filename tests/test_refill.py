"""A running batch refills the provider's free slots with its connector's newly queued jobs:
records sent one per request share the provider's concurrency; a lone record is not held."""

import time

import pytest

from connectors import audit, batches, jobs, rq_worker
from connectors.models import Job, Provider

pytestmark = pytest.mark.django_db

Status = Job.Status


@pytest.fixture
def slow_provider(db):
    return Provider.objects.create(
        name="slow-demo", kind="demo", max_concurrency=2, parameters={"latency_ms": 20}
    )


def queued_one_by_one(connector, count: int) -> list[Job]:
    """Jobs as single-record webhooks leave them: each enqueued in an RQ job of its own."""
    created = []
    for n in range(count):
        job = Job.objects.create(
            connector=connector,
            idempotency_key=f"{connector.slug}-{n}",
            input_data={"text": str(n)},
            prompt=f"Classify: {n}",
        )
        jobs.enqueue([str(job.id)])
        created.append(job)
    return created


def rq_ids_waiting() -> list[str]:
    return jobs.get_queue().get_job_ids()


def test_a_running_batch_claims_the_jobs_queued_behind_it_and_drops_their_rq_jobs(
    make_connector, slow_provider
):
    connector = make_connector("one-by-one", provider=slow_provider, batch_size=3)
    elsewhere = make_connector("elsewhere", provider=slow_provider)
    own, *_ = queued_one_by_one(connector, 7)
    [untouched] = queued_one_by_one(elsewhere, 1)
    untouched.refresh_from_db()

    batches.run_batch([str(own.id)], worker="test")

    # The claim alone takes 3 (batch_size); the refill took the other 4 as slots freed up.
    statuses = Job.objects.filter(connector=connector).values_list("status", flat=True)
    assert set(statuses) == {Status.SUCCEEDED}
    assert Job.objects.get(pk=untouched.pk).status == Status.QUEUED
    assert rq_ids_waiting() == [untouched.rq_job_id]  # the taken ones' RQ jobs are gone
    assert audit.verify().is_valid


def test_an_rq_job_keeps_its_place_while_one_of_its_jobs_is_untaken(
    make_connector, slow_provider, settings
):
    settings.BATCH_REFILL_SECONDS = 0  # the claim's top-up only
    connector = make_connector("shared", provider=slow_provider, batch_size=2)
    [own] = queued_one_by_one(connector, 1)
    pair = [
        Job.objects.create(
            connector=connector, idempotency_key=f"pair-{n}", input_data={"text": "x"}, prompt="p"
        )
        for n in range(2)
    ]
    jobs.enqueue([str(job.id) for job in pair])  # one RQ job for two jobs
    [pair_rq_id] = {job.rq_job_id for job in Job.objects.filter(pk__in=[j.pk for j in pair])}

    batches.run_batch([str(own.id)], worker="test")

    # The top-up took the older of the pair; the RQ job must stay for the other one.
    assert Job.objects.filter(status=Status.SUCCEEDED).count() == 2
    assert rq_ids_waiting() == [pair_rq_id]


def test_a_lone_record_is_not_held_waiting_for_a_batch_to_fill(
    make_connector, slow_provider, settings
):
    settings.BATCH_REFILL_SECONDS = 30
    connector = make_connector("lone", provider=slow_provider, batch_size=100)
    [lone] = queued_one_by_one(connector, 1)

    started = time.monotonic()
    batches.run_batch([str(lone.id)], worker="test")

    assert Job.objects.get(pk=lone.pk).status == Status.SUCCEEDED
    assert time.monotonic() - started < 5  # not the 30 s refill window


def test_a_worker_asked_to_stop_claims_no_more(make_connector, slow_provider):
    connector = make_connector("stopping", provider=slow_provider, batch_size=2)
    own, *_ = queued_one_by_one(connector, 5)
    rq_worker.shutdown_requested.set()
    try:
        batches.run_batch([str(own.id)], worker="test")
    finally:
        rq_worker.shutdown_requested.clear()

    assert Job.objects.filter(status=Status.SUCCEEDED).count() == 2  # the claim's batch only
    assert Job.objects.filter(status=Status.QUEUED).count() == 3
    assert len(rq_ids_waiting()) == 3  # their RQ jobs still run them


def test_the_refill_leaves_failed_jobs_to_their_retry_and_the_reconciler(
    make_connector, slow_provider
):
    connector = make_connector("failing", provider=slow_provider, batch_size=1)
    [own] = queued_one_by_one(connector, 1)
    retry_now = Job.objects.create(
        connector=connector,
        idempotency_key="due",
        status=Status.FAILED,
        next_attempt_at=None,  # due now: the reconciler's to enqueue, not the refill's
        input_data={"text": "x"},
        prompt="p",
    )

    batches.run_batch([str(own.id)], worker="test")

    assert Job.objects.get(pk=own.pk).status == Status.SUCCEEDED
    assert Job.objects.get(pk=retry_now.pk).status == Status.FAILED
