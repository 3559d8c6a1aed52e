"""Webhook intake throughput against gunicorn as the README's production section runs it (2
workers x 4 threads, DEBUG off), beside the floor: a bare DRF view inserting one Job row, served
by the same gunicorn (bench/floor_app.py). Rounds alternate between the two.

    python bench/intake.py [--seconds 8] [--clients 8] [--rounds 2] [--connector demo|plain]
                           [--end-to-end]

Starts on a fresh database (SQLite under a temp dir, or DATABASE_URL) and prints requests/s,
records/s, p50 and p99 for single-record and 1,000-record requests, and the single-record rate
as a share of the floor (of the best rounds, and each round's own, with their median), and
p99 as a multiple of p50 for single records and for the floor.
`--connector demo` (the default) posts to the connector `make run` seeds, with its mappings
(text, customer.email) and redaction rules (e-mail masked, SSN hashed), each record carrying
an e-mail address; `plain`: one `text` field, no rules.
--end-to-end runs bench/end_to_end.py instead (webhooks through a worker and a fake AI).
"""

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import free_port, make_demo_connector, prepare_environment, start_gunicorn, stop


def hammer(url: str, key: str, body: bytes, seconds: float, clients: int):
    """(ok, failed, latencies in ms) of `clients` loops posting `body` for `seconds`."""
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def client_loop():
        ok = failed = 0
        latencies = []
        with httpx.Client(timeout=60) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = client.post(url, content=body, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                ok, failed = (ok + 1, failed) if response.status_code == 202 else (ok, failed + 1)
        return ok, failed, latencies

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: client_loop(), range(clients)))
    latencies = [ms for result in results for ms in result[2]]
    return sum(r[0] for r in results), sum(r[1] for r in results), latencies


def record(number: int, connector: str) -> dict:
    if connector == "plain":
        return {"text": f"record {number}"}
    text = f"Invoice {number}: please approve the credit note"
    return {"text": text, "customer": {"email": f"buyer{number}@example.com"}}


def percentile(values: list[float], share: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1]


def tail(latencies: list[float]) -> float:
    """p99 as a multiple of p50."""
    middle = percentile(latencies, 50)
    return percentile(latencies, 99) / middle if middle else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best is kept")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--connector", choices=["demo", "plain"], default="demo")
    parser.add_argument("--end-to-end", action="store_true", help="run bench/end_to_end.py")
    arguments, rest = parser.parse_known_args()
    if arguments.end_to_end:
        import end_to_end

        e2e = argparse.ArgumentParser()
        end_to_end.add_arguments(e2e)
        end_to_end.run(e2e.parse_args(rest))
        return
    environment = prepare_environment()

    from connectors.models import ApiKey

    if arguments.connector == "demo":
        from connectors import demo

        connector, key = demo.seed_demo()
    else:
        connector = make_demo_connector("demo")
        _, key, _ = ApiKey.issue(connector)
    environment["BENCH_FLOOR_CONNECTOR"] = str(connector.pk)
    port = free_port()
    server = start_gunicorn(
        environment, port, workers=arguments.gunicorn_workers, app="floor_app:application"
    )
    try:
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/api/v1/connectors/demo/records/"
        single = json.dumps(record(0, arguments.connector)).encode()
        records = [record(n, arguments.connector) for n in range(1000)]
        batch = json.dumps({"records": records}).encode()
        shapes = [
            ("floor", f"{base}/bench/floor/", single, 1),
            ("single", url, single, 1),
            ("batch-1000", url, batch, 1000),
        ]
        print(
            f"connector {arguments.connector}, "
            f"gunicorn {arguments.gunicorn_workers} workers x 4 threads, DEBUG off, "
            f"{arguments.clients} clients, {arguments.seconds:g}s each, "
            f"best of {arguments.rounds} alternating rounds"
        )
        best: dict[str, tuple] = {}
        ratios = []  # single / floor of each round: the two ran one after the other
        for _ in range(arguments.rounds):
            rates = {}
            for name, target, body, size in shapes:
                ok, failed, latencies = hammer(
                    target, key, body, arguments.seconds, arguments.clients
                )
                figures = (ok / arguments.seconds, failed, latencies, size)
                rates[name] = figures[0]
                if name not in best or figures[0] > best[name][0]:
                    best[name] = figures
            ratios.append(rates["single"] / rates["floor"] if rates["floor"] else 0.0)
        for name, (rate, failed, latencies, size) in best.items():
            print(
                f"{name:11} {rate:8.1f} requests/s {rate * size:10.0f} records/s "
                f"p50 {percentile(latencies, 50):6.0f} ms p99 {percentile(latencies, 99):6.0f} ms "
                f"({failed} refused)"
            )
        print(f"single-record intake = {best['single'][0] / best['floor'][0]:.2f}x the floor")
        # The issue's tail bar (p99 under 3x p50) beside the floor's own tail in the same run:
        # on a shared 2-core machine the bare insert misses it too, so the two read together.
        tails = {name: tail(best[name][2]) for name in ("single", "floor")}
        print(f"p99 / p50: single {tails['single']:.1f}x, floor {tails['floor']:.1f}x")
        # The machine's own speed drifts between rounds (a shared VM: the floor alone moved
        # 216-366 requests/s from one run to the next); each round's ratio shows how much.
        print(
            "per round: "
            + ", ".join(f"{ratio:.2f}x" for ratio in ratios)
            + f" (median {statistics.median(ratios):.2f}x)"
        )
    finally:
        stop(server)


if __name__ == "__main__":
    main()
