"""File drops: a folder the legacy system writes files into.

    <path>/            files arrive here (matching `pattern`, untouched for `settle_seconds`)
    <path>/processing/ a file is claimed by an atomic rename, then read row by row
    <path>/outbox/     the output: the original rows plus the AI columns, written to a temporary
                       name and renamed when complete; row errors go to <name>.errors.csv
    <path>/archive/    the original once its output is written (error/ if it could not be read)

Each row is a job whose idempotency key is the file's SHA-256 and the row number, so reading a
file again after a crash resumes it instead of duplicating it. The scan runs every poll interval
and, unless `"watch": false`, as soon as watchdog reports a new file (polling alone works on
network shares, where file-system events do not arrive).
"""

import csv
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from django.db import IntegrityError
from django.utils import timezone

from connectors.files.formats import FORMATS, FileFormat, UnreadableFile, Writer, read_rows
from connectors.files.spool import Spool
from connectors.models import FieldMapping, Job, SourceFile
from connectors.sources.base import Source, check_keys

logger = logging.getLogger(__name__)
FOLDERS = ("processing", "outbox", "archive", "error")
CHUNK = 500
OPTIONAL = {
    "pattern",
    "format",
    "delimiter",
    "encoding",
    "header",
    "record_element",
    "settle_seconds",
    "watch",
}


