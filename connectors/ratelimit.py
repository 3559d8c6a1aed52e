"""A provider's requests-per-minute limit, shared by every worker on every host through Redis
(a per-process limit would be multiplied by the number of workers)."""

import random
import time

from redis.exceptions import RedisError

from connectors import broker


def wait_for_slot(name: str, per_minute: int | None, *, window: float = 60.0) -> float:
    """Block until a request fits in the current window; return the seconds waited.

    A fixed window counted with INCR: simple and cheap, at worst twice the limit across a window
    edge. If Redis is down, calls go ahead rather than stall the pipeline.
    """
    if not per_minute:
        return 0.0
    waited = 0.0
    while True:
        now = time.time()
        slot = int(now // window)
        key = f"interlock:rpm:{name}:{slot}"
        try:
            client = broker.get_redis()
            count = client.incr(key)
            if count == 1:
                client.expire(key, int(window) + 1)
        except RedisError:
            return waited
        if count <= per_minute:
            return waited
        pause = (slot + 1) * window - now + random.uniform(0, window / 20)
        time.sleep(pause)
        waited += pause
