"""The web servers for real: chunked bodies under gunicorn (how production runs the app) and
the server `manage.py serve` starts, which must hold out against slow clients."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from connectors.management.commands.serve import web_command
from connectors.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 1000  # INTAKE_MAX_BODY_BYTES of the servers started here
CLIENT_TIMEOUT = 3  # seconds, for the server serve configures
RECORDS = "/api/v1/connectors/invoices/records/"


@dataclass
class Server:
    host: str
    port: int

    def connect(self, timeout: float = 5) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)


def database_url() -> str:
    """The test database, for the server processes."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return f"postgres://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_server(command: list[str], port: int, redis_url: str, log_path):
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "INTAKE_MAX_BODY_BYTES": str(LIMIT),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=environment, cwd=settings.BASE_DIR, stdout=log, stderr=log
        )
    server = Server("127.0.0.1", port)
    try:
        wait_until_answering(server, process, log_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_answering(server: Server, process: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited: {log_path.read_text()[-2000:]}")
        try:
            get(server, "/api/v1/health/", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the server did not answer: {log_path.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, redis_url, tmp_path_factory):
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "console.wsgi", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "1", "--threads", "2", "--graceful-timeout", "1"]
    log = tmp_path_factory.mktemp("gunicorn") / "log"
    yield from run_server(command, port, redis_url, log)


@pytest.fixture(scope="module")
def served(django_db_setup, redis_url, tmp_path_factory):
    """The web server as `manage.py serve` starts it."""
    port = free_port()
    with override_settings(INTAKE_MAX_BODY_BYTES=LIMIT):
        command = web_command(f"127.0.0.1:{port}", client_timeout=CLIENT_TIMEOUT)
    log = tmp_path_factory.mktemp("served") / "log"
    yield from run_server(command, port, redis_url, log)


@pytest.fixture
def key(make_connector, api_key):
    return api_key(make_connector("invoices"))[1]


def get(server: Server, path: str, *, timeout: float) -> int:
    client = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        client.request("GET", path)
        return client.getresponse().status
    finally:
        client.close()


def post_chunked(server: Server, key: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked (http.client chunks an iterable body)."""
    client = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        client.request(
            "POST",
            RECORDS,
            body=iter(chunks),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        response = client.getresponse()
        return response.status, response.read()
    finally:
        client.close()


def post_chunked_without_end(server: Server, key: str, data: bytes) -> tuple[int, bytes]:
    """Start a chunk 100 times larger than the limit, send `data` of it and then nothing: an
    answer cannot have waited for the body's end."""
    sock = server.connect()
    try:
        sock.sendall(
            f"POST {RECORDS} HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        sock.sendall(b"%x\r\n%s" % (100 * LIMIT, data))
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()
    finally:
        sock.close()


def record_of(size: int) -> bytes:
    """A record whose JSON is exactly `size` bytes."""
    body = b'{"text": ""}'
    return body[:-2] + b"x" * (size - len(body)) + body[-2:]


def in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def test_gunicorn_accepts_a_chunked_body_up_to_the_limit(gunicorn, key):
    body = record_of(LIMIT)

    status, answer = post_chunked(gunicorn, key, in_chunks(body, 300))

    assert status == 202, answer
    [job] = Job.objects.all()
    assert str(job.id) == json.loads(answer)["jobs"][0]["id"]
    assert job.input_data == {"text": "x" * (LIMIT - 12)}


def test_gunicorn_refuses_a_chunked_body_over_the_limit_before_its_end(gunicorn, key):
    # gunicorn reads ahead up to 1 KiB more than asked for, so send that much more.
    status, answer = post_chunked_without_end(gunicorn, key, b'{"text": "' + b"x" * 3 * LIMIT)

    assert status == 413
    assert json.loads(answer) == {
        "code": "body_too_large",
        "detail": f"The request body is larger than {LIMIT} bytes.",
        "limit": LIMIT,
    }
    assert Job.objects.count() == 0


def test_gunicorn_refuses_a_malformed_chunked_body_with_a_400(gunicorn, key):
    sock = gunicorn.connect()
    with sock:
        sock.sendall(
            f"POST {RECORDS} HTTP/1.1\r\nHost: {gunicorn.host}\r\nAuthorization: Bearer {key}\r\n"
            "Transfer-Encoding: chunked\r\n\r\nnot a chunk size\r\n".encode()
        )
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = json.loads(response.read())

    assert (response.status, body["code"]) == (400, "invalid_body")
    assert body["detail"].startswith("The chunked body cannot be read: ")
    assert Job.objects.count() == 0


def test_the_served_server_reads_chunked_bodies_and_refuses_those_over_the_limit(served, key):
    accepted, _ = post_chunked(served, key, in_chunks(record_of(LIMIT), 300))
    over, answer = post_chunked(served, key, in_chunks(record_of(LIMIT + 1), 300))
    # Far over the limit, the server itself refuses, before the body's end.
    far_over, _ = post_chunked_without_end(served, key, b"x" * (3 * LIMIT))

    assert accepted == 202
    assert (over, json.loads(answer)["code"]) == (413, "body_too_large")
    assert far_over == 413
    assert Job.objects.count() == 1


def is_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""  # data would be an answer: not expected here
    except BlockingIOError:
        return True  # nothing to read, not closed
    except ConnectionError:
        return False


def wait_closed(sock: socket.socket, until: float) -> bool:
    sock.settimeout(max(0.05, until - time.monotonic()))
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def test_slow_clients_hold_no_thread_and_are_cut_off_after_the_timeout(served):
    """20 clients send their headers and one byte of a 50-byte body, then nothing: the
    server must go on answering, and close them once they have been silent too long."""
    slow = [served.connect() for _ in range(20)]
    for sock in slow:
        sock.sendall(
            f"POST {RECORDS} HTTP/1.1\r\nHost: {served.host}\r\n"
            "Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{".encode()
        )
    silent_since = time.monotonic()

    started = time.monotonic()
    status = get(served, "/api/v1/health/", timeout=2)
    answered_in = time.monotonic() - started
    still_open = [is_open(sock) for sock in slow]
    checked_at = time.monotonic() - silent_since
    closed = [wait_closed(sock, until=silent_since + CLIENT_TIMEOUT + 3) for sock in slow]
    closed_after = time.monotonic() - silent_since
    for sock in slow:
        sock.close()

    assert status == 200 and answered_in < 2
    assert all(still_open) and checked_at < CLIENT_TIMEOUT  # not closed before the timeout...
    assert all(closed)  # ...but after it
    assert CLIENT_TIMEOUT <= closed_after < CLIENT_TIMEOUT + 3
