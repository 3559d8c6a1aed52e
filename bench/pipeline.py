"""End-to-end overhead per record through one worker, with the demo provider or any kind's
local test server (the one the tests use, speaking the vendor's wire format).

    python bench/pipeline.py [--records 2000] [--latency-ms 0] [--concurrency 8] [--one-per-request]
                             [--kind demo|openai|anthropic|bedrock|…] [--budget]
    python bench/pipeline.py --webhooks [--records 300] [--latency-ms 100] [--concurrency 8]

--webhooks sends single-record webhooks end to end instead, through gunicorn, a running worker
and the demo provider (bench/end_to_end.py).

Rates are measured from the first claim to the last finish (the worker process's start-up is
excluded; the wall time including it is printed too). With --latency-ms 0 the AI answers
instantly, so records/second is the console's own overhead
(claim, run, record, audit) for each worker class and batch size. With a latency L and provider
concurrency C it also prints the share of the ideal C/L that one worker reaches.
"""

import argparse
import subprocess
import sys
import time

import kinds
from common import ROOT, make_demo_connector, prepare_environment

SHAPES = "fork:1,simple:1,fork:20,simple:20,simple:100"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, help="default 2000 (300 with --webhooks)")
    parser.add_argument("--latency-ms", type=float, help="default 0 (100 with --webhooks)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--shapes", default=SHAPES, help="worker-class:batch-size, comma-separated")
    parser.add_argument(
        "--one-per-request",
        action="store_true",
        help="submit each record on its own, as single-record webhooks do (one RQ job each)",
    )
    parser.add_argument(
        "--kind",
        default="demo",
        help=f"demo (no server) or a kind's test server: {', '.join(kinds.kinds())}",
    )
    parser.add_argument(
        "--budget",
        action="store_true",
        help="give each connector a day budget no record exhausts: every call reserves and settles",
    )
    parser.add_argument(
        "--webhooks",
        action="store_true",
        help="single-record webhooks through gunicorn and a running worker (bench/end_to_end.py)",
    )
    arguments = parser.parse_args()
    if arguments.webhooks:
        import end_to_end

        arguments.records = arguments.records or 300
        arguments.latency_ms = 100 if arguments.latency_ms is None else arguments.latency_ms
        arguments.clients, arguments.lone, arguments.batch_size = 8, 20, 100
        end_to_end.run(arguments)
        return
    arguments.records = arguments.records or 2000
    arguments.latency_ms = arguments.latency_ms or 0
    environment = prepare_environment()
    environment["OUTBOUND_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    server = None if arguments.kind == "demo" else kinds.start(arguments.kind, arguments.latency_ms)
    try:
        run(arguments, environment, server)
    finally:
        if server is not None:
            server.close()


def run(arguments, environment: dict, server) -> None:

    from django.db.models import Max, Min

    from connectors import audit, jobs
    from connectors.models import Budget, Job
    from connectors.work import Submission

    ideal = arguments.concurrency * 1000 / arguments.latency_ms if arguments.latency_ms else None
    print(
        f"{arguments.kind} provider, latency {arguments.latency_ms:g} ms, "
        f"concurrency {arguments.concurrency}"
        + (", under a budget" if arguments.budget else "")
        + (f", ideal C/L = {ideal:.0f} records/s" if ideal else "")
        + (", one record per request" if arguments.one_per_request else "")
    )
    print(
        f"{'worker':8} {'batch':>5} {'records':>8} {'wall s':>7} {'busy s':>7} "
        f"{'records/s':>10} {'of C/L':>7}"
    )
    for shape in arguments.shapes.split(","):
        worker_class, batch_size = shape.split(":")[0], int(shape.split(":")[1])
        slug = f"bench-{worker_class}-{batch_size}-{time.monotonic_ns()}"
        if server is None:
            connector = make_demo_connector(
                slug,
                batch_size=batch_size,
                concurrency=arguments.concurrency,
                latency_ms=arguments.latency_ms,
            )
        else:
            connector = kinds.make_connector(
                slug, server, batch_size=batch_size, concurrency=arguments.concurrency
            )
        if arguments.budget:
            Budget.objects.create(connector=connector, period="day", max_tokens=10**12)
        submissions = [Submission({"text": f"record {n}"}) for n in range(arguments.records)]
        step = 1 if arguments.one_per_request else 1000
        for start in range(0, len(submissions), step):
            jobs.submit(connector, submissions[start : start + step], audit.Actor.system("bench"))
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "run_worker",
                "--burst",
                "--worker-class",
                worker_class,
            ],
            env=environment,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - started
        finished = Job.objects.filter(connector=connector, status=Job.Status.SUCCEEDED)
        done = finished.count()
        # From the first claim to the last finish: the worker's start-up is not the pipeline.
        span = finished.aggregate(first=Min("attempt_rows__started_at"), last=Max("finished_at"))
        seconds = (span["last"] - span["first"]).total_seconds()
        assert done == arguments.records, f"only {done} of {arguments.records} succeeded"
        rate = done / seconds
        share = f"{rate / ideal:6.0%}" if ideal else "      -"
        print(
            f"{worker_class:8} {batch_size:>5} {done:>8} {wall:>7.2f} {seconds:>7.2f} "
            f"{rate:>10.1f} {share:>7}"
        )


if __name__ == "__main__":
    main()
