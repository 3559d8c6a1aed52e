"""A file's results while its rows are processed: one SQLite file beside it in processing/.

Workers write each row's result (or error) as its job ends; INSERT OR REPLACE keyed by row
number makes a delivery repeated after a crash land once. When every row has ended, the merge
streams the original file and looks each row up here, so memory stays flat.
"""

import errno
import json
import os
import sqlite3
from pathlib import Path

from connectors.files.formats import irregularity

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (row INTEGER PRIMARY KEY, result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS errors (row INTEGER PRIMARY KEY, line INTEGER, message TEXT NOT NULL);
"""


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> sqlite3.Connection:
        # processing/ is in the shared folder: SQLite must not write through a planted link.
        for name in (f"{self.path}{suffix}" for suffix in ("", "-wal", "-shm")):
            try:
                kind = irregularity(os.lstat(name))
            except FileNotFoundError:
                continue
            if kind:
                message = f"not a regular file ({kind}); the spool is not opened"
                raise OSError(errno.EPERM, message, name)
        connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(SCHEMA)
        return connection

    def put_result(self, row: int, result: dict) -> None:
        with self.connect() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO results (row, result) VALUES (?, ?)",
                (row, json.dumps(result, ensure_ascii=False)),
            )
        connection.close()

    def put_errors(self, errors: list[tuple[int, int | None, str]]) -> None:
        connection = self.connect()
        try:
            connection.execute("BEGIN")
            connection.executemany(
                "INSERT OR REPLACE INTO errors (row, line, message) VALUES (?, ?, ?)", errors
            )
            connection.execute("COMMIT")
        finally:
            connection.close()

    def lookup(self, connection: sqlite3.Connection, row: int) -> tuple[dict | None, str]:
        found = connection.execute("SELECT result FROM results WHERE row = ?", (row,)).fetchone()
        if found:
            return json.loads(found[0]), ""
        error = connection.execute("SELECT message FROM errors WHERE row = ?", (row,)).fetchone()
        return None, error[0] if error else "no result"

    def errors(self, connection: sqlite3.Connection):
        return connection.execute("SELECT row, line, message FROM errors ORDER BY row")
