"""Wakes the requests waiting with ?wait= as soon as a worker has recorded outcomes.

A waiting request polls the database for its jobs (every 10 ms at first, see api.views). Between
two polls it listens on its connector's Redis channel, where a worker publishes once each
transaction that finished jobs of that connector has committed, so the poll that finds them runs
then instead of a pause later. The message only says "look again": the database stays the only
record of what finished, a message lost costs one pause, and without Redis the request polls as
it did before. Outcomes recorded elsewhere (the reconciler, a review, a cancel) are found by the
polls alone.
"""

import contextlib
import logging
import time
from collections.abc import Iterable

from django.conf import settings
from redis.client import PubSub
from redis.exceptions import RedisError

from connectors import broker

logger = logging.getLogger(__name__)


def channel_for(connector_id: int) -> str:
    return f"interlock:finished:{settings.RQ_QUEUE_NAME}:{connector_id}"


def announce(connector_ids: Iterable[int]) -> None:
    """After a commit that finished jobs of these connectors. Best effort: a waiting request
    that hears nothing finds its jobs at its next poll."""
    try:
        with broker.get_impatient_redis().pipeline(transaction=False) as pipe:
            for connector_id in set(connector_ids):
                pipe.publish(channel_for(connector_id), b"")
            pipe.execute()
    except RedisError as error:
        logger.debug("cannot announce finished jobs (%s)", type(error).__name__)


class Listener:
    """Subscribed to a connector's channel while the with-block runs (the subscription is
    confirmed when the block starts: what is announced after that is heard). `pause(seconds)`
    returns early when a worker announces; without Redis it sleeps the whole pause."""

    def __init__(self, connector_id: int) -> None:
        self.channel = channel_for(connector_id)
        self.pubsub: PubSub | None = None

    def __enter__(self) -> "Listener":
        try:
            self.pubsub = broker.get_impatient_redis().pubsub()
            self.pubsub.subscribe(self.channel)
            if self.pubsub.get_message(timeout=broker.QUICK_CONNECT_SECONDS) is None:
                raise TimeoutError("no confirmation of the subscription")
        except (RedisError, TimeoutError) as error:
            logger.debug("cannot listen for finished jobs (%s)", type(error).__name__)
            self.close()
        return self

    def pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while self.pubsub is not None and (left := deadline - time.monotonic()) > 0:
                if self._heard(timeout=left):
                    # Those announced meanwhile are answered by the same poll.
                    while self._heard(timeout=0):
                        pass
                    return
        except RedisError as error:
            logger.debug("stopped listening for finished jobs (%s)", type(error).__name__)
            self.close()
        time.sleep(max(0.0, deadline - time.monotonic()))

    def _heard(self, timeout: float) -> bool:
        message = self.pubsub.get_message(timeout=timeout)
        return message is not None and message["type"] == "message"

    def close(self) -> None:
        if self.pubsub is None:
            return
        pubsub, self.pubsub = self.pubsub, None
        with contextlib.suppress(RedisError):
            pubsub.close()

    def __exit__(self, *exc_info) -> None:
        self.close()
