"""Run an RQ worker on Interlock's queue (several may run, on several hosts)."""

import os
import socket

from django.core.management.base import BaseCommand

from connectors import broker, jobs
from connectors.rq_worker import WORKER_CLASSES, work_until_stopped


class Command(BaseCommand):
    help = "Run an RQ worker for Interlock jobs; it rides out Redis outages."

    def add_arguments(self, parser):
        parser.add_argument(
            "--worker-class",
            choices=sorted(WORKER_CLASSES),
            default="simple",
            help="simple: runs jobs in this process (fast, the default); fork: a child per job.",
        )
        parser.add_argument("--burst", action="store_true", help="Stop when the queue is empty.")

    def handle(self, *args, worker_class, burst, **options):
        connection = broker.get_redis()
        base_name = f"interlock-{socket.gethostname()}-{os.getpid()}"
        worker_type = WORKER_CLASSES[worker_class]

        def make_worker(started: int):
            name = base_name if started == 0 else f"{base_name}-{started}"
            return worker_type([jobs.get_queue()], connection=connection, name=name)

        self.stdout.write(f"worker {base_name} ({worker_class}) on queue {jobs.get_queue().name}")
        work_until_stopped(make_worker, burst=burst, ping=connection.ping)
