"""Run queued jobs the way production does: the reconciler plus a real RQ worker, in this
process (burst) or as a `manage.py run_worker` process of its own."""

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from connectors import broker, jobs
from connectors.models import Job
from connectors.rq_worker import InterlockSimpleWorker

ROOT = Path(__file__).resolve().parents[1]


def run_worker() -> None:
    InterlockSimpleWorker([jobs.get_queue()], connection=broker.get_redis()).work(
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
    unfinished = list(
        Job.objects.exclude(status__in=Job.FINISHED).values_list(
            "status", "error_code", "error_message", "next_attempt_at"
        )
    )
    raise AssertionError(f"jobs still unfinished after {timeout}s: {unfinished}")


def database_url(settings) -> str:
    """This test's database, as another process reaches it."""
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{database['NAME']}"
    url = urlsplit(os.environ["DATABASE_URL"])
    return url._replace(path=f"/{database['NAME']}").geturl()


def start_worker_process(settings, redis_url, *, stderr=None, **env) -> subprocess.Popen:
    """`manage.py run_worker` in its own process, on this test's database and Redis."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_worker"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url(settings),
            "REDIS_URL": redis_url,
            "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
