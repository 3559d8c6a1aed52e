"""`make run` (manage.py serve) on embedded defaults, for real: the banner once the port answers,
Ctrl-C stops every process it started (the children's own children and the embedded
redis-server too), and a second start works."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from connectors import embedded_redis
from tests.test_embedded_redis import environment, servers_of, wait_for

BANNER = "Interlock is running"


@pytest.fixture
def var_dir(tmp_path):
    path = tmp_path / "var"
    yield path
    for pid in servers_of(path):  # whatever a failed test left behind, by its pid
        os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(root: int) -> set[int]:
    """Every live process below `root`."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = stat_fields(int(entry.name))
            except (OSError, IndexError):
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def start_serve(var_dir: Path, port: int, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"],
            cwd=settings.BASE_DIR,
            env=environment(var_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run_once(var_dir: Path, log: Path) -> None:
    port = free_port()
    serve = start_serve(var_dir, port, log)
    try:
        wait_for(lambda: BANNER in log.read_text() or serve.poll() is not None, "the banner", 90)
        assert serve.poll() is None, log.read_text()[-3000:]
        assert answers(port)  # the banner came no earlier than the port
        output = log.read_text()
        assert output.index("waiting for") < output.index(BANNER)
        # Every child runs in a group of its own; the web server and the worker have started.
        wait_for(lambda: len(descendants(serve.pid)) >= 4, "the children")
        children = descendants(serve.pid)
        [server] = servers_of(var_dir)

        os.kill(serve.pid, signal.SIGINT)  # what Ctrl-C sends the supervisor
        assert serve.wait(40) == 0, log.read_text()[-3000:]
    finally:
        if serve.poll() is None:
            os.kill(serve.pid, signal.SIGKILL)
            serve.wait()

    assert "stopped" in log.read_text()
    assert not answers(port)
    # The redis watcher (a child too) exits a moment later, once it has stopped the server.
    wait_for(lambda: not embedded_redis.is_alive(server), "the embedded redis-server to stop")
    wait_for(lambda: not any(embedded_redis.is_alive(pid) for pid in children), "every child")


def test_serve_announces_once_answering_and_ctrl_c_stops_everything_twice(var_dir, tmp_path):
    run_once(var_dir, tmp_path / "first.log")
    run_once(var_dir, tmp_path / "second.log")
