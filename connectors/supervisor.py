"""`make run`'s process supervisor: start the children, restart any that exits, stop them all.

A worker or the web server that dies (a crash, the OOM killer, a dependency it could not ride
out) is started again with backoff: 1 s, doubling to 30 s while it keeps dying within a minute
of its start, back to 1 s once it has run for a minute. In production a real supervisor
(systemd, Kubernetes) does this job; this one makes the one-machine setup behave the same.
"""

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
        child.process = subprocess.Popen(child.command, **self.popen)
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
            if now - child.started_at >= STABLE_SECONDS:
                child.backoff = 1.0
            self.say(f"{child.name} exited with {code}; restarting in {child.backoff:g} s")
            child.restart_at = now + child.backoff
            child.backoff = min(child.backoff * 2, MAX_BACKOFF_SECONDS)

    def run(self, *, interval: float = 0.5) -> None:
        """Supervise until SIGINT or SIGTERM, then stop every child."""

        def stop(*_):
            self.stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not self.stopping:
            self.check()
            time.sleep(interval)
        self.stop()

    def stop(self, *, grace: float = 20.0) -> None:
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
