"""Riding out a database that goes away for a moment: a failover, a restart, a connection killed
by a proxy or an administrator, or (SQLite) a write lock held longer than the busy timeout.

A worker that holds an AI answer must not lose it to such a blip: losing it would mean asking
the AI again and writing back twice once the job's lease ran out.
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

try:
    import fcntl
except ImportError:  # not on Windows: the threads of a process still take turns
    fcntl = None

logger = logging.getLogger(__name__)
T = TypeVar("T")


def reconnecting(step: Callable[..., T], *args, what: str) -> T:
    """Run a database step; if the connection failed, reconnect and run it again, with backoff,
    for up to DATABASE_RETRY_SECONDS. The step must be safe to repeat (a transaction that either
    committed or did not, with conditional updates)."""
    deadline = time.monotonic() + settings.DATABASE_RETRY_SECONDS
    pause = 0.25
    while True:
        try:
            return step(*args)
        except (OperationalError, InterfaceError) as error:
            if connection.in_atomic_block or time.monotonic() + pause > deadline:
                raise  # inside an outer transaction only its owner can retry
            logger.warning("database error while %s (%s); retrying in %.2fs", what, error, pause)
            connection.close()  # the next query opens a fresh connection
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


_sqlite_writer = threading.Lock()
_lock_files: dict[tuple[int, str], int] = {}  # (process id, database file): open lock file


class OneWriter:
    """On SQLite, intake's write transactions take turns here, woken as soon as the one before
    commits, instead of in SQLite's busy handler, which polls with sleeps of up to 100 ms (the
    long tail of concurrent intake): the threads of a process on a lock, the processes on an
    exclusive `flock` of a file beside the database (the kernel wakes the next waiter at once).
    `release()` lets go at commit, before the on-commit enqueue. Elsewhere: nothing."""

    def __init__(self) -> None:
        self.lock_file: int | None = None
        self.is_held = False

    def __enter__(self) -> "OneWriter":
        if connection.vendor != "sqlite":
            return self
        _sqlite_writer.acquire()
        try:
            self.lock_file = database_lock_file()
            if self.lock_file is not None:
                fcntl.flock(self.lock_file, fcntl.LOCK_EX)
        except BaseException:
            _sqlite_writer.release()
            raise
        self.is_held = True
        return self

    def release(self) -> None:
        if not self.is_held:
            return
        self.is_held = False
        try:
            if self.lock_file is not None:
                fcntl.flock(self.lock_file, fcntl.LOCK_UN)
        finally:
            _sqlite_writer.release()

    def __exit__(self, *exc_info) -> None:
        self.release()


def one_writer() -> OneWriter:
    return OneWriter()


def database_lock_file() -> int | None:
    """This process's open lock file for the SQLite database (None: in memory, or no flock).
    Opened per process: a descriptor inherited across a fork shares its lock."""
    name = str(connection.settings_dict["NAME"])
    if fcntl is None or name == ":memory:" or name.startswith("file:"):
        return None
    key = (os.getpid(), name)
    if (descriptor := _lock_files.get(key)) is None:
        descriptor = os.open(f"{name}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        _lock_files[key] = descriptor  # under _sqlite_writer: one opener at a time
    return descriptor


@contextmanager
def pipelined() -> Iterator[None]:
    """On PostgreSQL, the statements inside are sent without waiting for each one's answer
    (libpq's pipeline mode): the round trip is paid only where a result is read, and once at
    the end. A write that fails raises there, as Django's database error. Elsewhere, and
    inside a pipeline already open (a nested block would sync at its end): nothing."""
    if connection.vendor != "postgresql" or in_pipeline():
        yield
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


def in_pipeline() -> bool:
    return connection.connection is not None and connection.connection._pipeline is not None
