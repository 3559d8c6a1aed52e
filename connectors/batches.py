"""A worker's part: claim a batch of jobs, run their journeys concurrently, record each outcome.

The AI calls of a batch run in threads, bounded by the provider's concurrency (threads do
network I/O only; the database is touched here, between them). While calls run, the worker
renews its jobs' leases every heartbeat; a worker that dies stops renewing, and the reconciler
gives its jobs to another (lifecycle.recover_lost).
"""

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.conf import settings
from django.db import InterfaceError, OperationalError

from connectors import lifecycle, pipeline
from connectors.database import reconnecting
from connectors.errors import PipelineError
from connectors.models import Job
from connectors.work import Outcome

logger = logging.getLogger(__name__)


def run_batch(job_ids: list[str], *, worker: str = "") -> None:
    """Claim the jobs, run them concurrently, record each outcome as it completes."""
    jobs = reconnecting(claim_with_batch_size, job_ids, worker, what="claiming jobs")
    if not jobs:
        return
    try:  # reads credentials: a connection killed now must not cost the batch its attempt
        runtime = reconnecting(pipeline.build_runtime, jobs[0].connector, what="preparing jobs")
    except PipelineError as error:
        fail_all(jobs, error)
        return
    except Exception as error:  # a bug, or a driver that cannot load: retried, as a transient
        fail_all(jobs, PipelineError(f"cannot prepare connector: {error}", permanent=False))
        return
    try:
        run_concurrently(runtime, jobs)
    finally:
        runtime.close()


def claim_with_batch_size(job_ids: list[str], worker: str) -> list[Job]:
    """The RQ job's own jobs, topped up to the connector's batch size with its other queued
    jobs (single-record requests would otherwise each run alone)."""
    batch_size = (
        Job.objects.filter(id__in=job_ids[:1])
        .values_list("connector__batch_size", flat=True)
        .first()
    )
    return lifecycle.claim(job_ids, worker, fill_to=batch_size or 0)


def fail_all(jobs: list[Job], error: PipelineError) -> None:
    failed = [(job, Outcome(job_id=str(job.id), error=error)) for job in jobs]
    reconnecting(lifecycle.finish_many, failed, what="recording outcomes")


def run_concurrently(runtime: pipeline.Runtime, jobs: list[Job]) -> None:
    by_id = {str(job.id): job for job in jobs}
    pool = ThreadPoolExecutor(max_workers=min(runtime.concurrency, len(jobs)))
    running: set[Future] = {pool.submit(pipeline.execute, runtime, job) for job in jobs}
    try:
        while running:
            done, running = wait(
                running, timeout=settings.JOB_HEARTBEAT_SECONDS, return_when=FIRST_COMPLETED
            )
            record(runtime, by_id, [future.result() for future in done])
            if running:
                reconnecting(lifecycle.extend_leases, list(by_id), what="renewing leases")
    except BaseException:
        # RQ's job timeout or a shutdown: calls not started never will be (their leases run
        # out and they run again, once); calls in flight finish and are recorded, so nothing
        # that was written back is run a second time.
        pool.shutdown(wait=True, cancel_futures=True)
        record(runtime, by_id, [f.result() for f in running if f.done() and not f.cancelled()])
        raise
    finally:
        pool.shutdown(wait=False)


def record(runtime: pipeline.Runtime, by_id: dict[str, Job], outcomes: list[Outcome]) -> None:
    """Write the batch-writing sink's results, then record the outcomes in one transaction; if
    the database refuses one of them, the others are recorded one by one all the same."""
    if not outcomes:
        return
    if runtime.sink.writes_in_batches:
        outcomes = pipeline.write_batch(runtime, outcomes)
    finished = [(by_id.pop(outcome.job_id), outcome) for outcome in outcomes]
    try:
        reconnecting(lifecycle.finish_many, finished, what="recording outcomes")
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
