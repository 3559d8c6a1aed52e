"""Write the result into the legacy row it came from, conditionally on the row still being
claimed, with the done status; a failed job sets the error status instead.

Its table, key and status settings default to those of the connector's db_poll source.
"""

import json

import sqlalchemy as sa

from connectors import legacy_db
from connectors.errors import ConfigError, SinkError
from connectors.plugins import CREDENTIAL, Setting
from connectors.sinks.base import Sink
from connectors.work import Delivery, WriteOutcome

MANAGED = ("key_column", "status_column", "claim_column", "error_column")


class DbUpdateSink(Sink):
    kind = "db_update"
    can_restore_tokens = True
    writes_in_batches = True
    settings = (
        Setting(
            "credential", CREDENTIAL, help="The database URL credential; default: the source's."
        ),
        Setting("table", help="Default: the source's table."),
        Setting("key_column", help="Default: the source's key column."),
        Setting("status_column", help="Default: the source's status column."),
        Setting("error_column", help="Default: the source's error column."),
        Setting("claim_column", help="Default: the source's claim column."),
        *legacy_db.STATUS_SETTINGS,
    )

    @classmethod
    def effective_config(cls, sink_config: dict, source_config: dict) -> dict:
        names = {setting.name for setting in cls.settings}
        inherited = {key: value for key, value in source_config.items() if key in names}
        return {**inherited, **sink_config}

    @classmethod
    def check_outputs(cls, config: dict, outputs: set[str]) -> None:
        """Only output-mapped, unmanaged columns are written: without output mappings the AI's
        JSON would name the columns, and a prompt injection could rewrite the row's key or
        status."""
        if not outputs:
            raise ValueError(
                "The db_update sink needs output mappings: they name the columns it may write."
            )
        managed = sorted(outputs & cls.managed_columns(config))
        if managed:
            raise ValueError(
                f"Output mappings may not write {', '.join(managed)}: the pipeline manages the "
                "key, status, claim and error columns."
            )

    @staticmethod
    def managed_columns(config: dict) -> set[str]:
        """Columns the pipeline manages; a result (an AI answer) must never set them."""
        return {config[name] for name in MANAGED if config.get(name)}

    def table(self) -> sa.Table:
        """Reflected once per sink instance (one per batch of jobs)."""
        if getattr(self, "_table", None) is None:
            self._table = self.reflect()
        return self._table

    def reflect(self) -> sa.Table:
        for key in ("credential", "table", "key_column", "status_column"):
            if not self.config.get(key) or (key == "credential" and key not in self._secrets):
                raise ConfigError(f"the db_update sink needs {key} (here or in a db_poll source)")
        engine = legacy_db.engine_for(self._secrets["credential"])
        try:
            return legacy_db.reflect(
                engine,
                self.config["table"],
                [self.config["key_column"], self.config["status_column"]],
            )
        except ValueError as error:
            raise ConfigError(str(error)) from None
        except sa.exc.SQLAlchemyError as error:
            raise SinkError(f"legacy database: {legacy_db.describe_error(error)}") from None

    def write(self, delivery: Delivery) -> WriteOutcome:
        outcome = self.write_many([delivery])[delivery.job_id]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def refusal(self, table: sa.Table, delivery: Delivery) -> SinkError | None:
        """Why this result cannot be written (one row's problem, not the batch's)."""
        protected = sorted(self.managed_columns(self.config) & set(delivery.result))
        if protected:
            return SinkError(
                f"the result would set {', '.join(protected)}, which the pipeline manages; "
                "only output-mapped data columns are written",
                permanent=True,
            )
        unknown = [name for name in delivery.result if name not in table.c]
        if unknown:
            return ConfigError(
                f"table {table.name!r} has no column {', '.join(map(repr, unknown))}; "
                "fix the output mapping"
            )
        return None

    def write_many(self, deliveries: list[Delivery]) -> dict:
        """All the rows in one legacy transaction, each conditional on still being claimed."""
        table = self.table()
        written: dict = {}
        for delivery in deliveries:
            if (refused := self.refusal(table, delivery)) is not None:
                written[delivery.job_id] = refused
        deliveries = [delivery for delivery in deliveries if delivery.job_id not in written]
        unclaimed = []
        try:
            with self.engine.begin() as connection:
                for delivery in deliveries:
                    values = {
                        name: json.dumps(value) if isinstance(value, dict | list) else value
                        for name, value in delivery.result.items()
                    }
                    values[self.config["status_column"]] = self.config["done_value"]
                    if connection.execute(self.claimed_row(table, delivery, values)).rowcount:
                        written[delivery.job_id] = WriteOutcome(self.target(delivery), "updated")
                    else:
                        unclaimed.append(delivery)
        except sa.exc.SQLAlchemyError as error:
            raise SinkError(f"legacy database: {legacy_db.describe_error(error)}") from None
        for delivery in unclaimed:
            written[delivery.job_id] = self.explain_unclaimed(table, delivery)
        return written

    def explain_unclaimed(self, table: sa.Table, delivery: Delivery):
        """A row the conditional update missed: already written (a retry), gone, or not ours."""
        target = self.target(delivery)
        current, claimed_by = self.current_state(table, delivery)
        if current == self.config["done_value"]:
            return WriteOutcome(target, "updated", detail="already written")
        if current is None:
            return SinkError(f"{target}: the row no longer exists", permanent=True)
        if current == self.config["claimed_value"] and claimed_by not in (None, delivery.job_id):
            return SinkError(f"{target}: the row is claimed by another job", permanent=True)
        return SinkError(f"{target}: the row is not claimed (status {current!r}); will retry")

    def target(self, delivery: Delivery) -> str:
        key = delivery.source_metadata.get("key")
        return f"{self.config['table']} {self.config['key_column']}={key}"

    @property
    def engine(self) -> sa.Engine:
        return legacy_db.engine_for(self._secrets["credential"])

    def claimed_row(self, table: sa.Table, delivery: Delivery, values: dict):
        """The row, only while claimed (and, with a claim column, claimed by this very job)."""
        config = self.config
        statement = (
            sa.update(table)
            .where(table.c[config["key_column"]] == delivery.source_metadata.get("key"))
            .where(table.c[config["status_column"]] == config["claimed_value"])
        )
        if config.get("claim_column"):
            statement = statement.where(table.c[config["claim_column"]] == delivery.job_id)
        return statement.values(values)

    def report_failure(self, delivery: Delivery, error: str) -> None:
        table = self.table()
        values = {self.config["status_column"]: self.config["error_value"]}
        if self.config.get("error_column"):
            values[self.config["error_column"]] = error[:1000]
        self.update(table, delivery, values)

    def update(self, table: sa.Table, delivery: Delivery, values: dict) -> int:
        try:
            with self.engine.begin() as connection:
                return connection.execute(self.claimed_row(table, delivery, values)).rowcount
        except sa.exc.SQLAlchemyError as error:
            raise SinkError(f"legacy database: {legacy_db.describe_error(error)}") from None

    def current_state(self, table: sa.Table, delivery: Delivery) -> tuple:
        """(status, claiming job id or None) of the row; (None, None) if it is gone."""
        config = self.config
        claim = config.get("claim_column")
        columns = [table.c[config["status_column"]]]
        if claim:
            columns.append(table.c[claim])
        query = sa.select(*columns).where(
            table.c[config["key_column"]] == delivery.source_metadata.get("key")
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None, None
        return row[0], (row[1] if claim else None)

    def test_connection(self) -> str:
        self.table()
        return f"OK: table {self.config['table']} found"
