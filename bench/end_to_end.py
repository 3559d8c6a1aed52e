"""Single-record webhooks end to end: gunicorn (2 workers x 4 threads, DEBUG off), one RQ worker,
and the demo provider as a fake AI with latency L and concurrency C.

    python bench/end_to_end.py [--records 300] [--latency-ms 100] [--concurrency 8] [--clients 8]

(also `bench/pipeline.py --webhooks` and `bench/intake.py --end-to-end`). Prints:
- a lone record's latency: webhooks sent one at a time with `?wait=5`, round trip p50 and p99;
- `--records` single-record webhooks from `--clients` concurrent clients: records/s from the first
  request to the last job's finish, and its share of the ideal C/L.
"""

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import (
    ROOT,
    free_port,
    make_demo_connector,
    prepare_environment,
    production,
    start_gunicorn,
    stop,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--lone", type=int, default=20, help="lone records sent one at a time")
    parser.add_argument("--batch-size", type=int, default=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    run(parser.parse_args())


def run(arguments, environment: dict | None = None) -> None:
    environment = environment or prepare_environment()
    from connectors.models import ApiKey

    slug = f"bench-e2e-{time.monotonic_ns()}"
    connector = make_demo_connector(
        slug,
        batch_size=arguments.batch_size,
        concurrency=arguments.concurrency,
        latency_ms=arguments.latency_ms,
    )
    _, key, _ = ApiKey.issue(connector)
    port = free_port()
    server = start_gunicorn(environment, port)
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "run_worker", "--worker-class", "simple"],
        env=production(environment),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_worker()
        url = f"http://127.0.0.1:{port}/api/v1/connectors/{slug}/records/"
        headers = {"Authorization": f"Bearer {key}"}
        ideal = arguments.concurrency * 1000 / arguments.latency_ms
        print(
            f"end to end: gunicorn 2x4 + 1 simple worker, demo AI {arguments.latency_ms:g} ms, "
            f"C = {arguments.concurrency}, ideal C/L = {ideal:.0f} records/s"
        )
        lone = lone_latencies(url, headers, arguments.lone)
        print(
            f"lone record (?wait=5, one at a time, {len(lone)}): "
            f"p50 {percentile(lone, 50):.0f} ms, p99 {percentile(lone, 99):.0f} ms "
            f"(L + 50 = {arguments.latency_ms + 50:g} ms); created -> finished p50 "
            f"{percentile(server_side(connector), 50):.0f} ms"
        )
        rate, intake_rate = throughput(connector, url, headers, arguments)
        print(
            f"{arguments.records} single-record webhooks, {arguments.clients} clients: "
            f"{rate:.1f} records/s = {rate / ideal:.0%} of C/L (intake {intake_rate:.0f} req/s)"
        )
    finally:
        stop(worker)
        stop(server)


def wait_for_worker() -> None:
    from rq import Worker

    from connectors import broker

    for _ in range(300):
        if Worker.count(connection=broker.get_redis()):
            return
        time.sleep(0.1)
    raise SystemExit("the worker did not start")


def lone_latencies(url: str, headers: dict, count: int) -> list[float]:
    latencies = []
    with httpx.Client(timeout=30, headers=headers) as client:
        for n in range(count + 1):
            started = time.perf_counter()
            response = client.post(f"{url}?wait=5", json={"text": f"lone {n}"})
            assert response.status_code == 200, response.text
            if n:  # the first warms up the worker's connection and imports
                latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.2)
    return latencies


def server_side(connector) -> list[float]:
    """Each job's time from its row's commit to its finish, in ms."""
    from connectors.models import Job

    spans = Job.objects.filter(connector=connector).values_list("created_at", "finished_at")
    return [(finished - created).total_seconds() * 1000 for created, finished in spans]


def throughput(connector, url: str, headers: dict, arguments) -> tuple[float, float]:
    """Records/s from the first request to the last finish, and the intake's requests/s."""
    from django.db.models import Max
    from django.utils import timezone

    from connectors.models import Job

    before = Job.objects.filter(connector=connector).count()
    per_client = [range(n, arguments.records, arguments.clients) for n in range(arguments.clients)]

    def send(numbers) -> None:
        with httpx.Client(timeout=60, headers=headers) as client:
            for n in numbers:
                response = client.post(url, json={"text": f"record {n}"})
                assert response.status_code == 202, response.text

    started_at, started = timezone.now(), time.perf_counter()
    with ThreadPoolExecutor(arguments.clients) as pool:
        list(pool.map(send, per_client))
    intake_rate = arguments.records / (time.perf_counter() - started)
    expected = before + arguments.records
    deadline = time.monotonic() + 600
    finished = Job.objects.filter(connector=connector, status=Job.Status.SUCCEEDED)
    while finished.count() < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {finished.count()} of {expected} jobs finished")
        time.sleep(0.05)
    last = finished.aggregate(last=Max("finished_at"))["last"]
    return arguments.records / (last - started_at).total_seconds(), intake_rate


def percentile(values: list[float], share: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1]


if __name__ == "__main__":
    main()
