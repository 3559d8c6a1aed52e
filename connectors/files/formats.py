"""Streaming readers and writers for CSV, JSON Lines, JSON arrays and XML.

Readers yield one `Row` at a time (memory stays flat on a gigabyte file); a row that cannot be
parsed comes back as a Row with an error and its line number, never silently dropped. XML goes
through defusedxml: entity declarations and external entities are refused.

Files are opened with `open_regular` only: whoever can write the drop folder must not make us
read another file through a symbolic or hard link, or block on a named pipe.
"""

import codecs
import csv
import errno
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO
from xml.etree.ElementTree import Element, SubElement, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, iterparse

from connectors import legacy_json

FORMATS = ("csv", "jsonl", "json", "xml")
# A legacy export may hold a long text in one field; past this the file is refused as a whole.
csv.field_size_limit(10 * 1024 * 1024)
SURROGATE = re.compile(r"[\udc80-\udcff]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class UnreadableFile(Exception):
    """The file as a whole cannot be read (XML that is not well-formed, a refused entity…)."""


class NotRegularFile(UnreadableFile):
    """A symbolic link, a hard link, a named pipe, a folder, a device or a socket."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"not a regular file ({kind})")


def irregularity(status: os.stat_result) -> str | None:
    """What an entry is, from its lstat, unless it is a regular file with one name (None)."""
    mode = status.st_mode
    if stat.S_ISREG(mode) and status.st_nlink == 1:
        return None
    if stat.S_ISREG(mode):  # another name of a file that may be anyone's
        return f"a hard link: the file has {status.st_nlink} names"
    kinds = [
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((kind for test, kind in kinds if test(mode)), "a device")


def open_regular(path: Path) -> BinaryIO:
    """Open `path` for reading if it is a regular file with one name; else NotRegularFile.

    lstat first, so a pipe or a device is never opened; then O_NOFOLLOW and fstat, so an entry
    swapped for a link or a pipe after that look is refused too (O_NONBLOCK: a pipe does not
    wait for a writer)."""
    if kind := irregularity(os.lstat(path)):
        raise NotRegularFile(kind)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotRegularFile("a symbolic link") from None
        raise
    if kind := irregularity(os.fstat(descriptor)):
        os.close(descriptor)
        raise NotRegularFile(kind)
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


@dataclass
class Row:
    number: int  # 1-based record number in the file
    line: int | None
    record: Any = None
    error: str = ""


@dataclass(frozen=True)
class FileFormat:
    kind: str = "csv"
    delimiter: str = ","
    encoding: str = "utf-8"
    header: bool = True
    record_element: str = "record"

    @classmethod
    def from_config(cls, config: dict) -> "FileFormat":
        return cls(
            kind=config.get("format", "csv"),
            delimiter=config.get("delimiter", ","),
            encoding=config.get("encoding", "utf-8"),
            header=config.get("header", True),
            record_element=config.get("record_element", "record"),
        )


def read_rows(path: Path, fmt: FileFormat, *, limit_bytes: int | None = None) -> Iterator[Row]:
    readers = {"csv": read_csv, "jsonl": read_jsonl, "json": read_json_array, "xml": read_xml}
    return readers[fmt.kind](path, fmt, limit_bytes)


def _bounded_lines(handle, limit_bytes: int | None):
    """Lines of a binary file up to limit_bytes (what was there when the file was claimed)."""
    read = 0
    for line in handle:
        if limit_bytes is not None and read >= limit_bytes:
            return
        if limit_bytes is not None and read + len(line) > limit_bytes:
            line = line[: limit_bytes - read]
        read += len(line)
        yield line


def read_csv(path: Path, fmt: FileFormat, limit_bytes: int | None) -> Iterator[Row]:
    # Excel writes UTF-8 with a byte order mark; it must not become part of the first column.
    encoding = "utf-8-sig" if codecs.lookup(fmt.encoding).name == "utf-8" else fmt.encoding
    decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
    with open_regular(path) as raw:
        text = (decoder.decode(line) for line in _bounded_lines(raw, limit_bytes))
        reader = csv.reader(text, delimiter=fmt.delimiter)
        header = None
        number, previous_end = 0, 0
        try:
            for fields in reader:
                line, previous_end = previous_end + 1, reader.line_num  # where the record starts
                if header is None and fmt.header:
                    header = [SURROGATE.sub("?", name).strip() for name in fields]
                    if repeated := sorted({name for name in header if header.count(name) > 1}):
                        raise UnreadableFile(
                            f"the header names {', '.join(map(repr, repeated))} more than once"
                        )
                    continue
                if not fields:
                    continue
                number += 1
                if any(SURROGATE.search(field) for field in fields):
                    yield Row(number, line, error=f"cannot be decoded as {fmt.encoding}")
                elif header is None:
                    yield Row(
                        number, line, record={f"column{i + 1}": v for i, v in enumerate(fields)}
                    )
                elif len(fields) != len(header):
                    yield Row(
                        number, line, error=f"expected {len(header)} fields, found {len(fields)}"
                    )
                else:
                    yield Row(number, line, record=dict(zip(header, fields, strict=True)))
        except csv.Error as error:  # the reader cannot go on: the rest of the file is unread
            raise UnreadableFile(
                f"CSV error at line {reader.line_num}: {error}; the rows after it were not read"
            ) from None


def read_jsonl(path: Path, fmt: FileFormat, limit_bytes: int | None) -> Iterator[Row]:
    number = 0
    with open_regular(path) as raw:
        for line_number, line in enumerate(_bounded_lines(raw, limit_bytes), start=1):
            if not line.strip():
                continue
            number += 1
            try:
                value = legacy_json.loads(line)
            except UnicodeDecodeError:
                yield Row(number, line_number, error="cannot be decoded as utf-8")
                continue
            except ValueError as error:
                reason = getattr(error, "msg", error)
                yield Row(number, line_number, error=f"not valid JSON: {reason}")
                continue
            if not isinstance(value, dict):
                yield Row(number, line_number, error="each line must be a JSON object")
            else:
                yield Row(number, line_number, record=value)


def read_json_array(path: Path, fmt: FileFormat, limit_bytes: int | None) -> Iterator[Row]:
    """A JSON array of objects, decoded one element at a time from a sliding buffer."""
    buffer, position, number, started = "", 0, 0, False
    with io.TextIOWrapper(open_regular(path), encoding="utf-8-sig", errors="strict") as handle:
        consumed = 0

        def more() -> bool:
            nonlocal buffer, position, consumed
            if limit_bytes is not None and consumed >= limit_bytes:
                return False
            chunk = handle.read(1 << 16)
            if not chunk:
                return False
            consumed += len(chunk.encode("utf-8"))
            buffer, position = buffer[position:] + chunk, 0
            return True

        try:
            more()
            while True:
                while position < len(buffer) and buffer[position] in " \t\r\n,":
                    position += 1
                if position >= len(buffer):
                    if not more():
                        raise UnreadableFile("the JSON array is not closed")
                    continue
                if not started:
                    if buffer[position] != "[":
                        raise UnreadableFile("a JSON file must hold an array of objects")
                    started, position = True, position + 1
                    continue
                if buffer[position] == "]":
                    return
                try:
                    value, end = legacy_json.raw_decode(buffer, position)
                    if end == len(buffer) and more():
                        continue  # a number may go on in the next chunk: decode it again
                except json.JSONDecodeError:
                    if more():
                        continue
                    raise UnreadableFile(f"element {number + 1} is not valid JSON") from None
                except ValueError as error:  # NaN, a number too large, nested too deeply
                    end = value_end(buffer, position)
                    if end is None:  # the element goes on in the next chunk
                        if more():
                            continue
                        raise UnreadableFile("the JSON array is not closed") from None
                    number += 1
                    position = end
                    yield Row(number, None, error=f"not valid JSON: {error}")
                    continue
                number += 1
                position = end
                if isinstance(value, dict):
                    yield Row(number, None, record=value)
                else:
                    yield Row(number, None, error="each element must be a JSON object")
        except UnicodeDecodeError:
            raise UnreadableFile("the file cannot be decoded as utf-8") from None


# A string, an unterminated string (the buffer cuts it), or a bracket.
JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|"|[\[\]{}]', re.DOTALL)
JSON_SCALAR = re.compile(r"[^\s,\]]*")


def value_end(text: str, start: int) -> int | None:
    """Where the JSON value at `start` ends, found by counting brackets (no recursion, however
    deep); None if `text` ends first. For skipping a value the decoder refused."""
    if text[start] not in '[{"':
        end = JSON_SCALAR.match(text, start).end()
        return end if end < len(text) else None
    depth = 0
    for token in JSON_TOKEN.finditer(text, start):
        found = token.group()
        if found == '"':
            return None
        if found[0] != '"':
            depth += 1 if found in "[{" else -1
        if depth == 0:
            return token.end()
    return None


def read_xml(path: Path, fmt: FileFormat, limit_bytes: int | None) -> Iterator[Row]:
    number = 0
    try:
        with open_regular(path) as handle:
            events = iterparse(handle, events=("start", "end"), forbid_dtd=True)
            root = None
            for event, element in events:
                if root is None:
                    root = element
                if event != "end" or local_name(element.tag) != fmt.record_element:
                    continue
                number += 1
                yield xml_row(number, element)
                root.clear()  # keep memory flat: drop the records already read
    except DefusedXmlException as error:
        raise UnreadableFile(
            f"refused: {type(error).__name__} (DTDs and entities are not allowed)"
        ) from None
    except ParseError as error:
        raise UnreadableFile(f"not well-formed XML: {error}") from None


def local_name(tag: str) -> str:
    """`{urn:erp}invoice` -> `invoice`: exports with a default namespace name their records so."""
    return tag.rpartition("}")[2]


def xml_row(number: int, element) -> Row:
    """The record's attributes and children; one nested deeper than JSON may be is refused."""
    try:
        record = legacy_json.shallow({**element.attrib, **_element_dict(element)})
    except ValueError:
        too_deep = f"the record is nested more than {legacy_json.MAX_DEPTH} levels deep"
        return Row(number, None, error=too_deep)
    return Row(number, None, record=record)


def _element_dict(record) -> dict:
    """Children by local name; a repeated child (order lines) becomes a list, none is lost.
    Walked without recursion: a record may nest deeper than Python can recurse."""
    top: dict = {}
    pending = [(record, top)]
    while pending:
        element, fields = pending.pop()
        repeated: set[str] = set()
        for child in element:
            name = local_name(child.tag)
            if len(child) == 0:
                value = child.text
            else:
                value = {}  # filled in when the child's turn comes
                pending.append((child, value))
            if name in repeated:
                fields[name].append(value)
            elif name in fields:
                fields[name] = [fields[name], value]
                repeated.add(name)
            else:
                fields[name] = value
    return top


# --- Writers -------------------------------------------------------------------------------


def safe_cell(value: Any) -> str:
    """AI text in a spreadsheet cell must not run as a formula."""
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
    # Spreadsheets skip leading spaces before they look for a formula (" =1+1").
    return "'" + text if text.lstrip(" ").startswith(FORMULA_START) else text


class Writer:
    """Writes original records with the AI columns added, in the input's format."""

    def __init__(self, handle: TextIO, fmt: FileFormat, ai_columns: list[str]) -> None:
        self.handle, self.fmt, self.ai_columns = handle, fmt, [*ai_columns, "ai_error"]
        self.count = 0
        self.csv = None

    def write(self, record: dict, ai_values: dict) -> None:
        values = {name: ai_values.get(name) for name in self.ai_columns}
        if self.fmt.kind == "csv":
            if self.csv is None:
                self.csv = csv.writer(self.handle, delimiter=self.fmt.delimiter)
                if self.fmt.header:
                    self.csv.writerow([*record, *self.ai_columns])
            self.csv.writerow([*record.values(), *(safe_cell(v) for v in values.values())])
        elif self.fmt.kind == "jsonl":
            self.handle.write(json.dumps({**record, **values}, ensure_ascii=False) + "\n")
        elif self.fmt.kind == "json":
            self.handle.write("[\n" if self.count == 0 else ",\n")
            self.handle.write(json.dumps({**record, **values}, ensure_ascii=False))
        else:
            if self.count == 0:
                self.handle.write("<?xml version='1.0' encoding='utf-8'?>\n<results>\n")
            element = Element(self.fmt.record_element)
            for name, value in {**record, **values}.items():
                SubElement(element, name).text = safe_xml_text(value)
            self.handle.write(tostring(element, encoding="unicode") + "\n")
        self.count += 1

    def close(self) -> None:
        if self.fmt.kind == "json":
            self.handle.write("[]\n" if self.count == 0 else "\n]\n")
        elif self.fmt.kind == "xml":
            if self.count == 0:
                self.handle.write("<?xml version='1.0' encoding='utf-8'?>\n<results>\n")
            self.handle.write("</results>\n")


def safe_xml_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)
