"""A provider's requests-per-minute limit, counted in the real Redis."""

import time

from connectors import ratelimit


def test_requests_over_the_limit_wait_for_the_next_window(redis_client):
    window = 1.0
    while time.time() % window > 0.5:  # start early in a window, so two calls fit in it
        time.sleep(0.05)
    waits = [ratelimit.wait_for_slot("gpt", 2, window=window) for _ in range(3)]

    assert waits[:2] == [0.0, 0.0]
    assert 0.4 <= waits[2] <= 1.1
    assert redis_client.keys("interlock:rpm:gpt:*")


def test_no_limit_means_no_wait(redis_client):
    assert ratelimit.wait_for_slot("gpt", None) == 0.0
    assert redis_client.keys("interlock:rpm:*") == []


def test_limits_are_per_provider(redis_client):
    assert ratelimit.wait_for_slot("a", 1, window=30) == 0.0
    assert ratelimit.wait_for_slot("b", 1, window=30) == 0.0
