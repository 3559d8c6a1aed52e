"""Pollers and consumers: file drops and database tables on each connector's interval, and one
consumer thread per message-queue connector. Connectors enabled or disabled in the admin are
picked up within a second, without a restart."""

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
    return {
        c.id: c.source_config["path"]
        for c in connectors
        if c.source_kind == "file_drop"
        and c.source_config.get("watch", True)
        and c.source_config.get("path")
    }


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
        consumers: dict[int, tuple[threading.Thread, threading.Event]] = {}
        watcher = FolderWatcher()
        while not stop.is_set():
            close_old_connections()
            now = time.monotonic()
            connectors = polling.due_connectors()
            watcher.sync(watched_folders(connectors), lambda c: last_poll.pop(c, None))
            for connector in connectors:
                if now - last_poll.get(connector.id, 0) >= connector.poll_interval_seconds:
                    last_poll[connector.id] = now
                    count = polling.poll(connector)
                    if count:
                        self.stdout.write(f"{connector.slug}: {count} records submitted")
            self.manage_consumers(consumers)
            stop.wait(1.0)
        watcher.stop()
        for _, consumer_stop in consumers.values():
            consumer_stop.set()
        for thread, _ in consumers.values():
            thread.join(10)
        self.stdout.write("sources: stopped")

    def manage_consumers(self, consumers) -> None:
        kinds = [kind for kind in SOURCES.kinds() if SOURCES.get(kind).is_consumer]
        wanted = {c.id: c for c in Connector.objects.filter(is_enabled=True, source_kind__in=kinds)}
        for connector_id in list(consumers):
            thread, consumer_stop = consumers[connector_id]
            if connector_id not in wanted or not thread.is_alive():
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
                consumers[connector_id] = (thread, consumer_stop)
