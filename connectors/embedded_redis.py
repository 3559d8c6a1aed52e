"""One embedded redis-server per INTERLOCK_VAR_DIR, shared by every process that uses it and
stopped once the last of them has exited.

Each user holds a shared flock on `redis/users` for its whole life; the kernel drops it when the
process ends, however it ends (exit, SIGTERM, SIGKILL). Starting the server and deciding to stop
it both happen under an exclusive flock on `redis/lock`, so a newcomer never joins a server that
is being stopped. A small watcher process, started with the server, checks every second whether
any user is left (an exclusive try on `redis/users`) and stops the server when none is, or when
the folder was deleted or replaced.

The server keeps an append-only file and no RDB snapshots: Redis 6 ignores SIGTERM when the save
it makes on shutdown fails (its folder deleted), and the database, not Redis, is the source of
truth anyway. This module imports only the standard library: the watcher runs it as a script.
"""

import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
WATCH_INTERVAL_SECONDS = 1.0
# sun_path holds 108 bytes; a longer socket path goes to the temporary folder.
MAX_SOCKET_PATH = 100


@dataclass
class EmbeddedRedis:
    folder: Path
    socket_path: Path
    pid: int
    users: IO  # open for this process's life: it holds the shared lock

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"


def server_folder(var_dir: Path) -> Path:
    return Path(var_dir) / "redis"


def socket_path_for(folder: Path) -> Path:
    path = folder / "redis.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"interlock-redis-{digest}.sock"


def join(var_dir: Path, *, executable: str) -> EmbeddedRedis:
    """Use the var dir's redis-server, starting it (and its watcher) when none runs."""
    folder = server_folder(var_dir)
    folder.mkdir(parents=True, exist_ok=True)
    socket_path = socket_path_for(folder)
    with open(folder / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        users = open(folder / "users", "a")  # noqa: SIM115 - held open for life: the lock
        fcntl.flock(users, fcntl.LOCK_SH)
        pid = running_server(folder, socket_path)
        if pid is None:
            pid = start_server(folder, socket_path, executable)
        if not is_alive(read_pid(folder / "watcher.pid")):
            start_watcher(folder, pid)
    return EmbeddedRedis(folder, socket_path, pid, users)


def running_server(folder: Path, socket_path: Path) -> int | None:
    pid = read_pid(folder / "redis.pid")
    if is_redis_server(pid) and answers(socket_path):
        return pid
    return None


def start_server(folder: Path, socket_path: Path, executable: str) -> int:
    config = folder / "redis.conf"
    config.write_text(
        "\n".join(
            [
                "daemonize yes",
                f'pidfile "{folder / "redis.pid"}"',
                f'logfile "{folder / "redis.log"}"',
                f'dir "{folder}"',
                "port 0",
                f'unixsocket "{socket_path}"',
                "unixsocketperm 700",
                'save ""',
                "appendonly yes",
                "appendfsync everysec",
                # noeviction: an evicted key would be a lost job.
                "maxmemory-policy noeviction",
                "",
            ]
        )
    )
    (folder / "redis.pid").unlink(missing_ok=True)
    subprocess.run([executable, str(config)], check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        pid = read_pid(folder / "redis.pid")
        if pid and answers(socket_path):
            return pid
        time.sleep(0.05)
    log = (folder / "redis.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the embedded redis-server did not start; its log ends:\n{log}")


def start_watcher(folder: Path, pid: int) -> None:
    # The folder's inode and the pid are passed, not read by the watcher: the folder may be gone
    # before the watcher has started. Its own session: Ctrl-C in the terminal must not stop it
    # before it stops the server.
    inode = str(folder.stat().st_ino)
    process = subprocess.Popen(
        [
            sys.executable,
            "-P",
            __file__,
            str(folder),
            str(pid),
            inode,
        ],  # -P: not connectors/ on sys.path
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    (folder / "watcher.pid").write_text(str(process.pid))


def watch(folder: Path, pid: int, inode: int, *, interval: float = WATCH_INTERVAL_SECONDS) -> None:
    """Stop the server once no user is left, or once its folder is gone or replaced."""
    while is_alive(pid):
        time.sleep(interval)
        try:
            if folder.stat().st_ino != inode:
                break
            with open(folder / "lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not has_users(folder):
                    stop_server(pid)
                    (folder / "redis.pid").unlink(missing_ok=True)
                    return
        except FileNotFoundError:
            break
    stop_server(pid)


def has_users(folder: Path) -> bool:
    with open(folder / "users", "a") as users:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def stop_server(pid: int | None) -> None:
    """SIGTERM (the server saves nothing it could fail to write), then SIGKILL."""
    if not is_redis_server(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while is_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)


def answers(socket_path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(1)
            client.connect(str(socket_path))
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def is_alive(pid: int | None) -> bool:
    """Running and not a zombie (a zombie still answers kill 0)."""
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def is_redis_server(pid: int | None) -> bool:
    """Alive and a redis-server (a pid file can outlive its process and the pid be reused)."""
    if not is_alive(pid):
        return False
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


if __name__ == "__main__":
    watch(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
