"""A worker's part: claim a batch of jobs, run their journeys concurrently, record each outcome.

The AI calls of a batch run in threads, bounded by the provider's concurrency (threads do
network I/O only; the database is touched here, between them). While calls run, the worker
renews its jobs' leases every heartbeat; a worker that dies stops renewing, and the reconciler
gives its jobs to another (lifecycle.recover_lost).

A batch is refilled while it runs: whenever provider slots free up, the worker claims the
connector's jobs that were queued meanwhile (up to `batch_size` in hand; in the transaction
that records the outcomes that came in, one wait for the audit chain head), so records that
arrive one per request share the provider's concurrency instead of running one RQ job at a
time. The RQ jobs of the records it took are dropped from the queue (they would find nothing
to claim). A lone record is never held back: the batch ends as soon as nothing is in flight
and nothing is queued.
"""

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Queue, get_current_job
from rq.job import Job as RQJob

from connectors import broker, intake_plans, lifecycle, pipeline, rq_worker, wake_ups
from connectors.database import reconnecting
from connectors.errors import PipelineError
from connectors.models import Job
from connectors.work import Outcome

# While provider slots are idle, how often a running batch looks for newly queued jobs.
REFILL_POLL_SECONDS = 0.02
# How long an RQ job whose jobs are all taken stays in Redis (a worker may be running it).
DISCARDED_RQ_JOB_TTL = 60
# How many of a connector's queued jobs a worker looks at for ones without an RQ job.
LEFT_BEHIND_ROWS = 5000

logger = logging.getLogger(__name__)


def run_batch(job_ids: list[str], *, worker: str = "") -> None:
    """Claim the jobs, run them concurrently, record each outcome as it completes."""
    jobs = reconnecting(claim_with_batch_size, job_ids, worker, what="claiming jobs")
    if not jobs:
        return
    try:  # reads credentials: a connection killed now must not cost the batch its attempt
        runtime = reconnecting(prepare_runtime, jobs[0].connector, what="preparing jobs")
    except PipelineError as error:
        fail_all(jobs, error)
        return
    except Exception as error:  # a bug, or a driver that cannot load: retried, as a transient
        fail_all(jobs, PipelineError(f"cannot prepare connector: {error}", permanent=False))
        return
    connector = jobs[0].connector
    refill = Refill(
        connector_id=connector.id,
        worker=worker,
        batch_size=max(1, connector.batch_size),
        until=time.monotonic() + settings.BATCH_REFILL_SECONDS,
        own_rq_id=current_rq_id(),
    )
    discard_taken(jobs, refill)
    try:
        run_concurrently(runtime, jobs, refill)
    finally:
        runtime.close()
        enqueue_left_behind(connector.id)


def prepare_runtime(connector) -> pipeline.Runtime:
    """The runtime, its mappings and rules as this process keeps them for the connector's
    update stamp (the claim has just read the connector's row)."""
    return pipeline.build_runtime(connector, intake_plans.plan_for(connector))


def enqueue_left_behind(connector_id: int) -> None:
    """Send again the connector's queued jobs that no RQ job will claim: those sent while a
    wake-up was pending have none of their own, and more of them may have come than one batch
    takes. Asked when a claim came back full (another worker may take the rest) and when a
    batch ends. Best effort: the reconciler sends what this cannot."""
    from connectors import jobs  # jobs imports this module

    try:
        queued = Job.objects.filter(connector_id=connector_id, status=Job.Status.QUEUED)
        rows = list(queued.values_list("id", "rq_job_id")[:LEFT_BEHIND_ROWS])
        if rows:
            jobs.enqueue(jobs.without_rq_job(rows, timezone.now()))
    except (OperationalError, InterfaceError) as error:
        logger.warning("cannot enqueue the jobs left queued (%s)", type(error).__name__)


