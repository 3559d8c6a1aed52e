"""The admin's list pages at 100,000 jobs on PostgreSQL: server-side rendering time per page.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jobsview python bench/admin_lists.py \
        [--jobs 100000] [--repeat 5] [--keep]

Fills the database (COPY, a few seconds) with jobs across several connectors (two share a name,
as an imported copy keeps its source's), their attempt rows and three audit events per job,
then renders the job list (first page, page 20, each filter, a search by source reference),
the audit log, the connector list and the dashboard through Django's test Client as a
logged-in superuser, and prints p50 and max milliseconds per page, and the p50 CPU time of this
process (Python's share without PostgreSQL's; on a loaded machine it moves less than the wall
clock). `--keep` reuses the rows of an earlier run of the same size.
"""

import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal

from common import prepare_environment

CONNECTORS = [
    ("Invoices", "invoices"),
    ("Invoices", "invoices-imported"),  # an imported copy keeps its source's name
    ("Claims triage", "claims"),
    ("Support tickets", "tickets"),
    ("ERP comments", "erp-comments"),
]
STATUSES = [("succeeded", 90), ("dead", 4), ("failed", 3), ("queued", 2), ("awaiting_review", 1)]
ERRORS = ["provider_error", "timeout", "invalid_output", "sink_error", "rate_limited"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="reuse the rows of an earlier run")
    arguments = parser.parse_args()
    prepare_environment()
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL database: the budget is for PostgreSQL.")
    from connectors.models import Job

    if not (arguments.keep and Job.objects.count() == arguments.jobs):
        started = time.perf_counter()
        fill(arguments.jobs)
        print(f"filled {arguments.jobs:,} jobs in {time.perf_counter() - started:.1f} s")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # as autovacuum would have, after a day of jobs
    measure(pages(), arguments.repeat)


def fill(count: int) -> None:
    """Jobs, attempts and audit events, written with COPY."""
    from django.db import connection
    from django.utils import timezone

    from connectors.models import AuditChainHead, AuditEvent, Connector, Job, JobAttempt, Provider

    with connection.cursor() as cursor:
        tables = ", ".join(
            connection.ops.quote_name(model._meta.db_table)
            for model in (AuditEvent, AuditChainHead, JobAttempt, Job, Connector, Provider)
        )
        cursor.execute(f"TRUNCATE {tables} CASCADE")  # our own table names
    provider = Provider.objects.create(name="bench-demo", kind="demo", currency="EUR")
    connectors = [
        Connector.objects.create(name=name, slug=slug, provider=provider, prompt_template="{{ x }}")
        for name, slug in CONNECTORS
    ]
    random.seed(13)
    now = timezone.now()
    statuses = [status for status, weight in STATUSES for _ in range(weight)]
    jobs, attempts, events = [], [], []
    for number in range(count):
        connector = connectors[number % len(connectors)]
        status = random.choice(statuses)
        # A week of jobs, a fifth of them in one busy minute an hour ago.
        if number % 5 == 0:
            created = now - timedelta(hours=1, seconds=random.uniform(0, 60))
        else:
            created = now - timedelta(seconds=random.uniform(0, 7 * 86400))
        ai_ms = random.randint(80, 900)
        finished = created + timedelta(milliseconds=ai_ms + 40)
        failed = status in ("dead", "failed")
        error = random.choice(ERRORS) if failed else ""
        tries = 2 if failed else 1
        job = Job(
            id=uuid.uuid4(),
            connector=connector,
            idempotency_key=f"key-{number}",
            source_reference=f"{connector.slug}:{number}",
            status=status,
            attempts=tries if status != "queued" else 0,
            input_data={"text": f"record {number} for <PERSON_1>"},
            redaction_hits={"PERSON": 1},
            prompt=f"Summarise: record {number} for <PERSON_1>",
            provider_name=provider.name,
            model="demo-1",
            ai_output='{"summary": "ok"}' if not failed else "",
            output={"summary": "ok"} if not failed else None,
            result={"summary": "ok"} if not failed else None,
            error_code=error,
            error_message=f"{error}: bench" if error else "",
            tokens_in=120,
            tokens_out=30,
            cost=Decimal("0.000120"),
            queue_wait_ms=5,
            ai_ms=ai_ms,
            write_ms=12,
            created_at=created,
            enqueued_at=created,
            started_at=created if status != "queued" else None,
            finished_at=finished if status in ("succeeded", "dead") else None,
        )
        jobs.append(job)
        if status != "queued":
            for attempt in range(1, tries + 1):
                last = attempt == tries
                attempts.append(
                    JobAttempt(
                        job=job,
                        number=attempt,
                        outcome="succeeded" if last and not failed else "failed",
                        worker="bench",
                        started_at=created,
                        finished_at=finished,
                        queue_wait_ms=5,
                        ai_ms=ai_ms,
                        write_ms=12,
                        provider_name=provider.name,
                        model="demo-1",
                        tokens_in=60,
                        tokens_out=15,
                        cost=Decimal("0.000060"),
                        error_code=error if failed else "",
                    )
                )
        for action in ("job.created", "job.started", f"job.{status}"):
            events.append(
                AuditEvent(
                    sequence=len(events) + 1,
                    created_at=created,
                    actor_type="system",
                    actor="bench",
                    action=action,
                    object_type="job",
                    object_id=str(job.id),
                    object_repr=f"{connector.slug}/{job.id}",
                    connector=connector.slug,
                    changes={"attempt": 1},
                    previous_hash="0" * 64,
                    hash="0" * 64,
                )
            )
    copy_rows(Job, jobs)
    copy_rows(JobAttempt, attempts)
    copy_rows(AuditEvent, events)
    # The chain head follows the copied events (their hashes are not a valid chain: the audit
    # page says so, after verifying only what a page verifies).
    AuditChainHead.objects.update_or_create(pk=1, defaults={"sequence": len(events)})


