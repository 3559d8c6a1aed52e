"""The legacy database, through SQLAlchemy Core: engines, reflection, quoting; never SQL strings.

Table and column names come from the admin; they are checked against the database's real schema
(reflection) and always used through Table/Column objects, so they are quoted by the dialect.
"""

import json
import re
from functools import cache
from typing import Any

import sqlalchemy as sa

from connectors.plugins import Setting

SKIP_LOCKED_DIALECTS = {"postgresql", "mysql", "mariadb", "oracle"}
DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


# The status values a polled table moves through; shared by the db_poll source and the db_update
# sink, which inherits them from its source.
STATUS_SETTINGS = (
    Setting("pending_value", default="pending", help="Status of rows waiting for the AI."),
    Setting("claimed_value", default="processing", help="Status while a job holds the row."),
    Setting("done_value", default="complete", help="Status once the answer is written."),
    Setting("error_value", default="error", help="Status when the job ended without an answer."),
)


def normalise_url(url: str) -> str:
    """Accept the common short schemes (postgres://, mysql://) and pick the installed driver."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError("the database URL must look like dialect://user:password@host/name")
    return f"{DRIVERS.get(scheme, scheme)}://{rest}"


@cache
def engine_for(url: str) -> sa.Engine:
    try:
        return sa.create_engine(normalise_url(url), pool_pre_ping=True)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as error:
        raise ValueError(f"cannot use this database URL: {type(error).__name__}") from None


def reflect(engine: sa.Engine, table_name: str, columns: list[str]) -> sa.Table:
    """The table as the database describes it; ValueError naming what does not exist."""
    try:
        table = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise ValueError(f"the database has no table {table_name!r}") from None
    missing = [name for name in columns if name and name not in table.c]
    if missing:
        raise ValueError(f"table {table_name!r} has no column {', '.join(map(repr, missing))}")
    return table


MAX_LISTED = 500  # names shown in the admin's dropdowns


def table_names(engine: sa.Engine) -> list[str]:
    """The database's tables, sorted, at most MAX_LISTED (for the admin's dropdowns)."""
    return sorted(sa.inspect(engine).get_table_names())[:MAX_LISTED]


def column_names(engine: sa.Engine, table_name: str) -> list[str]:
    """The table's columns in their order; ValueError when there is no such table."""
    return list(reflect(engine, table_name, []).c.keys())[:MAX_LISTED]


def supports_skip_locked(engine: sa.Engine) -> bool:
    return engine.dialect.name in SKIP_LOCKED_DIALECTS


def json_safe(value: Any) -> Any:
    """Row values (Decimal, datetime, bytes…) as JSON values."""
    return json.loads(json.dumps(value, default=str))


QUOTED = re.compile(r"""'[^']*'|"[^"]*"|`[^`]*`""")


def describe_error(error: Exception) -> str:
    """A driver error without its parameters or the URL (a password), and without anything it
    quotes: drivers quote the offending value ("invalid input syntax for type integer: "SSN
    219-09-9999"", "Duplicate entry 'jane@example.com'"), and that value may be PII."""
    if not isinstance(error, sa.exc.DBAPIError):
        return type(error).__name__
    original = error.orig
    code = getattr(original, "sqlstate", None) or getattr(original, "sqlite_errorname", None)
    if code is None and original.args and isinstance(original.args[0], int):
        code = original.args[0]  # MySQL/MariaDB error number
    first_line = (str(original).splitlines() or [""])[0]
    message = QUOTED.sub("…", first_line)[:200]
    return f"{type(original).__name__}" + (f" ({code})" if code else "") + f": {message}"
