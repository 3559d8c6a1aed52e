"""Requests- and tokens-per-minute limits shared by every process on every host through Redis
(a per-process limit would be multiplied by the number of workers): a provider's limits, which
the workers wait for, and a connector's intake limit, which the API refuses past."""

import random
import time

from redis.exceptions import RedisError

from connectors import broker


def take(name: str, per_minute: int | None, *, window: float = 60.0) -> float | None:
    """Count one request; return None if it fits in the current window, else the seconds until
    the next window opens.

    A fixed window counted with INCR: simple and cheap, at worst twice the limit across a window
    edge. If Redis is down the request goes ahead: a limit must not stop the pipeline.
    """
    if not per_minute:
        return None
    now = time.time()
    slot = int(now // window)
    key = f"interlock:rpm:{name}:{slot}"
    try:
        count, _ = broker.get_redis().pipeline().incr(key).expire(key, int(window) + 1).execute()
    except RedisError:
        return None
    if count <= per_minute:
        return None
    return (slot + 1) * window - now


def take_tokens(
    name: str, per_minute: int | None, tokens: int, *, window: float = 60.0
) -> float | None:
    """Count `tokens` against a tokens-per-minute limit; return None if they fit in the current
    window, else the seconds until the next one. Tokens that do not fit are given back, so that
    a smaller call may still go; a call larger than the whole limit goes alone in its window."""
    if not per_minute or tokens <= 0:
        return None
    now = time.time()
    slot = int(now // window)
    key = f"interlock:tpm:{name}:{slot}"
    try:
        redis = broker.get_redis()
        count, _ = redis.pipeline().incrby(key, tokens).expire(key, int(window) + 1).execute()
        if count <= per_minute or count == tokens:
            return None
        redis.decrby(key, tokens)
    except RedisError:
        return None
    return (slot + 1) * window - now


def wait_for_tokens(name: str, per_minute: int | None, tokens: int, *, window: float = 60.0):
    """Block until `tokens` fit in the current window; return the seconds waited."""
    waited = 0.0
    while (pause := take_tokens(name, per_minute, tokens, window=window)) is not None:
        pause += random.uniform(0, window / 20)
        time.sleep(pause)
        waited += pause
    return waited


def wait_for_slot(name: str, per_minute: int | None, *, window: float = 60.0) -> float:
    """Block until a request fits in the current window; return the seconds waited."""
    waited = 0.0
    while (pause := take(name, per_minute, window=window)) is not None:
        pause += random.uniform(0, window / 20)  # spread the waiters over the new window
        time.sleep(pause)
        waited += pause
    return waited
