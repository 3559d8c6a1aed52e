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


def test_tokens_over_the_limit_wait_for_the_next_window(redis_client):
    window = 1.0
    while time.time() % window > 0.5:
        time.sleep(0.05)
    assert ratelimit.wait_for_tokens("gpt", 100, 60, window=window) == 0.0
    waited = ratelimit.wait_for_tokens("gpt", 100, 60, window=window)  # 120 > 100

    assert 0.4 <= waited <= 1.1
    assert redis_client.keys("interlock:tpm:gpt:*")


def test_tokens_that_do_not_fit_are_given_back(redis_client):
    assert ratelimit.take_tokens("gpt", 100, 60, window=30) is None
    assert ratelimit.take_tokens("gpt", 100, 60, window=30) is not None
    assert ratelimit.take_tokens("gpt", 100, 40, window=30) is None  # the 60 were given back
    assert ratelimit.take_tokens("gpt", 100, 1, window=30) is not None


def test_a_call_larger_than_the_whole_limit_goes_alone_in_its_window(redis_client):
    assert ratelimit.take_tokens("big", 100, 500, window=30) is None
    assert ratelimit.take_tokens("big", 100, 1, window=30) is not None
    assert ratelimit.take_tokens("big", None, 10**9) is None
    assert redis_client.keys("interlock:tpm:big:*")
