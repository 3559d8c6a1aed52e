"""Webhook intake throughput against gunicorn (or waitress, as `make run` serves): single-record
and 1,000-record requests.

    python bench/intake.py [--seconds 10] [--clients 8]

Starts gunicorn on a fresh database (SQLite under a temp dir, or DATABASE_URL) and prints
requests/second and records/second for each request shape.
"""

import argparse
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import ROOT, make_demo_connector, prepare_environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hammer(url: str, key: str, body: bytes, seconds: float, clients: int) -> tuple[int, int]:
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def client_loop() -> tuple[int, int]:
        ok = failed = 0
        with httpx.Client(timeout=60) as client:
            while time.monotonic() < deadline:
                response = client.post(url, content=body, headers=headers)
                ok, failed = (ok + 1, failed) if response.status_code == 202 else (ok, failed + 1)
        return ok, failed

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: client_loop(), range(clients)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument(
        "--server",
        choices=("gunicorn", "waitress"),
        default="gunicorn",
        help="waitress: the web server `make run` starts, with its settings",
    )
    arguments = parser.parse_args()
    environment = prepare_environment()

    from connectors.models import ApiKey

    connector = make_demo_connector("bench-intake")
    _, key, _ = ApiKey.issue(connector)
    port = free_port()
    if arguments.server == "waitress":
        from connectors.management.commands.serve import WEB_THREADS, web_command

        command = web_command(f"127.0.0.1:{port}")
        described = f"waitress (as make run starts it) {WEB_THREADS} threads"
    else:
        command = [
            *(sys.executable, "-m", "gunicorn", "console.wsgi"),
            *("--bind", f"127.0.0.1:{port}", "--workers", str(arguments.gunicorn_workers)),
            *("--threads", "4", "--log-level", "warning"),
        ]
        described = f"gunicorn {arguments.gunicorn_workers} workers x 4 threads"
    server = subprocess.Popen(command, env=environment, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/connectors/bench-intake/records/"
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/health/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        single = json.dumps({"text": "one record"}).encode()
        batch = json.dumps({"records": [{"text": f"record {n}"} for n in range(1000)]}).encode()
        print(f"{described}, {arguments.clients} clients, {arguments.seconds:g}s each")
        for name, body, size in [("single", single, 1), ("batch-1000", batch, 1000)]:
            ok, failed = hammer(url, key, body, arguments.seconds, arguments.clients)
            rate = ok / arguments.seconds
            print(
                f"{name:11} {rate:8.1f} requests/s {rate * size:10.0f} records/s ({failed} refused)"
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
