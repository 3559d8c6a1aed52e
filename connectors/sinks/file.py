"""The file sink: each job's result goes to its file's spool; when every row of the file has
ended, the file_drop source writes the output file into outbox/ (see sources/file_drop.py)."""

from pathlib import Path

from connectors.errors import ConfigError
from connectors.files.spool import Spool
from connectors.sinks.base import Sink
from connectors.work import Delivery, WriteOutcome


class FileSink(Sink):
    kind = "file"
    can_restore_tokens = True  # the output file goes back to the legacy system

    def spool(self, delivery: Delivery) -> tuple[Spool, int]:
        metadata = delivery.source_metadata
        if "spool" not in metadata or "row" not in metadata:
            raise ConfigError("the file sink needs a file_drop source")
        return Spool(Path(metadata["spool"])), int(metadata["row"])

    def write(self, delivery: Delivery) -> WriteOutcome:
        spool, row = self.spool(delivery)
        spool.put_result(row, delivery.result)
        return WriteOutcome(target=f"{spool.path.name} row {row}", status="spooled")

    def report_failure(self, delivery: Delivery, error: str) -> None:
        spool, row = self.spool(delivery)
        spool.put_errors([(row, None, error)])
