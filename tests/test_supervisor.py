"""`make run`'s supervisor restarts a child that dies and stops every child when asked."""

import os
import signal
import sys
import time

from connectors.supervisor import Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def supervise(commands):
    said = []
    supervisor = Supervisor(commands, say=said.append)
    supervisor.start()
    return supervisor, said


def wait_until(condition, supervisor, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        supervisor.check()
        time.sleep(0.05)


def test_a_child_that_dies_is_started_again_and_the_others_are_left_alone():
    supervisor, said = supervise({"worker": SLEEPER, "web": SLEEPER})
    try:
        worker, web = (child.process for child in supervisor.children)
        os.kill(worker.pid, signal.SIGKILL)

        wait_until(lambda: supervisor.children[0].process is not worker, supervisor)

        restarted = supervisor.children[0].process
        assert restarted.poll() is None and restarted.pid != worker.pid
        assert supervisor.children[1].process is web and web.poll() is None
        assert said == ["worker exited with -9; restarting in 1 s", "worker: starting again"]
    finally:
        supervisor.stop(grace=5)
    assert all(child.process.poll() is not None for child in supervisor.children)


def test_a_child_that_keeps_dying_is_restarted_with_growing_backoff():
    supervisor, said = supervise({"broken": [sys.executable, "-c", "raise SystemExit(3)"]})
    try:
        wait_until(lambda: len(said) >= 3, supervisor)
    finally:
        supervisor.stop(grace=5)

    assert said[:3] == [
        "broken exited with 3; restarting in 1 s",
        "broken: starting again",
        "broken exited with 3; restarting in 2 s",
    ]