def claim_with_batch_size(job_ids: list[str], worker: str) -> list[Job]:
    """The RQ job's own jobs, topped up to the connector's batch size with its other queued
    jobs (single-record requests would otherwise each run alone; those sent while this RQ job
    waited did not enqueue one of their own: wake_ups). Topped up even when its own jobs were
    taken meanwhile."""
    first = Job.objects.filter(id__in=job_ids[:1])
    connector = first.values("connector_id", "connector__batch_size").first()
    if connector is None:
        return []
    connector_id, batch_size = connector["connector_id"], connector["connector__batch_size"]
    wake_ups.disarm(connector_id)  # before the claim: see wake_ups
    claimed = lifecycle.claim(job_ids, worker, fill_to=batch_size, connector_id=connector_id)
    if len(claimed) >= batch_size:
        enqueue_left_behind(connector_id)
    return claimed


@dataclass(frozen=True)
class Refill:
    """What a running batch may claim more of: its connector's jobs, up to `batch_size` in hand,
    until `until` (monotonic; other connectors' RQ jobs wait meanwhile) or a worker shutdown."""

    connector_id: int
    worker: str
    batch_size: int
    until: float
    own_rq_id: str = ""

    def wanted(self, in_hand: int, concurrency: int) -> int:
        """How many to claim now: none while the batch has enough in hand; in chunks of the
        provider's concurrency (one claim per wave, not per answer), or at once when slots idle."""
        if time.monotonic() > self.until or rq_worker.shutdown_requested.is_set():
            return 0
        room = self.batch_size - in_hand
        if room <= 0:
            return 0
        return room if in_hand < concurrency or room >= min(concurrency, self.batch_size) else 0

    def claim(self, count: int) -> list[Job]:
        return reconnecting(
            lifecycle.claim_more, self.connector_id, self.worker, count, what="claiming jobs"
        )

    def finish_and_claim(self, finished: list[tuple[Job, Outcome]], count: int) -> list[Job]:
        """Record the outcomes and claim `count` more in one transaction."""
        return reconnecting(
            lifecycle.finish_and_claim,
            finished,
            self.connector_id,
            self.worker,
            count,
            what="recording outcomes",
        )


def current_rq_id() -> str:
    rq_job = get_current_job()
    return rq_job.id if rq_job is not None else ""


def discard_taken(jobs: list[Job], refill: Refill) -> None:
    """Drop from the queue the RQ jobs all of whose jobs this batch took: a worker that dequeued
    them would only find their jobs taken. Best effort: one left behind claims nothing."""
    rq_ids = {job.rq_job_id for job in jobs if job.rq_job_id and job.rq_job_id != refill.own_rq_id}
    if not rq_ids:
        return
    pending = Job.objects.claimable(timezone.now()).filter(
        connector_id=refill.connector_id, rq_job_id__in=rq_ids
    )
    taken = rq_ids - set(pending.values_list("rq_job_id", flat=True))
    if not taken:
        return
    try:
        redis = broker.get_redis()
        queue_key = Queue(settings.RQ_QUEUE_NAME, connection=redis).key
        with redis.pipeline(transaction=False) as pipe:
            for rq_id in taken:
                pipe.lrem(queue_key, 1, rq_id)
                pipe.expire(RQJob.key_for(rq_id), DISCARDED_RQ_JOB_TTL)
            pipe.execute()
    except RedisError as error:
        logger.warning("cannot drop %d taken RQ jobs (%s)", len(taken), type(error).__name__)


def fail_all(jobs: list[Job], error: PipelineError) -> None:
    failed = [(job, Outcome(job_id=str(job.id), error=error)) for job in jobs]
    reconnecting(lifecycle.finish_many, failed, what="recording outcomes")