class FileDropSource(Source):
    kind = "file_drop"
    is_polled = True

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        check_keys(config, {"path"}, OPTIONAL)
        config = {"pattern": "*", "format": "csv", "settle_seconds": 2, **config}
        if config["format"] not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        if len(config.get("delimiter", ",")) != 1:
            raise ValueError("delimiter must be one character")
        try:
            "".encode(config.get("encoding", "utf-8"))
        except LookupError:
            raise ValueError(f"unknown encoding {config['encoding']!r}") from None
        if not Path(config["path"]).is_absolute():
            raise ValueError("path must be an absolute folder path")
        return config

    @property
    def folder(self) -> Path:
        return Path(self.config["path"])

    @property
    def file_format(self) -> FileFormat:
        return FileFormat.from_config(self.config)

    def prepare_folders(self) -> None:
        for name in FOLDERS:
            (self.folder / name).mkdir(parents=True, exist_ok=True)

    def poll(self, submit: Callable) -> int:
        self.prepare_folders()
        self.finish_files()
        submitted = 0
        reading = SourceFile.objects.filter(
            connector=self.connector, status=SourceFile.Status.READING
        )
        for source_file in reading:  # a poller died while reading: resume
            submitted += self.read(source_file, submit)
        for path in self.ready_files():
            source_file = self.claim(path)
            if source_file is not None:
                submitted += self.read(source_file, submit)
        return submitted

    def ready_files(self) -> list[Path]:
        settled_before = time.time() - float(self.config["settle_seconds"])
        candidates = [
            path
            for path in self.folder.glob(self.config["pattern"])
            if path.is_file()
            and not path.name.startswith(".")
            and path.stat().st_mtime <= settled_before
        ]
        return sorted(candidates, key=lambda path: path.stat().st_mtime)

    def claim(self, path: Path) -> SourceFile | None:
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S%f")
        claimed = self.folder / "processing" / f"{stamp}-{path.name}"
        try:
            os.rename(path, claimed)  # atomic: of two pollers, one wins
        except FileNotFoundError:
            return None
        digest, size = sha256_of(claimed)
        try:
            return SourceFile.objects.create(
                connector=self.connector, name=claimed.name, sha256=digest, size_bytes=size
            )
        except IntegrityError:
            os.rename(claimed, self.folder / "error" / f"{claimed.name}.duplicate")
            logger.warning("file %s is a duplicate of an earlier file; moved to error/", path.name)
            return None

    def paths(self, source_file: SourceFile) -> tuple[Path, Spool]:
        path = self.folder / "processing" / source_file.name
        return path, Spool(path.with_name(path.name + ".spool.sqlite3"))

    def read(self, source_file: SourceFile, submit: Callable) -> int:
        """Submit every row; rows that cannot be parsed or mapped are recorded, not dropped."""
        path, spool = self.paths(source_file)
        errors: list[tuple[int, int | None, str]] = []
        chunk, total, submitted = [], 0, 0

        def flush() -> int:
            rejected: list = []
            items = [
                {
                    "record": row.record,
                    "idempotency_key": f"{source_file.sha256}:{row.number}",
                    "source_reference": f"{source_file.name} row {row.number}",
                    "source_metadata": {"row": row.number, "spool": str(spool.path)},
                }
                for row in chunk
            ]
            submit(items, rejected=rejected, source_file_id=source_file.id)
            errors.extend(
                (chunk[r.index].number, chunk[r.index].line, r.error.message) for r in rejected
            )
            count = len(chunk) - len(rejected)
            chunk.clear()
            return count

        try:
            for row in read_rows(path, self.file_format, limit_bytes=source_file.size_bytes):
                total = row.number
                if row.error:
                    errors.append((row.number, row.line, row.error))
                    continue
                chunk.append(row)
                if len(chunk) >= CHUNK:
                    submitted += flush()
        except UnreadableFile as error:
            errors.append((total + 1, None, f"file: {error}"))
        if chunk:
            submitted += flush()
        spool.put_errors(errors)
        SourceFile.objects.filter(id=source_file.id).update(
            status=SourceFile.Status.RUNNING,
            rows_total=total,
            rows_rejected=len(errors),
            errors=[
                {"row": r, "line": line, "error": message} for r, line, message in errors[:100]
            ],
        )
        return submitted

    def finish_files(self) -> None:
        running = SourceFile.objects.filter(
            connector=self.connector, status=SourceFile.Status.RUNNING
        )
        for source_file in running:
            if (
                not Job.objects.filter(source_file=source_file)
                .exclude(status__in=Job.FINISHED)
                .exists()
            ):
                self.finish(source_file)

    def finish(self, source_file: SourceFile) -> None:
        """Every row has ended: write the output and the errors, archive the original."""
        path, spool = self.paths(source_file)
        ended_without_result = Job.objects.filter(
            source_file=source_file, status__in=[Job.Status.DEAD, Job.Status.CANCELLED]
        ).values_list("source_metadata", "error_message", "status")
        spool.put_errors(
            [
                (meta["row"], None, message or status)
                for meta, message, status in ended_without_result
            ]
        )
        grew = path.stat().st_size - source_file.size_bytes
        if grew > 0:
            spool.put_errors(
                [
                    (
                        source_file.rows_total + 1,
                        None,
                        f"file: it grew by {grew} bytes after it was claimed; those bytes "
                        "were not read (write files elsewhere, then move them in)",
                    )
                ]
            )
        output_name = source_file.name.split("-", 1)[1]
        self.write_output(path, spool, self.folder / "outbox" / output_name)
        self.write_errors(spool, self.folder / "outbox" / f"{output_name}.errors.csv")
        file_failed = (
            any(e.get("error", "").startswith("file:") for e in source_file.errors) or grew > 0
        )
        os.replace(path, self.folder / ("error" if file_failed else "archive") / source_file.name)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{spool.path}{suffix}").unlink(missing_ok=True)
        SourceFile.objects.filter(id=source_file.id).update(
            status=SourceFile.Status.FAILED if file_failed else SourceFile.Status.DONE,
            output_name=output_name,
            finished_at=timezone.now(),
        )

    def ai_columns(self) -> list[str]:
        names = list(
            self.connector.mappings.filter(direction=FieldMapping.Direction.OUTPUT).values_list(
                "target_name", flat=True
            )
        )
        if names:
            return names
        schema = self.connector.output_schema or {}
        return (
            list(schema.get("properties", {}))
            if self.connector.output_format == "json"
            else ["text"]
        )

    def write_output(self, path: Path, spool: Spool, target: Path) -> None:
        temporary = target.with_name(f".{target.name}.tmp")
        connection = spool.connect()
        try:
            with temporary.open("w", encoding=self.file_format.encoding, newline="") as handle:
                writer = Writer(handle, self.file_format, self.ai_columns())
                for row in read_rows(path, self.file_format, limit_bytes=None):
                    if row.error:
                        continue
                    result, error = spool.lookup(connection, row.number)
                    writer.write(row.record, {**(result or {}), "ai_error": error or None})
                writer.close()
        except UnreadableFile:
            pass  # the rows read before the fault are written; the fault is in the errors file
        finally:
            connection.close()
        os.replace(temporary, target)

    def write_errors(self, spool: Spool, target: Path) -> int:
        connection = spool.connect()
        try:
            errors = list(spool.errors(connection))
        finally:
            connection.close()
        if not errors:
            return 0
        temporary = target.with_name(f".{target.name}.tmp")
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row", "line", "error"])
            writer.writerows(errors)
        os.replace(temporary, target)
        return len(errors)

    def test_connection(self) -> str:
        folder = self.folder
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        try:
            self.prepare_folders()
            probe = folder / "processing" / ".interlock-probe"
            probe.write_text("probe")
            probe.unlink()
            waiting = len(self.ready_files())
        except OSError as error:
            raise ValueError(f"cannot read and write {folder}: {error.strerror}") from None
        return f"OK: {folder} can be read and written; {waiting} files waiting"


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
