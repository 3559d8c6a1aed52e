"""Run an RQ worker on Interlock's queue (several may run, on several hosts)."""

import os
import socket

from django.core.management.base import BaseCommand
from rq import SimpleWorker, Worker

from connectors import broker, jobs

WORKER_CLASSES = {"simple": SimpleWorker, "fork": Worker}


class Command(BaseCommand):
    help = "Run an RQ worker for Interlock jobs."

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
        name = f"interlock-{socket.gethostname()}-{os.getpid()}"
        worker = WORKER_CLASSES[worker_class]([jobs.get_queue()], connection=connection, name=name)
        self.stdout.write(f"worker {name} ({worker_class}) on queue {jobs.get_queue().name}")
        worker.work(burst=burst, with_scheduler=False, logging_level="WARNING")
