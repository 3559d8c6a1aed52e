"""The scheduler: the reconciler every few seconds, failing-connector alerts every minute, the
payload retention purge every RETENTION_INTERVAL_SECONDS, the review deadlines every 10 s,
the review notices every REVIEW_NOTIFY_INTERVAL_SECONDS and a signed audit checkpoint every
AUDIT_CHECKPOINT_INTERVAL_SECONDS. Pollers run in run_sources."""

import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from connectors import (
    budget_alerts,
    chain_status,
    checkpoints,
    jobs,
    operations,
    review,
    review_schedule,
)

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Re-enqueue jobs Redis lost and recover jobs of dead workers, every few seconds."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")

    def handle(self, *args, once, **options):
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        interval = settings.RECONCILE_INTERVAL_SECONDS
        self.stdout.write(f"scheduler: reconciling every {interval:g}s")
        periodic = [
            (operations.send_alerts, 60.0),
            (budget_alerts.send_alerts, 60.0),
            (operations.purge_payloads, float(settings.RETENTION_INTERVAL_SECONDS)),
            (operations.purge_webhook_receipts, 600.0),
            (chain_status.verify_and_store, float(settings.AUDIT_VERIFY_INTERVAL_SECONDS)),
            (review_schedule.apply_deadlines, 10.0),
            (review.report_rejections, float(interval)),
            (review_schedule.notify_reviewers, float(settings.REVIEW_NOTIFY_INTERVAL_SECONDS)),
            (checkpoints.run, float(settings.AUDIT_CHECKPOINT_INTERVAL_SECONDS)),
        ]
        last_run = {task: 0.0 for task, _ in periodic}
        while not stop.is_set():
            self.run_pass()
            for task, every in periodic:
                if once or time.monotonic() - last_run[task] >= every:
                    last_run[task] = time.monotonic()
                    self.run_task(task)
            if once:
                break
            stop.wait(interval)

    def run_task(self, task) -> None:
        try:
            result = task()
        except Exception:  # housekeeping must not stop the reconciler
            logger.exception("%s failed; retrying later", task.__name__)
            return
        if result:
            logger.info("%s: %s", task.__name__, result)

    def run_pass(self) -> None:
        close_old_connections()
        try:
            counts = jobs.reconcile()
        except Exception:  # the database or Redis may be down; try again next pass
            logger.exception("reconcile pass failed; retrying next pass")
            return
        if any(counts.values()):
            logger.info("reconciled %s", counts)
