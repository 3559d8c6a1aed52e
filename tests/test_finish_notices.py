"""The wake-up of ?wait= requests is only ever a shortcut: without Redis nothing fails, the
request sleeps its whole pause and finds its jobs by polling (tests/test_pipeline.py has the
end-to-end wake)."""

import logging
import time

from connectors import finish_notices


def test_without_redis_a_pause_sleeps_its_whole_time(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    started = time.monotonic()
    with finish_notices.Listener(7) as listener:
        listener.pause(0.2)

    assert time.monotonic() - started >= 0.2
    assert listener.pubsub is None


def test_without_redis_an_announcement_is_dropped_quietly(settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    with caplog.at_level(logging.DEBUG, logger="connectors.finish_notices"):
        finish_notices.announce([7, 8])  # does not raise

    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["cannot announce finished jobs (ConnectionError)"]


def test_an_announcement_wakes_a_listener_before_its_pause_ends(settings):
    with finish_notices.Listener(7) as listener:
        finish_notices.announce([7])
        started = time.monotonic()
        listener.pause(30)

    assert time.monotonic() - started < 10


def test_another_connector_announcement_does_not_wake_a_listener(settings):
    with finish_notices.Listener(7) as listener:
        finish_notices.announce([8])
        started = time.monotonic()
        listener.pause(0.3)

    assert time.monotonic() - started >= 0.3


def test_announcements_heard_together_wake_one_pause(settings):
    """The poll after a wake answers for every announcement before it: the next pause is a
    pause, not another immediate poll."""
    with finish_notices.Listener(7) as listener:
        for _ in range(3):
            finish_notices.announce([7])
        listener.pause(30)
        started = time.monotonic()
        listener.pause(0.3)

    assert time.monotonic() - started >= 0.3
