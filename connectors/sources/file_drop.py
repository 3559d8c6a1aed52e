"""File drops: a folder the legacy system writes files into.

    <path>/            files arrive here (matching `pattern`, untouched for `settle_seconds`)
    <path>/processing/ a file is claimed by an atomic rename, then read row by row
    <path>/outbox/     the output: the original rows plus the AI columns, written to a temporary
                       name and renamed when complete; row errors go to <name>.errors.csv
    <path>/archive/    the original once its output is written (error/ if it could not be read)

Only regular files with one name are read. A symbolic link, a hard link, a named pipe, a socket or
a device matching the pattern is moved, as it is and unread, to error/ and recorded as a failed
file: whoever can write the folder must not make the poller read what it points to. Folders are
left where they are (the default pattern matches them all; one may be another connector's).

Each row is a job whose idempotency key is the file's SHA-256 and the row number, so reading a
file again after a crash resumes it instead of duplicating it. The scan runs every poll interval
and, unless `"watch": false`, as soon as watchdog reports a new file (polling alone works on
network shares, where file-system events do not arrive).
"""

import csv
import fnmatch
import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from django.db import IntegrityError, InterfaceError, OperationalError
from django.utils import timezone

from connectors.files.formats import (
    FORMATS,
    FileFormat,
    NotRegularFile,
    UnreadableFile,
    Writer,
    irregularity,
    open_regular,
    read_rows,
)
from connectors.files.spool import Spool
from connectors.models import FieldMapping, Job, SourceFile
from connectors.plugins import BOOLEAN, NUMBER, PATH, Setting, SettingError
from connectors.sources.base import Source
from connectors.work import Submission

SPOOL_SUFFIXES = (".spool.sqlite3", ".spool.sqlite3-wal", ".spool.sqlite3-shm")

logger = logging.getLogger(__name__)
FOLDERS = ("processing", "outbox", "archive", "error")
CHUNK = 500
SCAN_LIMIT = 10_000  # entries the admin's folder view reads at most


