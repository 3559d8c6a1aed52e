"""The legacy databases of the polling tests: SQLite always, PostgreSQL and MariaDB on loopback.

Locally a server that is not running skips its tests with the reason; under CI=true that skip is
a failure, because CI has the servers and a silent skip would hide a broken claim.
"""

import os
import uuid

import pytest
import sqlalchemy as sa

from connectors import legacy_db

SERVER_URLS = {
    "postgresql": os.environ.get(
        "LEGACY_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("LEGACY_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


def server_url(name: str) -> str:
    url = SERVER_URLS[name]
    try:
        with sa.create_engine(url).connect():
            pass
    except sa.exc.OperationalError as error:
        reason = f"{name} is not reachable at {url}: {type(error.orig).__name__}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must test against {name}, but {reason}")
        pytest.skip(reason)
    return url


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def legacy_url(request, tmp_path):
    """A database URL; each test gets its own table names, dropped afterwards."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'legacy.sqlite3'}"
    return server_url(request.param)


def create_tasks_table(url: str, rows: int, *, name: str | None = None) -> sa.Table:
    """The classic polling scenario: tasks(id, title, body, ai_status, ai_output, ai_error,
    ai_job)."""
    name = name or f"tasks_{uuid.uuid4().hex[:8]}"
    engine = legacy_db.engine_for(url)
    metadata = sa.MetaData()
    table = sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("title", sa.String(200)),
        sa.Column("body", sa.Text),
        sa.Column("ai_status", sa.String(20), index=True),
        sa.Column("ai_output", sa.Text),
        sa.Column("ai_error", sa.Text),
        sa.Column("ai_job", sa.String(64)),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        if rows:
            connection.execute(
                table.insert(),
                [
                    {"id": n, "title": f"task {n}", "body": f"body {n}", "ai_status": "pending"}
                    for n in range(1, rows + 1)
                ],
            )
    return table


def drop(url: str, table: sa.Table) -> None:
    table.drop(legacy_db.engine_for(url), checkfirst=True)