def copy_rows(model, objects: list) -> None:
    """COPY the objects' rows, every concrete column (auto ids left to the database)."""
    from django.db import connection

    fields = [f for f in model._meta.concrete_fields if not f.primary_key or f.name == "id"]
    fields = [f for f in fields if f.get_internal_type() not in ("AutoField", "BigAutoField")]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for obj in objects:
            prepared = (
                field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields
            )
            copy.write_row(list(prepared))


def pages() -> list[tuple[str, str]]:
    from connectors.models import Connector

    pk = Connector.objects.get(slug="claims").pk
    jobs = "/admin/connectors/job/"
    return [
        ("job list, first page", jobs),
        ("job list, page 20", f"{jobs}?p=20"),
        ("job list, status = dead", f"{jobs}?status__exact=dead"),
        ("job list, connector", f"{jobs}?connector__id__exact={pk}"),
        ("job list, error code", f"{jobs}?error_code=timeout"),
        ("job list, dead of a connector", f"{jobs}?status__exact=dead&connector__id__exact={pk}"),
        ("job list, created today", f"{jobs}?{since_days(0)}"),
        ("job list, created in the past 7 days", f"{jobs}?{since_days(6)}"),
        ("job list, search by source reference", f"{jobs}?q=claims:4242"),
        ("audit log, first page", "/admin/connectors/auditevent/"),
        ("audit log, action filter", "/admin/connectors/auditevent/?action=job.dead"),
        ("connector list", "/admin/connectors/connector/"),
        ("dashboard, day", "/admin/?window=day"),
        ("dashboard, week", "/admin/?window=week"),
    ]


def since_days(days: int) -> str:
    """The created-at filter's own links (Today, Past 7 days): a range on the indexed column."""
    from urllib.parse import urlencode

    from django.utils import timezone

    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = today - timedelta(days=days), today + timedelta(days=1)
    return urlencode({"created_at__gte": str(start), "created_at__lt": str(end)})


def measure(pages: list[tuple[str, str]], repeat: int) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-admin").first()
    user = user or user_model.objects.create_superuser("bench-admin", "b@example.com", "x" * 20)
    client = Client()
    client.force_login(user)
    print(f"{'page':<40} {'p50 ms':>8} {'max ms':>8} {'p50 CPU ms':>11}")
    for name, url in pages:
        timings, cpu = [], []
        for _ in range(repeat + 1):  # the first request warms caches and is not counted
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            if response.status_code != 200:
                sys.exit(f"{url} answered {response.status_code}")
        p50, worst = statistics.median(timings[1:]), max(timings[1:])
        print(f"{name:<40} {p50:>8.0f} {worst:>8.0f} {statistics.median(cpu[1:]):>11.0f}")


if __name__ == "__main__":
    main()