def entry_type(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder (left alone)"
    return "not a regular file (moved to error/ unread)"


class FileDropSource(Source):
    kind = "file_drop"
    is_polled = True
    form_tools_template = "admin/connectors/tools/folder_contents.html"
    settings = (
        Setting("path", PATH, required=True, help="The absolute folder the legacy system writes."),
        Setting("pattern", default="*", help="Which file names to take, e.g. *.csv."),
        Setting("format", default="csv", choices=FORMATS, help="How the files are written."),
        Setting("delimiter", help="CSV: the one character between fields (default ,)."),
        Setting("encoding", help="The files' text encoding (default utf-8)."),
        Setting("header", BOOLEAN, help="CSV: the first line names the columns (default true)."),
        Setting("record_element", help="XML: the element that holds one record."),
        Setting(
            "settle_seconds",
            NUMBER,
            default=2,
            minimum=0,
            help="A file is taken once it has not changed for this long.",
        ),
        Setting("watch", BOOLEAN, help="React to new files at once (default true; off on shares)."),
    )

    @classmethod
    def check(cls, config: dict) -> None:
        if len(config.get("delimiter", ",")) != 1:
            raise SettingError("delimiter", "delimiter must be one character")
        try:
            "".encode(config.get("encoding", "utf-8"))
        except LookupError:
            raise SettingError("encoding", f"unknown encoding {config['encoding']!r}") from None
        if not Path(config["path"]).is_absolute():
            raise SettingError("path", "path must be an absolute folder path")

    @classmethod
    def folder_contents(cls, path: str, pattern: str, limit: int = 50) -> dict:
        """What the poller would see in the folder (for the admin): at most `limit` entries,
        newest first, from at most SCAN_LIMIT scanned; OSError when it cannot be read."""
        entries, scanned = [], 0
        with os.scandir(path) as listing:
            for entry in listing:
                scanned += 1
                if scanned > SCAN_LIMIT:
                    break
                if entry.name.startswith(".") or entry.name in FOLDERS:
                    continue
                status = entry.stat(follow_symlinks=False)
                entries.append(
                    {
                        "name": entry.name,
                        "size": status.st_size,
                        "modified": status.st_mtime,
                        "type": entry_type(status.st_mode),
                        "matches": fnmatch.fnmatchcase(entry.name, pattern or "*"),
                    }
                )
        entries.sort(key=lambda item: item["modified"], reverse=True)
        return {
            "entries": entries[:limit],
            "total": len(entries),
            "complete": scanned <= SCAN_LIMIT,
        }

    @classmethod
    def watched_folder(cls, config: dict) -> str | None:
        return config["path"] if config.get("watch", True) and config.get("path") else None

    @property
    def folder(self) -> Path:
        return Path(self.config["path"])

    @property
    def file_format(self) -> FileFormat:
        return FileFormat.from_config(self.config)

    def prepare_folders(self) -> None:
        for name in FOLDERS:
            folder = self.folder / name
            # Outputs take the dropped file's name: were outbox/ a link, whoever can write the
            # share would choose where they are written.
            if folder.is_symlink():
                raise ValueError(f"{folder} is a symbolic link; it must be a real folder")
            folder.mkdir(parents=True, exist_ok=True)

    def poll(self, submit: Callable) -> int:
        """Runs under the connector's poll lock (connectors.polling): one poller at a time."""
        self.prepare_folders()
        self.finish_files()
        self.return_orphans()
        submitted = 0
        reading = SourceFile.objects.filter(
            connector=self.connector, status=SourceFile.Status.READING
        )
        for source_file in reading:  # a poller died while reading: resume
            submitted += self.read_or_give_up(source_file, submit)
        for path in self.ready_files():
            source_file = self.claim(path)
            if source_file is not None:
                submitted += self.read_or_give_up(source_file, submit)
        return submitted

    def read_or_give_up(self, source_file: SourceFile, submit: Callable) -> int:
        """A file whose reading fails unexpectedly goes to error/; left in processing/, it would
        fail every poll again and the connector's later files would never be read."""
        try:
            return self.read(source_file, submit)
        except (OperationalError, InterfaceError):
            raise  # the database is unreachable, not the file bad: the next poll resumes it
        except Exception as error:
            logger.exception("reading file %s failed", source_file.name)
            reason = f"{type(error).__name__}: {error}"[:300]
            self.give_up(source_file, f"file: reading it failed unexpectedly: {reason}")
            return 0

    def return_orphans(self) -> None:
        """A file moved to processing/ whose row was never written (the database failed, or the
        poller died, between the two) goes back to the folder to be claimed again."""
        known = set(
            SourceFile.objects.filter(connector=self.connector).values_list("name", flat=True)
        )
        for path in (self.folder / "processing").iterdir():
            if path.name.startswith(".") or path.name.endswith(SPOOL_SUFFIXES):
                continue
            if path.name not in known and "-" in path.name:
                original = self.folder / path.name.split("-", 1)[1]
                if not original.exists():
                    os.rename(path, original)
                    logger.warning("file %s was claimed but never read; put back", original.name)

    def ready_files(self) -> list[Path]:
        """Settled entries matching the pattern, oldest first; folders aside, not only regular
        files: claim() moves the others to error/."""
        settled_before = time.time() - float(self.config["settle_seconds"])
        candidates = []
        for path in self.folder.glob(self.config["pattern"]):
            if path.name.startswith(".") or path.parent != self.folder or path.name in FOLDERS:
                continue  # hidden, ours, or inside processing/, archive/, … (a pattern like **/*)
            try:
                status = path.lstat()  # the entry itself: a link is not followed
            except FileNotFoundError:  # taken by another process meanwhile
                continue
            if not stat.S_ISDIR(status.st_mode) and status.st_mtime <= settled_before:
                candidates.append((status.st_mtime, path))
        return [path for _, path in sorted(candidates)]

    def claim(self, path: Path) -> SourceFile | None:
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S%f")
        claimed = self.folder / "processing" / f"{stamp}-{path.name}"
        try:
            os.rename(path, claimed)  # atomic: of two pollers, one wins; a link moves, unfollowed
        except FileNotFoundError:
            return None
        except OSError as error:  # not ours to move (a sticky folder): leave it, take the others
            logger.warning("file %s cannot be claimed: %s", path.name, error.strerror or error)
            return None
        # The checks are on the claimed entry: it may have been swapped since the scan.
        try:
            with open_regular(claimed) as handle:
                digest, size = sha256_of(handle)
        except NotRegularFile as error:
            self.refuse(claimed, str(error))
            return None
        except OSError as error:
            self.refuse(claimed, f"it cannot be read: {error.strerror or error}")
            return None
        try:
            return SourceFile.objects.create(
                connector=self.connector, name=claimed.name, sha256=digest, size_bytes=size
            )
        except IntegrityError:
            os.rename(claimed, self.folder / "error" / f"{claimed.name}.duplicate")
            logger.warning("file %s is a duplicate of an earlier file; moved to error/", path.name)
            return None
        except Exception:
            os.rename(claimed, path)  # not recorded: put it back for the next poll
            raise

    def refuse(self, claimed: Path, reason: str) -> None:
        """Move a claimed entry that is not read, as it is, to error/; record it as failed."""
        os.replace(claimed, self.folder / "error" / claimed.name)
        logger.warning("file %s: %s; moved to error/ unread", claimed.name, reason)
        SourceFile.objects.create(
            connector=self.connector,
            name=claimed.name,
            # Nothing was read: a digest of the claimed name keeps the row unique.
            sha256=hashlib.sha256(f"unread {claimed.name}".encode()).hexdigest(),
            status=SourceFile.Status.FAILED,
            errors=[{"row": None, "line": None, "error": f"file: {reason}"}],
            finished_at=timezone.now(),
        )

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
                Submission(
                    record=row.record,
                    idempotency_key=f"{source_file.sha256}:{row.number}",
                    source_reference=f"{source_file.name} row {row.number}",
                    source_metadata={"row": row.number, "spool": str(spool.path)},
                    source_file_id=source_file.id,
                )
                for row in chunk
            ]
            submit(items, rejected=rejected)
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
                {"row": r, "line": line, "error": message}
                for r, line, message in sorted(errors, key=lambda e: not is_file_error(e[2]))[:100]
            ],
        )
        return submitted

    def finish_files(self) -> None:
        running = SourceFile.objects.filter(
            connector=self.connector, status=SourceFile.Status.RUNNING
        )
        for source_file in running:
            if (
                Job.objects.filter(source_file=source_file)
                .exclude(status__in=Job.FINISHED)
                .exists()
            ):
                continue
            try:
                self.finish(source_file)
            except Exception as error:  # one file's fault must not stop the connector's others
                logger.exception("finishing file %s failed", source_file.name)
                self.give_up(source_file, f"file: the output could not be written: {error}")

    def give_up(self, source_file: SourceFile, reason: str) -> None:
        """Mark a file failed, keep its original in error/ and its rows' jobs as they are."""
        path = self.folder / "processing" / source_file.name
        if os.path.lexists(path):
            os.replace(path, self.folder / "error" / source_file.name)
        SourceFile.objects.filter(id=source_file.id).update(
            status=SourceFile.Status.FAILED,
            errors=[{"row": None, "line": None, "error": reason}, *source_file.errors][:100],
            finished_at=timezone.now(),
        )

    def finish(self, source_file: SourceFile) -> None:
        """Every row has ended: write the output and the errors, archive the original."""
        path, spool = self.paths(source_file)
        if not os.path.lexists(path) and self.finished_before(source_file):
            return  # a poller died between moving the original and recording it
        ended_without_result = Job.objects.filter(
            source_file=source_file, status__in=Job.ENDED_WITHOUT_RESULT
        ).values_list("source_metadata", "error_message", "status")
        spool.put_errors(
            [
                (meta["row"], None, message or status)
                for meta, message, status in ended_without_result
            ]
        )
        current = path.lstat()
        # A file swapped for a link after its claim was not read (its rows say so): no size.
        grew = current.st_size - source_file.size_bytes if irregularity(current) is None else 0
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
        output_name = self.output_name(source_file)
        # Only what was claimed: bytes appended later were never submitted.
        self.write_output(path, spool, self.folder / "outbox" / output_name, source_file.size_bytes)
        self.write_errors(spool, self.folder / "outbox" / f"{output_name}.errors.csv")
        file_failed = grew > 0 or any(is_file_error(e.get("error", "")) for e in source_file.errors)
        os.replace(path, self.folder / ("error" if file_failed else "archive") / source_file.name)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{spool.path}{suffix}").unlink(missing_ok=True)
        SourceFile.objects.filter(id=source_file.id).update(
            status=SourceFile.Status.FAILED if file_failed else SourceFile.Status.DONE,
            output_name=output_name,
            finished_at=timezone.now(),
        )

    def finished_before(self, source_file: SourceFile) -> bool:
        for folder, status in (("archive", "done"), ("error", "failed")):
            if (self.folder / folder / source_file.name).exists():
                SourceFile.objects.filter(id=source_file.id).update(
                    status=status,
                    output_name=self.output_name(source_file),
                    finished_at=timezone.now(),
                )
                return True
        return False

    def output_name(self, source_file: SourceFile) -> str:
        """The dropped file's name; with its claim stamp when an earlier output has that name
        (a legacy system that drops daily.csv every day must not lose yesterday's answers)."""
        if source_file.output_name:
            return source_file.output_name
        plain = source_file.name.split("-", 1)[1]
        taken = (self.folder / "outbox" / plain).exists() or SourceFile.objects.filter(
            connector=self.connector, output_name=plain
        ).exclude(id=source_file.id).exists()
        return source_file.name if taken else plain

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

    def write_output(
        self, path: Path, spool: Spool, target: Path, limit_bytes: int | None = None
    ) -> None:
        temporary = target.with_name(f".{target.name}.tmp")
        connection = spool.connect()
        # AI text the file's encoding cannot hold (a euro sign in latin-1) is escaped, not lost.
        unencodable = "xmlcharrefreplace" if self.file_format.kind == "xml" else "backslashreplace"
        try:
            with open(
                create_new(temporary),
                "w",
                encoding=self.file_format.encoding,
                errors=unencodable,
                newline="",
            ) as handle:
                writer = Writer(handle, self.file_format, self.ai_columns())
                try:
                    for row in read_rows(path, self.file_format, limit_bytes=limit_bytes):
                        if row.error:
                            continue
                        result, error = spool.lookup(connection, row.number)
                        writer.write(row.record, {**(result or {}), "ai_error": error or None})
                except UnreadableFile:
                    pass  # the rows before the fault are written; the fault is in the errors
                writer.close()
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
        with open(create_new(temporary), "w", encoding="utf-8", newline="") as handle:
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


def sha256_of(handle: BinaryIO) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while block := handle.read(1 << 20):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def create_new(path: Path) -> int:
    """A descriptor of a new file at `path`. Whatever was there (a link planted in the shared
    folder, pointing at a file we may write) is removed, never written through."""
    path.unlink(missing_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)


def is_file_error(message: str) -> bool:
    """Errors of the whole file ("file: …") decide its fate and are listed before row errors."""
    return message.startswith("file:")
