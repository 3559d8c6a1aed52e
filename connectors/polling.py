"""Feeding the pipeline from sources that are polled (files, database tables).

Sources never import the job layer; this module builds each source with its decrypted secrets
and hands it `submit`, which turns records into committed, enqueued jobs.
"""

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from redis.exceptions import LockError, RedisError
from sqlalchemy.exc import SQLAlchemyError

from connectors import audit, broker, credentials, jobs, legacy_db
from connectors.models import Connector
from connectors.sources import SOURCES
from connectors.work import Submission

logger = logging.getLogger(__name__)


def build_source(connector: Connector):
    """The connector's source, with the secrets of the credentials it names decrypted now."""
    kind = SOURCES.get(connector.source_kind)
    config = kind.validate_config(connector.source_config)
    return kind(connector, config, credentials.secrets_for(kind, config))


def submit_items(connector: Connector, submissions: list[Submission], *, rejected=None):
    """The `submit` a source calls: Submissions in, (job, created) pairs out."""
    actor = audit.Actor.system(f"source {connector.source_kind}")
    return jobs.submit(connector, submissions, actor, rejected=rejected)


POLL_LOCK_SECONDS = 60


@contextmanager
def exclusive(connector: Connector) -> Iterator[bool]:
    """Yield True if this process may poll the connector now: one poller at a time across all
    hosts (two would resume each other's files, or race for rows where the database has no
    SKIP LOCKED). The lock is renewed while the poll runs and expires if its holder dies. With
    Redis down nothing is polled: the records wait safely where they are."""
    lock = broker.get_redis().lock(
        f"interlock:poll:{connector.pk}",
        timeout=POLL_LOCK_SECONDS,
        blocking=False,
        thread_local=False,  # renewed from another thread
    )
    try:
        acquired = lock.acquire()
    except RedisError as error:
        logger.warning("not polling %s: Redis is unavailable (%s)", connector.slug, error)
        acquired = False
    if not acquired:
        yield False
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(POLL_LOCK_SECONDS / 3):
            with contextlib.suppress(RedisError, LockError):
                lock.extend(POLL_LOCK_SECONDS, replace_ttl=True)

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(RedisError, LockError):
            lock.release()


def poll(connector: Connector) -> int:
    """One poll of one connector; errors are logged and retried at the next interval."""
    with exclusive(connector) as allowed:
        if not allowed:
            return 0
        return _poll(connector)


def _poll(connector: Connector) -> int:
    try:
        source = build_source(connector)
        return source.poll(partial(submit_items, connector))
    except Exception as error:
        # The source is outside our walls and may be down; the next interval tries again.
        logger.warning(
            "polling connector %s failed: %s", connector.slug, describe(error), exc_info=False
        )
        return 0


def describe(error: Exception) -> str:
    """Say what failed without the SQL parameters or URLs a driver error may carry."""
    if isinstance(error, SQLAlchemyError):
        return legacy_db.describe_error(error)
    message = getattr(error, "message", None) or str(error)
    return f"{type(error).__name__}: {message[:300]}"


def due_connectors() -> list[Connector]:
    polled = SOURCES.kinds_where(lambda kind: kind.is_polled)
    return list(
        Connector.objects.select_related("provider").filter(is_enabled=True, source_kind__in=polled)
    )


def consume(connector: Connector, stop) -> None:
    """A consumer thread: runs the source's consume loop, reconnecting after failures."""
    try:
        while not stop.is_set():
            try:
                source = build_source(connector)
                source.consume(partial(submit_items, connector), stop)
            except Exception as error:
                logger.warning("consumer %s: %s; reconnecting", connector.slug, describe(error))
                stop.wait(2.0)
    finally:
        from django.db import connection

        connection.close()
