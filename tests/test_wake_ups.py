"""Records sent one per request while a wake-up of their connector is pending enqueue no RQ job
of their own; the RQ job that armed it claims them, and nothing is left behind (wake_ups)."""

import pytest

from connectors import batches, jobs, wake_ups
from connectors.models import Job, Provider
from tests.conftest import post_records
from tests.worker import drain, run_worker

pytestmark = pytest.mark.django_db(transaction=True)

Status = Job.Status


@pytest.fixture
def slow_provider(db):
    return Provider.objects.create(
        name="slow-demo", kind="demo", max_concurrency=2, parameters={"latency_ms": 20}
    )


def send(client, connector, key, count: int) -> list[str]:
    ids = []
    for n in range(count):
        response = post_records(client, connector.slug, {"text": f"record {n}"}, key=key)
        assert response.status_code == 202, response.content
        ids.append(response.json()["jobs"][0]["id"])
    return ids


def waiting_rq_ids() -> list[str]:
    return jobs.get_queue().get_job_ids()


def test_records_sent_while_a_wake_up_waits_share_its_rq_job(
    client, make_connector, api_key, slow_provider
):
    connector = make_connector("one-per-call", provider=slow_provider, batch_size=10)
    _, key, _ = api_key(connector)

    ids = send(client, connector, key, 6)

    # One RQ job (the first record's); the other five are queued behind its wake-up.
    first = Job.objects.get(pk=ids[0])
    assert waiting_rq_ids() == [first.rq_job_id]
    assert set(Job.objects.values_list("status", flat=True)) == {Status.QUEUED}
    run_worker()  # no reconciler: the one RQ job must claim them all
    assert set(Job.objects.values_list("status", flat=True)) == {Status.SUCCEEDED}
    assert waiting_rq_ids() == []


def test_a_worker_disarms_the_wake_up_before_it_claims(
    client, make_connector, api_key, slow_provider, redis_client
):
    connector = make_connector("disarmed", provider=slow_provider)
    _, key, _ = api_key(connector)
    send(client, connector, key, 1)
    assert redis_client.exists(wake_ups.key_for(connector.pk))

    run_worker()

    assert not redis_client.exists(wake_ups.key_for(connector.pk))
    [second] = send(client, connector, key, 1)  # so this one enqueues an RQ job of its own
    assert waiting_rq_ids() == [Job.objects.get(pk=second).rq_job_id]
    run_worker()
    assert Job.objects.get(pk=second).status == Status.SUCCEEDED


def test_more_records_than_a_batch_takes_are_sent_again_for_other_workers(
    client, make_connector, api_key, slow_provider, settings
):
    settings.BATCH_REFILL_SECONDS = 0  # the claim alone: no refill while the batch runs
    connector = make_connector("backlog", provider=slow_provider, batch_size=2)
    _, key, _ = api_key(connector)
    ids = send(client, connector, key, 7)
    assert len(waiting_rq_ids()) == 1

    batches.run_batch([ids[0]], worker="test")  # what the worker does with that RQ job

    # Its claim was full: the five left got RQ jobs (in batches of two) another worker can run
    # (the first RQ job, all of whose jobs were taken, is dropped from the queue).
    assert Job.objects.filter(status=Status.SUCCEEDED).count() == 2
    left = Job.objects.filter(status=Status.QUEUED)
    assert left.count() == 5
    assert len(waiting_rq_ids()) == 3
    assert set(left.values_list("rq_job_id", flat=True)) == set(waiting_rq_ids())
    run_worker()
    assert set(Job.objects.values_list("status", flat=True)) == {Status.SUCCEEDED}


def test_a_wake_up_whose_rq_job_was_lost_holds_nothing_back(
    client, make_connector, api_key, slow_provider, redis_client, settings
):
    # An armed wake-up with no RQ job behind it: its worker died after taking the RQ job and
    # before disarming it (or Redis lost the RQ job but not the key).
    connector = make_connector("orphaned", provider=slow_provider)
    _, key, _ = api_key(connector)
    redis_client.set(wake_ups.key_for(connector.pk), "lost", ex=wake_ups.WAKE_UP_SECONDS)

    [stranded] = send(client, connector, key, 1)
    assert waiting_rq_ids() == []
    ttl = redis_client.ttl(wake_ups.key_for(connector.pk))
    assert 0 < ttl <= wake_ups.WAKE_UP_SECONDS  # the next record after it enqueues again

    settings.JOB_STALE_QUEUED_SECONDS = 0  # the reconciler finds the job with no RQ job
    drain()
    assert Job.objects.get(pk=stranded).status == Status.SUCCEEDED


def test_a_redis_failure_while_arming_leaves_the_record_to_the_reconciler(
    client, make_connector, api_key, slow_provider, settings, redis_url
):
    connector = make_connector("no-redis", provider=slow_provider)
    _, key, _ = api_key(connector)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    [job_id] = send(client, connector, key, 1)  # still accepted: the row is committed

    job = Job.objects.get(pk=job_id)
    assert (job.status, job.rq_job_id) == (Status.PENDING, "")
    settings.REDIS_URL = redis_url
    settings.JOB_PENDING_GRACE_SECONDS = 0
    drain()
    assert Job.objects.get(pk=job_id).status == Status.SUCCEEDED
