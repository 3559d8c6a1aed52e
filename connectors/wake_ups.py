"""One pending wake-up per connector: records sent one per request share one RQ job.

Every single-record request used to enqueue an RQ job of its own, the largest cost of intake
after the database (RQ writes a job hash, pushes its id, registers the queue). But a worker that
starts a connector's RQ job claims every queued job of that connector (up to its batch size,
then more as provider slots free up), so while one such RQ job waits, another adds nothing.

The protocol, over one Redis key per connector:

- Intake commits its jobs as queued, then arms the wake-up (SET NX). If it armed it, it enqueues
  its RQ job as before; if one was already armed, that RQ job has not started yet, and it will
  claim these jobs: they are committed before the arm was tried, and claimed after it.
- A worker disarms (DEL) first thing, before it claims, so whatever commits after its claim arms
  the wake-up again and enqueues an RQ job of its own.
- A batch that ends with jobs of its connector still queued (more than it could take) enqueues
  them again (batches.run_batch).

The key expires after WAKE_UP_SECONDS: a worker that died between taking the RQ job and disarming
it holds the connector's records back no longer than that (and the reconciler finds any queued
job whose RQ job never ran). Disarming or expiring early only ever costs an extra RQ job, which
finds its jobs claimed and does nothing: claims are conditional.
"""

import logging

from django.conf import settings
from redis.exceptions import RedisError

from connectors import broker

logger = logging.getLogger(__name__)

WAKE_UP_SECONDS = 5


def key_for(connector_id: int) -> str:
    return f"interlock:wake-up:{settings.RQ_QUEUE_NAME}:{connector_id}"


def arm(connector_id: int, rq_id: str) -> bool:
    """True if this call armed the connector's wake-up (its caller enqueues `rq_id`); False if
    an RQ job that has not started yet will claim the connector's queued jobs. Raises
    RedisError: the caller treats it as a failed enqueue."""
    armed = broker.get_redis().set(key_for(connector_id), rq_id, nx=True, ex=WAKE_UP_SECONDS)
    return bool(armed)


def disarm(connector_id: int) -> None:
    """Before a worker claims: what commits from now on enqueues again. Best effort: a key left
    behind expires within WAKE_UP_SECONDS."""
    try:
        broker.get_redis().delete(key_for(connector_id))
    except RedisError as error:
        logger.warning("cannot disarm a wake-up (%s)", type(error).__name__)
