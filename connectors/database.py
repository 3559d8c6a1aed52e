"""Riding out a database that goes away for a moment: a failover, a restart, a connection killed
by a proxy or an administrator, or (SQLite) a write lock held longer than the busy timeout.

A worker that holds an AI answer must not lose it to such a blip: losing it would mean asking
the AI again and writing back twice once the job's lease ran out.
"""

import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

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


def one_writer_per_process():
    """On SQLite, the threads of one process take turns for a write transaction here, woken as
    soon as the one before commits, instead of in SQLite's busy handler, which polls with
    sleeps of up to 100 ms (the long tail of concurrent intake). Elsewhere: nothing."""
    return _sqlite_writer if connection.vendor == "sqlite" else nullcontext()
