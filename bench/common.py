"""Shared set-up for benchmarks: a throwaway var/ directory (SQLite or DATABASE_URL) and Redis."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prepare_environment() -> dict[str, str]:
    """Point Django at a fresh var/ directory and migrate it; return the environment to reuse."""
    var_dir = tempfile.mkdtemp(prefix="interlock-bench-")
    environment = {
        **os.environ,
        "INTERLOCK_VAR_DIR": var_dir,
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(environment)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"],
        env=environment,
        check=True,
    )
    import django

    django.setup()
    from django.conf import settings

    # DEBUG keeps the last 9,000 SQL statements in memory; production runs without it.
    settings.DEBUG = False
    from connectors import broker

    environment["REDIS_URL"] = os.environ["REDIS_URL"] = broker.redis_url()
    broker.get_redis().flushdb()
    return environment


def make_demo_connector(
    slug: str, *, batch_size: int = 20, concurrency: int = 8, latency_ms: float = 0
):
    from connectors.models import Provider

    provider, _ = Provider.objects.get_or_create(
        name=f"demo-{slug}",
        defaults={
            "kind": "demo",
            "max_concurrency": concurrency,
            "parameters": {"latency_ms": latency_ms} if latency_ms else {},
        },
    )
    return summarising_connector(slug, provider, batch_size)


def summarising_connector(slug: str, provider, batch_size: int):
    """The benchmarks' connector: one required input `text`, a one-line prompt."""
    from connectors.models import Connector, FieldMapping

    if Connector.objects.filter(slug=slug).exists():
        raise SystemExit(
            f"the database already holds a connector {slug!r} (from an earlier run?): "
            "give the benchmark an empty database, e.g. `createdb -h 127.0.0.1 -U postgres bench_N`"
        )
    connector = Connector.objects.create(
        name=slug,
        slug=slug,
        provider=provider,
        prompt_template="Summarise: {{ text }}",
        batch_size=batch_size,
    )
    FieldMapping.objects.create(
        connector=connector,
        direction="input",
        source_path="text",
        target_name="text",
        is_required=True,
    )
    return connector


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    environment: dict, port: int, *, workers: int = 2, app: str = "console.wsgi"
) -> subprocess.Popen:
    """gunicorn as the README's production section runs it (workers x 4 threads, DEBUG off),
    returned once it answers."""
    import httpx

    command = [
        *(sys.executable, "-m", "gunicorn", app, "--pythonpath", f"{ROOT},{ROOT / 'bench'}"),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
        *("--threads", "4", "--log-level", "warning"),
    ]
    server = subprocess.Popen(command, env=production(environment), cwd=ROOT)
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health/", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    return server


def production(environment: dict) -> dict:
    """DEBUG off, with the secrets development generated into the var dir, plain HTTP."""
    import json

    secrets = json.loads((Path(environment["INTERLOCK_VAR_DIR"]) / "dev-secrets.json").read_text())
    return {**environment, **secrets, "DEBUG": "false", "SECURE_SSL_REDIRECT": "false"}


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
