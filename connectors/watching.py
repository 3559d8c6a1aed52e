"""Wake the poller when a file lands in a watched folder (watchdog), instead of waiting for the
next interval. The interval scan stays as the fallback: on network shares file-system events do
not arrive, and `"watch": false` in a file_drop config turns watching off."""

import logging
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

logger = logging.getLogger(__name__)


class _Wake(FileSystemEventHandler):
    def __init__(self, on_file) -> None:
        self.on_file = on_file

    def on_created(self, event) -> None:
        if not event.is_directory:
            self.on_file()

    on_moved = on_created
    on_modified = on_created


class FolderWatcher:
    """One observer; folders are added and removed as connectors are enabled or disabled."""

    def __init__(self) -> None:
        self.observer = Observer()
        self.watches: dict[int, tuple[str, object]] = {}
        self.observer.start()

    def sync(self, folders: dict[int, str], on_file) -> None:
        """Watch exactly these folders (connector id -> path); on_file(connector_id) wakes."""
        for connector_id in list(self.watches):
            if self.watches[connector_id][0] != folders.get(connector_id):
                self.observer.unschedule(self.watches.pop(connector_id)[1])
        for connector_id, folder in folders.items():
            if connector_id in self.watches or not Path(folder).is_dir():
                continue
            try:
                watch = self.observer.schedule(
                    _Wake(lambda c=connector_id: on_file(c)), folder, recursive=False
                )
            except OSError as error:  # e.g. too many watches: the interval scan still runs
                logger.warning("cannot watch %s (%s); polling only", folder, error.strerror)
                continue
            self.watches[connector_id] = (folder, watch)

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(5)
