"""Database polling at scale: a legacy `tasks` table on PostgreSQL, claimed, answered by the
demo provider and written back.

    python bench/db_poll.py [--rows 100000] [--legacy-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Prints rows/second claimed (poll: select FOR UPDATE SKIP LOCKED, submit jobs, mark claimed) and
rows/second answered and written back through one worker (simple worker class).
"""

import argparse
import subprocess
import sys
import time
import uuid

import sqlalchemy as sa
from common import ROOT, prepare_environment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--legacy-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch-size", type=int, default=1000)
    arguments = parser.parse_args()
    environment = prepare_environment()

    from connectors import polling
    from connectors.models import Connector, Credential, FieldMapping, Job, Provider

    engine = sa.create_engine(arguments.legacy_url)
    metadata = sa.MetaData()
    table = sa.Table(
        f"bench_tasks_{uuid.uuid4().hex[:8]}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("body", sa.Text),
        sa.Column("ai_status", sa.String(20), index=True),
        sa.Column("ai_output", sa.Text),
    )
    metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            for start in range(0, arguments.rows, 10_000):
                connection.execute(
                    table.insert(),
                    [
                        {"id": n, "body": f"task {n}: summarise", "ai_status": "pending"}
                        for n in range(start, min(start + 10_000, arguments.rows))
                    ],
                )
        credential = Credential(name=f"bench-{table.name}", kind="database_url")
        credential.set_value(arguments.legacy_url)
        credential.save()
        provider, _ = Provider.objects.get_or_create(
            name="demo-db", defaults={"kind": "demo", "max_concurrency": 8}
        )
        connector = Connector.objects.create(
            name="bench db",
            slug=table.name.replace("_", "-"),
            provider=provider,
            prompt_template="Summarise: {{ body }}",
            source_kind="db_poll",
            source_config={
                "credential": credential.name,
                "table": table.name,
                "key_column": "id",
                "status_column": "ai_status",
            },
            sink_kind="db_update",
            batch_size=arguments.batch_size,
        )
        FieldMapping.objects.bulk_create(
            [
                FieldMapping(
                    connector=connector, direction="input", source_path="body", target_name="body"
                ),
                FieldMapping(
                    connector=connector,
                    direction="output",
                    source_path="text",
                    target_name="ai_output",
                ),
            ]
        )
        started = time.perf_counter()
        claimed = 0
        while count := polling.poll(connector):
            claimed += count
        claim_seconds = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "run_worker", "--burst"],
            env=environment,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        work_seconds = time.perf_counter() - started
        with engine.connect() as connection:
            done = connection.execute(
                sa.select(sa.func.count()).where(table.c.ai_status == "complete")
            ).scalar_one()
        assert claimed == done == arguments.rows, (claimed, done)
        assert Job.objects.filter(connector=connector, status="succeeded").count() == done
        print(f"{arguments.rows} rows on {engine.dialect.name}, batch {arguments.batch_size}")
        print(
            f"claimed and submitted: {claimed / claim_seconds:8.0f} rows/s ({claim_seconds:.1f} s)"
        )
        print(f"answered, written back: {done / work_seconds:8.0f} rows/s ({work_seconds:.1f} s)")
    finally:
        table.drop(engine)


if __name__ == "__main__":
    main()
