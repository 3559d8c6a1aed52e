"""One bad file or row never stops a file-drop connector: records nested too deeply are row
errors, and a file whose reading fails unexpectedly goes to error/ while later files go on."""

import json
import os
import time

import pytest
from django.db import OperationalError

from connectors import legacy_json, polling
from connectors.models import Job, SourceFile
from connectors.sources import file_drop
from tests.test_file_drop import answer, drop, drop_folder, make_file_connector, process
from tests.worker import drain

__all__ = ["drop_folder", "make_file_connector"]  # fixtures shared with tests/test_file_drop.py

pytestmark = pytest.mark.django_db(transaction=True)

TOO_DEEP = "the JSON is nested more than 64 levels deep"


def nested(depth: int) -> str:
    """A JSON object `depth` levels deep: {"note": "deep", "a": {"a": … {"a": "x"}}}."""
    return '{"note": "deep", "a": ' + '{"a": ' * (depth - 1) + '"x"' + "}" * depth


def drop_in_order(folder, *files: tuple[str, str]) -> None:
    """Drop files with increasing modification times: the poller takes the oldest first."""
    start = time.time() - 100
    for offset, (name, content) in enumerate(files):
        drop(folder, name, content)
        os.utime(folder / name, (start + offset, start + offset))


def poll_twice(connector) -> None:
    polling.poll(connector)
    drain()
    polling.poll(connector)


def notes(connector) -> list[str]:
    return sorted(job.input_data["text"] for job in Job.objects.filter(connector=connector))


def test_json_lines_nested_too_deeply_are_row_errors_and_later_files_go_on(
    make_file_connector, drop_folder
):
    connector = make_file_connector("jsonl")
    lines = ['{"note": "one"}', nested(600), '{"note": "three"}', nested(5000), '{"note": "five"}']
    drop_in_order(
        drop_folder,
        ("deep.jsonl", "\n".join(lines) + "\n"),
        ("later.jsonl", '{"note": "later"}\n'),
    )

    poll_twice(connector)

    deep = SourceFile.objects.get(name__endswith="-deep.jsonl")
    assert (deep.status, deep.rows_total, deep.rows_rejected) == ("done", 5, 2)
    assert deep.errors == [
        {"row": 2, "line": 2, "error": f"not valid JSON: {TOO_DEEP}"},
        {"row": 4, "line": 4, "error": f"not valid JSON: {TOO_DEEP}"},
    ]
    assert notes(connector) == ["five", "later", "one", "three"]
    assert SourceFile.objects.get(name__endswith="-later.jsonl").status == "done"
    output = (drop_folder / "outbox" / "deep.jsonl").read_text().splitlines()
    assert [json.loads(line)["note"] for line in output] == ["one", "three", "five"]
    assert list((drop_folder / "processing").iterdir()) == []


def test_a_json_array_element_nested_too_deeply_is_a_row_error(make_file_connector, drop_folder):
    connector = make_file_connector("json")
    elements = ['{"note": "one"}', nested(600), '{"note": "three"}', nested(5000), '{"note": "x"}']
    drop_in_order(
        drop_folder,
        ("deep.json", "[\n" + ",\n".join(elements) + "\n]\n"),
        ("later.json", '[{"note": "later"}]'),
    )

    poll_twice(connector)

    deep = SourceFile.objects.get(name__endswith="-deep.json")
    assert (deep.status, deep.rows_total, deep.rows_rejected) == ("done", 5, 2)
    assert deep.errors == [
        {"row": 2, "line": None, "error": f"not valid JSON: {TOO_DEEP}"},
        {"row": 4, "line": None, "error": f"not valid JSON: {TOO_DEEP}"},
    ]
    assert notes(connector) == ["later", "one", "three", "x"]
    assert SourceFile.objects.get(name__endswith="-later.json").status == "done"
    output = json.loads((drop_folder / "outbox" / "deep.json").read_text())
    assert [element["note"] for element in output] == ["one", "three", "x"]


def test_a_too_deep_element_cut_by_the_read_buffer_is_skipped_whole(
    make_file_connector, drop_folder
):
    """The reader's buffer holds 64 KiB: the element is refused only once all of it is in."""
    connector = make_file_connector("json")
    padding = json.dumps('p ]} \\" ' * 10_000)  # brackets and quotes in a string are no ends
    deep = '{"note": "deep", "a": ' + "[" * 5000 + "]" * 5000 + ', "p": ' + padding + "}"
    drop(drop_folder, "cut.json", f'[{deep}, {{"note": "after ]}}"}}, 7]')

    source_file = process(connector)

    assert source_file.errors == [
        {"row": 1, "line": None, "error": f"not valid JSON: {TOO_DEEP}"},
        {"row": 3, "line": None, "error": "each element must be a JSON object"},
    ]
    assert notes(connector) == ["after ]}"]