def run_concurrently(
    runtime: pipeline.Runtime, jobs: list[Job], refill: Refill | None = None
) -> None:
    by_id = {str(job.id): job for job in jobs}
    concurrency = runtime.concurrency
    pool = ThreadPoolExecutor(max_workers=concurrency if refill else min(concurrency, len(jobs)))
    running: set[Future] = {pool.submit(pipeline.execute, runtime, job) for job in jobs}
    renewed = time.monotonic()
    try:
        while running:
            idle = refill is not None and len(running) < concurrency
            timeout = REFILL_POLL_SECONDS if idle else settings.JOB_HEARTBEAT_SECONDS
            done, running = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
            outcomes = [future.result() for future in done]
            wanted = refill.wanted(len(running), concurrency) if refill is not None else 0
            claimed = record(runtime, by_id, outcomes, refill, wanted)
            for job in claimed:
                by_id[str(job.id)] = job
                running.add(pool.submit(pipeline.execute, runtime, job))
            if claimed:  # once their calls are under way: this is only cleanup
                discard_taken(claimed, refill)
            if running and time.monotonic() - renewed >= settings.JOB_HEARTBEAT_SECONDS / 2:
                reconnecting(lifecycle.extend_leases, list(by_id), what="renewing leases")
                renewed = time.monotonic()
    except BaseException:
        # RQ's job timeout or a shutdown: calls not started never will be (their leases run
        # out and they run again, once); calls in flight finish and are recorded, so nothing
        # that was written back is run a second time.
        pool.shutdown(wait=True, cancel_futures=True)
        record(runtime, by_id, [f.result() for f in running if f.done() and not f.cancelled()])
        raise
    finally:
        pool.shutdown(wait=False)


def record(
    runtime: pipeline.Runtime,
    by_id: dict[str, Job],
    outcomes: list[Outcome],
    refill: Refill | None = None,
    wanted: int = 0,
) -> list[Job]:
    """Write the batch-writing sink's results, then record the outcomes and claim `wanted` more
    jobs (with a refill) in one transaction; returns the jobs claimed. If the database refuses
    one of the outcomes, the others are recorded one by one all the same."""
    if not outcomes:
        return refill.claim(wanted) if wanted else []
    if runtime.sink.writes_in_batches:
        outcomes = pipeline.write_batch(runtime, outcomes)
    finished = [(by_id.pop(outcome.job_id), outcome) for outcome in outcomes]
    try:
        if refill is not None:
            return refill.finish_and_claim(finished, wanted)
        reconnecting(lifecycle.finish_many, finished, what="recording outcomes")
        return []
    except (OperationalError, InterfaceError):
        raise  # the database is gone: the leases recover these jobs
    except Exception:
        logger.exception("recording %d outcomes failed; recording them one by one", len(finished))
        for job, outcome in finished:
            try:
                lifecycle.finish_many([(job, outcome)])
            except Exception:
                logger.exception("the outcome of job %s cannot be stored", job.id)
                failure = PipelineError(
                    "the outcome could not be stored (see the worker log)", permanent=True
                )
                lifecycle.finish_many([(job, Outcome(job_id=outcome.job_id, error=failure))])
    return refill.claim(wanted) if wanted else []


def report_dead(job_ids: list[str]) -> None:
    """Jobs that died with their worker: tell the legacy side, as execute() does for the rest."""
    jobs = Job.objects.select_related("connector__provider").filter(id__in=job_ids)
    by_connector: dict[int, list[Job]] = {}
    for job in jobs:
        by_connector.setdefault(job.connector_id, []).append(job)
    for connector_jobs in by_connector.values():
        try:
            sink = pipeline.build_sink(connector_jobs[0].connector)
        except Exception:
            logger.exception("cannot build the sink to report lost jobs")
            continue
        try:
            for job in connector_jobs:
                error = PipelineError(job.error_message, code="worker_lost")
                try:
                    item = pipeline.work_item(job)
                except Exception:  # e.g. a token map no key decrypts: report the others
                    logger.exception("cannot report lost job %s", job.id)
                    continue
                pipeline.report_failure(sink, job.connector.slug, item, error)
        finally:
            sink.close()
