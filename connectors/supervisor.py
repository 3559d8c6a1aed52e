"""`make run`'s process supervisor: start the children, restart any that exits, stop them all.

A worker or the web server that dies (a crash, the OOM killer, a dependency it could not ride
out) is started again with backoff: 1 s, doubling to 30 s while it keeps dying within a minute
of its start, back to 1 s once it has run for a minute. In production a real supervisor
(systemd, Kubernetes) does this job; this one makes the one-machine setup behave the same.

Each child runs in a process group of its own and is stopped with its whole group, so nothing it
started (a gunicorn worker, an RQ work horse) outlives it and holds a port. Ctrl-C reaches only
the supervisor, which then stops the children in order.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

STABLE_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = 1.0
    restart_at: float | None = None


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], *, say: Callable[[str], None], **popen):
        self.children = [Child(name, command) for name, command in commands.items()]
        self.say = say
        self.popen = popen
        self.stopping = False

    def start(self) -> None:
        for child in self.children:
            self._start(child)

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, start_new_session=True, **self.popen)
        child.started_at, child.restart_at = time.monotonic(), None

    def check(self) -> None:
        """Restart what exited, once its backoff has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self.say(f"{child.name}: starting again")
                    self._start(child)
                continue
            code = child.process.poll()
            if code is None:
                continue
            kill_group(child.process, signal.SIGKILL)  # what it left behind
            if now - child.started_at >= STABLE_SECONDS:
                child.backoff = 1.0
            self.say(f"{child.name} exited with {code}; restarting in {child.backoff:g} s")
            child.restart_at = now + child.backoff
            child.backoff = min(child.backoff * 2, MAX_BACKOFF_SECONDS)

    def run(
        self,
        *,
        interval: float = 0.5,
        is_ready: Callable[[], bool] = lambda: True,
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        """Supervise until SIGINT or SIGTERM, then stop every child; call `on_ready` once, the
        first time `is_ready()` is true."""

        def stop(*_):
            self.stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        announced = False
        while not self.stopping:
            self.check()
            if not announced and is_ready():
                announced = True
                on_ready()
                continue
            time.sleep(interval if announced else min(interval, 0.1))
        self.stop()

    def stop(self, *, grace: float = 20.0) -> None:
        """SIGTERM every child's group; SIGKILL what is left of it after `grace`."""
        started = [c.process for c in self.children if c.process]
        for process in started:
            if process.poll() is None:
                kill_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            kill_group(process, signal.SIGKILL)
            process.wait()


def kill_group(process: subprocess.Popen, signum: int) -> None:
    """Signal the child's process group (its id is the child's pid: start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is empty
        os.killpg(process.pid, signum)