def test_an_xml_record_nested_too_deeply_is_a_row_error(make_file_connector, drop_folder):
    connector = make_file_connector("xml", record_element="invoice")

    def deep(note: str, levels: int) -> str:
        """{"note": note, "a": {"a": … "x"}} as XML: `levels` levels of fields in all."""
        return f"<invoice><note>{note}</note>{'<a>' * levels}x{'</a>' * levels}</invoice>"

    records = [
        "<invoice><note>one</note></invoice>",
        deep("two", legacy_json.MAX_DEPTH + 1),
        deep("three", legacy_json.MAX_DEPTH),  # as deep as a record may be
        deep("four", 5000),
        deep("five", 100_000),
        "<invoice><note>six</note></invoice>",
    ]
    drop_in_order(
        drop_folder,
        ("deep.xml", "<invoices>" + "".join(records) + "</invoices>"),
        ("later.xml", "<invoices><invoice><note>later</note></invoice></invoices>"),
    )

    poll_twice(connector)

    source_file = SourceFile.objects.get(name__endswith="-deep.xml")
    reason = f"the record is nested more than {legacy_json.MAX_DEPTH} levels deep"
    assert (source_file.status, source_file.rows_total) == ("done", 6)
    assert source_file.errors == [
        {"row": 2, "line": None, "error": reason},
        {"row": 4, "line": None, "error": reason},
        {"row": 5, "line": None, "error": reason},
    ]
    assert notes(connector) == ["later", "one", "six", "three"]
    assert SourceFile.objects.get(name__endswith="-later.xml").status == "done"
    output = (drop_folder / "outbox" / "deep.xml").read_text()
    assert output.count("<invoice>") == 3
    assert f"<note>six</note><ai_answer>{answer('six')}</ai_answer>" in output


def test_a_file_whose_reading_fails_unexpectedly_goes_to_error_and_later_files_go_on(
    make_file_connector, drop_folder, monkeypatch
):
    connector = make_file_connector()
    drop_in_order(
        drop_folder,
        ("bad.csv", "note\nfirst\n"),
        ("good.csv", "note\nsecond\n"),
    )
    read_rows = file_drop.read_rows

    def failing_read_rows(path, fmt, **kwargs):
        if path.name.endswith("-bad.csv"):
            raise RuntimeError("the reader broke")
        return read_rows(path, fmt, **kwargs)

    monkeypatch.setattr(file_drop, "read_rows", failing_read_rows)

    poll_twice(connector)

    bad = SourceFile.objects.get(name__endswith="-bad.csv")
    assert bad.status == "failed"
    assert bad.errors == [
        {
            "row": None,
            "line": None,
            "error": "file: reading it failed unexpectedly: RuntimeError: the reader broke",
        }
    ]
    assert (drop_folder / "error" / bad.name).read_text() == "note\nfirst\n"
    assert SourceFile.objects.get(name__endswith="-good.csv").status == "done"
    assert notes(connector) == ["second"]
    assert sorted(p.name for p in (drop_folder / "processing").iterdir()) == []


def test_a_file_that_cannot_be_opened_goes_to_error_and_later_files_go_on(
    make_file_connector, drop_folder, monkeypatch
):
    connector = make_file_connector()
    drop_in_order(drop_folder, ("locked.csv", "note\nx\n"), ("open.csv", "note\ny\n"))
    sha256_of, calls = file_drop.sha256_of, []

    def refusing_sha256_of(*args):
        calls.append(args)
        if len(calls) == 1:  # locked.csv, the older file
            raise PermissionError(13, "Permission denied")
        return sha256_of(*args)

    monkeypatch.setattr(file_drop, "sha256_of", refusing_sha256_of)

    poll_twice(connector)

    locked = SourceFile.objects.get(name__endswith="-locked.csv")
    assert (locked.status, locked.errors) == (
        "failed",
        [{"row": None, "line": None, "error": "file: it cannot be read: Permission denied"}],
    )
    assert (drop_folder / "error" / locked.name).exists()
    assert SourceFile.objects.get(name__endswith="-open.csv").status == "done"
    assert notes(connector) == ["y"]


def test_a_file_that_cannot_be_moved_is_left_and_later_files_go_on(
    make_file_connector, drop_folder, monkeypatch
):
    connector = make_file_connector()
    drop_in_order(drop_folder, ("theirs.csv", "note\nx\n"), ("ours.csv", "note\ny\n"))
    rename = os.rename

    def refusing_rename(source, target):
        if str(source).endswith("theirs.csv"):
            raise PermissionError(1, "Operation not permitted")
        rename(source, target)

    monkeypatch.setattr(os, "rename", refusing_rename)

    poll_twice(connector)

    assert (drop_folder / "theirs.csv").exists()
    assert [f.name.split("-", 1)[1] for f in SourceFile.objects.all()] == ["ours.csv"]
    assert notes(connector) == ["y"]


def test_a_database_failure_while_reading_leaves_the_file_to_be_resumed(
    make_file_connector, drop_folder, monkeypatch
):
    """The database, not the file, failed: the file is not given up but read at the next poll."""
    connector = make_file_connector()
    drop(drop_folder, "a.csv", "note\nx\n")
    submit_items = polling.submit_items

    def database_down(*args, **kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(polling, "submit_items", database_down)
    polling.poll(connector)
    assert SourceFile.objects.get().status == "reading"
    monkeypatch.setattr(polling, "submit_items", submit_items)

    source_file = process(connector)

    assert (source_file.status, source_file.errors) == ("done", [])
    assert notes(connector) == ["x"]
