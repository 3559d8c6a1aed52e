"""Run queued jobs the way production does: the reconciler plus a real RQ worker (burst)."""

import time

from rq import SimpleWorker

from connectors import broker, jobs
from connectors.models import Job


def run_worker() -> None:
    SimpleWorker([jobs.get_queue()], connection=broker.get_redis()).work(
        burst=True, logging_level="WARNING"
    )


def drain(timeout: float = 20.0) -> None:
    """Reconcile and work until every job has finished (succeeded, dead or cancelled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs.reconcile()
        run_worker()
        if not Job.objects.exclude(status__in=Job.FINISHED).exists():
            return
        time.sleep(0.05)
    unfinished = list(Job.objects.exclude(status__in=Job.FINISHED).values_list("status", flat=True))
    raise AssertionError(f"jobs still unfinished after {timeout}s: {unfinished}")
