"""Database polling: claim rows whose status column says `pending`, one batch per poll.

Order of a poll, so that a crash at any point loses nothing and doubles nothing:
1. select pending rows in a legacy transaction (FOR UPDATE SKIP LOCKED where the database has
   it: two pollers never see the same rows);
2. submit them as jobs, idempotency key = the row's primary key (a row submitted twice by a
   poller that crashed before step 3 maps to the same job);
3. mark them claimed, conditionally (`WHERE status = pending`: where SKIP LOCKED is missing,
   the second claimer updates nothing), writing the job id into `claim_column` if configured
   (the write-back then also requires that job id: only the claiming job writes), and commit.
A row the legacy system sets back to `pending` after its job finished is run again.
"""

import uuid
from collections.abc import Callable

import sqlalchemy as sa

from connectors import legacy_db
from connectors.plugins import CREDENTIAL, TEXT_LIST, Setting, SettingError
from connectors.sources.base import Source
from connectors.work import Submission


class DbPollSource(Source):
    kind = "db_poll"
    is_polled = True
    is_checked_on_save = True  # the admin refuses a table or column that does not exist
    form_tools_template = "admin/connectors/tools/db_schema.html"
    settings = (
        Setting(
            "credential",
            CREDENTIAL,
            required=True,
            help="The database URL credential.",
            credential_kinds=("database_url",),
        ),
        Setting("table", required=True, help="The legacy table to poll."),
        Setting("key_column", required=True, help="Its primary key column."),
        Setting("status_column", required=True, help="The column that says pending/done."),
        *legacy_db.STATUS_SETTINGS,
        Setting("columns", TEXT_LIST, help="Columns to read; empty reads them all."),
        Setting("error_column", help="Where a failed job's error message goes."),
        Setting("claim_column", help="Where the claiming job's id goes (only it may write)."),
    )

    @classmethod
    def check(cls, config: dict) -> None:
        values = [config[setting.name] for setting in legacy_db.STATUS_SETTINGS]
        if len(set(values)) != len(values):
            raise SettingError(
                "pending_value", "pending, claimed, done and error values must all differ"
            )

    @property
    def engine(self) -> sa.Engine:
        return legacy_db.engine_for(self._secrets["credential"])

    def table(self) -> sa.Table:
        config = self.config
        wanted = [
            config["key_column"],
            config["status_column"],
            config.get("error_column", ""),
            config.get("claim_column", ""),
        ]
        return legacy_db.reflect(self.engine, config["table"], wanted + config.get("columns", []))

    def poll(self, submit: Callable) -> int:
        config, table = self.config, self.table()
        key, status = table.c[config["key_column"]], table.c[config["status_column"]]
        columns = [table.c[name] for name in config.get("columns", [])] or list(table.c)
        if key not in columns:
            columns.append(key)
        query = (
            sa.select(*columns)
            .where(status == config["pending_value"])
            .order_by(key)
            .limit(self.connector.batch_size)
        )
        if legacy_db.supports_skip_locked(self.engine):
            query = query.with_for_update(skip_locked=True)
        with self.engine.begin() as connection:
            rows = [legacy_db.json_safe(dict(row)) for row in connection.execute(query).mappings()]
            if not rows:
                return 0
            rejected, accepted = submit_rows(submit, rows, config)
            if config.get("claim_column"):
                for row_key, job_id in accepted.items():  # each row records its job
                    self.mark(connection, table, [row_key], config["claimed_value"], job_id=job_id)
            else:
                self.mark(connection, table, list(accepted), config["claimed_value"])
            for row_key, message in rejected:
                self.mark(connection, table, [row_key], config["error_value"], message)
        return len(accepted)

    def mark(
        self, connection, table, keys: list, value: str, message: str = "", job_id: str = ""
    ) -> None:
        if not keys:
            return
        config = self.config
        values = {config["status_column"]: value}
        if job_id:
            values[config["claim_column"]] = job_id
        if message and config.get("error_column"):
            values[config["error_column"]] = message[:1000]
        connection.execute(
            sa.update(table)
            .where(table.c[config["key_column"]].in_(keys))
            .where(table.c[config["status_column"]] == config["pending_value"])
            .values(values)
        )

    def check_on_save(self) -> None:
        self.test_connection()

    def test_connection(self) -> str:
        try:
            table = self.table()
            with self.engine.connect() as connection:
                pending = connection.execute(
                    sa.select(sa.func.count()).where(
                        table.c[self.config["status_column"]] == self.config["pending_value"]
                    )
                ).scalar_one()
        except sa.exc.SQLAlchemyError as error:
            raise ValueError(
                f"cannot reach the database: {legacy_db.describe_error(error)}"
            ) from None
        return f"OK: table {table.name} found with its columns; {pending} rows pending"


def submit_rows(submit: Callable, rows: list[dict], config: dict):
    """Submit rows as jobs; re-run rows whose earlier job already finished (reset by legacy)."""
    from connectors.models import Job  # models sit below sources; imported late for the registry

    key_column = config["key_column"]

    def submission(row: dict, suffix: str = "") -> Submission:
        return Submission(
            record=row,
            idempotency_key=f"row:{row[key_column]}{suffix}",
            source_reference=f"{config['table']} {key_column}={row[key_column]}",
            source_metadata={"key": row[key_column]},
        )

    rejected_errors: list = []
    results = submit([submission(row) for row in rows], rejected=rejected_errors)
    rejected_keys = {rows[r.index][key_column]: r.error.message for r in rejected_errors}
    accepted_rows = [row for row in rows if row[key_column] not in rejected_keys]
    rerun = [
        row
        for row, (job, is_new) in zip(accepted_rows, results, strict=True)
        if not is_new and job.status in Job.FINISHED
    ]
    job_ids = {
        row[key_column]: str(job.id) for row, (job, _) in zip(accepted_rows, results, strict=True)
    }
    if rerun:
        again = submit([submission(row, f":{uuid.uuid4().hex[:12]}") for row in rerun], rejected=[])
        job_ids |= {
            row[key_column]: str(job.id) for row, (job, _) in zip(rerun, again, strict=True)
        }
    return list(rejected_keys.items()), job_ids
