"""Pollers and consumers: file drops and database tables on each connector's interval, and one
consumer thread per message-queue connector. Connectors enabled or disabled in the admin are
picked up within a second, without a restart."""

import logging
import signal
import threading
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from connectors import polling
from connectors.models import Connector
from connectors.sources import SOURCES
from connectors.watching import FolderWatcher


def watched_folders(connectors) -> dict[int, str]:
    folders = {c.id: SOURCES.get(c.source_kind).watched_folder(c.source_config) for c in connectors}
    return {connector_id: folder for connector_id, folder in folders.items() if folder}


logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the pollers (file drops, database tables) and the message-queue consumers."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Poll every connector once, exit.")

    def handle(self, *args, once: bool, **options):
        if once:
            for connector in polling.due_connectors():
                count = polling.poll(connector)
                self.stdout.write(f"{connector.slug}: {count} records submitted")
            return
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        self.stdout.write("sources: polling and consuming (Ctrl-C to stop)")
        last_poll: dict[int, float] = {}
        consumers: dict[int, tuple] = {}  # connector id: (thread, stop, updated_at)
        watcher = FolderWatcher()
        while not stop.is_set():
            close_old_connections()
            try:
                self.poll_due(watcher, last_poll)
                self.manage_consumers(consumers)
            except Exception:  # the database may be down: the consumers go on, retry soon
                logger.exception("sources: a pass failed; retrying in 2 s")
                stop.wait(1.0)
            stop.wait(1.0)
        watcher.stop()
        for _, consumer_stop, _ in consumers.values():
            consumer_stop.set()
        for thread, _, _ in consumers.values():
            thread.join(10)
        self.stdout.write("sources: stopped")

    def poll_due(self, watcher, last_poll: dict[int, float]) -> None:
        now = time.monotonic()
        connectors = polling.due_connectors()
        watcher.sync(watched_folders(connectors), lambda c: last_poll.pop(c, None))
        for connector in connectors:
            if now - last_poll.get(connector.id, 0) >= connector.poll_interval_seconds:
                last_poll[connector.id] = now
                count = polling.poll(connector)
                if count:
                    self.stdout.write(f"{connector.slug}: {count} records submitted")

    def manage_consumers(self, consumers) -> None:
        """One consumer per enabled queue connector; restarted when the connector is saved (its
        unacknowledged messages go back to the queue and come again to the new consumer)."""
        kinds = SOURCES.kinds_where(lambda kind: kind.is_consumer)
        wanted = {c.id: c for c in Connector.objects.filter(is_enabled=True, source_kind__in=kinds)}
        for connector_id in list(consumers):
            thread, consumer_stop, version = consumers[connector_id]
            current = wanted.get(connector_id)
            if current is None or current.updated_at != version or not thread.is_alive():
                consumer_stop.set()
                thread.join(10)
                del consumers[connector_id]
        for connector_id, connector in wanted.items():
            if connector_id not in consumers:
                consumer_stop = threading.Event()
                thread = threading.Thread(
                    target=polling.consume,
                    args=(connector, consumer_stop),
                    name=f"consumer-{connector.slug}",
                    daemon=True,
                )
                thread.start()
                consumers[connector_id] = (thread, consumer_stop, connector.updated_at)
