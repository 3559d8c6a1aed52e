"""Feeding the pipeline from sources that are polled (files, database tables).

Sources never import the job layer; this module builds each source with its decrypted secrets
and hands it `submit`, which turns records into committed, enqueued jobs.
"""

import logging
from functools import partial

from sqlalchemy.exc import SQLAlchemyError

from connectors import audit, jobs, legacy_db
from connectors.errors import ConfigError
from connectors.models import Connector, Credential
from connectors.sources import SOURCES

logger = logging.getLogger(__name__)


def build_source(connector: Connector):
    source_class = SOURCES.get(connector.source_kind)
    config = source_class.validate_config(connector.source_config)
    secrets = {}
    for key in source_class.credential_fields:
        if config.get(key):
            credential = Credential.objects.filter(name=config[key]).first()
            if credential is None:
                raise ConfigError(f"source {key}: no credential named {config[key]!r}")
            credential.mark_used()
            secrets[key] = credential.reveal()
    return source_class(connector, config, secrets)


def submit_items(connector: Connector, items: list[dict], *, rejected=None, source_file_id=None):
    """The `submit` a source calls: dicts of Submission fields in, (job, created) pairs out."""
    submissions = [jobs.Submission(**item, source_file_id=source_file_id) for item in items]
    actor = audit.Actor.system(f"source {connector.source_kind}")
    return jobs.submit(connector, submissions, actor, rejected=rejected)


def poll(connector: Connector) -> int:
    """One poll of one connector; errors are logged and retried at the next interval."""
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
    polled = [kind for kind in SOURCES.kinds() if SOURCES.get(kind).is_polled]
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
