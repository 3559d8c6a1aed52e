"""File drops on real files in temporary folders: CSV, JSON Lines, JSON, XML, bad input, resume."""

import csv
import json
import os
import time

import pytest

from connectors import polling
from connectors.models import Job, SourceFile
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def drop_folder(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


@pytest.fixture
def make_file_connector(make_connector, drop_folder):
    def make(fmt="csv", **source):
        return make_connector(
            f"files-{fmt}",
            inputs=[("note", "text", True)],
            outputs=[("text", "ai_answer")],
            prompt="Classify: {{ text }}",
            source_kind="file_drop",
            source_config={"path": str(drop_folder), "format": fmt, "settle_seconds": 0, **source},
            sink_kind="file",
            batch_size=50,
        )

    return make


def drop(folder, name: str, content: str | bytes) -> None:
    temporary = folder / f".{name}.part"
    temporary.write_bytes(content if isinstance(content, bytes) else content.encode())
    os.rename(temporary, folder / name)  # how a careful legacy system drops a file


def process(connector) -> SourceFile:
    polling.poll(connector)
    drain()
    polling.poll(connector)  # the next poll notices every row has ended and writes the output
    return SourceFile.objects.get(connector=connector)


def answer(note: str) -> str:
    return f"Demo answer (no AI was called): Classify: {note}"


def test_csv_rows_come_back_with_ai_columns_and_the_original_is_archived(
    make_file_connector, drop_folder
):
    connector = make_file_connector(delimiter=";")
    drop(drop_folder, "orders.csv", "id;note\n1;first\n2;=cmd|' /C calc'!A0\n3;third\n")

    source_file = process(connector)

    assert (source_file.status, source_file.rows_total, source_file.rows_rejected) == ("done", 3, 0)
    with (drop_folder / "outbox" / "orders.csv").open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    assert rows[0] == ["id", "note", "ai_answer", "ai_error"]
    assert rows[1] == ["1", "first", answer("first"), ""]
    assert rows[3] == ["3", "third", answer("third"), ""]
    assert (drop_folder / "archive" / source_file.name).exists()
    assert list((drop_folder / "processing").iterdir()) == []
    assert not (drop_folder / "orders.csv").exists()


def test_ai_text_cannot_become_a_spreadsheet_formula(make_file_connector, drop_folder):
    connector = make_file_connector()
    connector.prompt_template = "{{ text }}"
    connector.save()
    drop(drop_folder, "f.csv", "note\nx\n")
    connector.provider.parameters = {}
    process(connector)

    with (drop_folder / "outbox" / "f.csv").open(newline="") as handle:
        [_, row] = list(csv.reader(handle))
    assert row[1] == "Demo answer (no AI was called): x"  # starts with a letter: untouched

    from connectors.files.formats import safe_cell

    assert safe_cell('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    assert safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("  =1+1") == "'  =1+1"


def test_broken_encoding_and_missing_fields_are_reported_with_line_numbers(
    make_file_connector, drop_folder
):
    connector = make_file_connector()
    content = b"note,extra\nfine,1\n\xff\xfe broken,2\nshort\n,4\nlast,5\n"
    drop(drop_folder, "mixed.csv", content)

    source_file = process(connector)

    assert source_file.rows_total == 5
    errors = {e["row"]: (e["line"], e["error"]) for e in source_file.errors}
    assert errors == {
        2: (3, "cannot be decoded as utf-8"),
        3: (4, "expected 2 fields, found 1"),
        4: (5, "required field 'note' is missing"),
    }
    with (drop_folder / "outbox" / "mixed.csv.errors.csv").open() as handle:
        assert next(iter(csv.DictReader(handle))) == {
            "row": "2",
            "line": "3",
            "error": "cannot be decoded as utf-8",
        }
    with (drop_folder / "outbox" / "mixed.csv").open(newline="") as handle:
        notes = [row["note"] for row in csv.DictReader(handle)]
    assert notes == ["fine", "", "last"]  # the unmappable row is there, with its ai_error
    assert Job.objects.count() == 2


def test_json_lines_and_json_arrays(make_file_connector, drop_folder):
    connector = make_file_connector("jsonl")
    drop(drop_folder, "a.jsonl", '{"note": "one"}\n\nnot json\n["x"]\n{"note": "two"}\n')

    source_file = process(connector)

    lines = (drop_folder / "outbox" / "a.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"note": "one", "ai_answer": answer("one"), "ai_error": None},
        {"note": "two", "ai_answer": answer("two"), "ai_error": None},
    ]
    assert [e["error"] for e in source_file.errors] == [
        "not valid JSON: Expecting value",
        "each line must be a JSON object",
    ]

    array_connector = make_file_connector("json")
    array_connector.source_config["path"] = str(drop_folder / "arrays")
    array_connector.save()
    (drop_folder / "arrays").mkdir()
    drop(drop_folder / "arrays", "b.json", json.dumps([{"note": f"n{i}"} for i in range(120)]))

    process(array_connector)

    output = json.loads((drop_folder / "arrays" / "outbox" / "b.json").read_text())
    assert len(output) == 120
    assert output[119] == {"note": "n119", "ai_answer": answer("n119"), "ai_error": None}


def test_json_no_row_can_hold_is_reported_per_line(make_file_connector, drop_folder):
    connector = make_file_connector("jsonl")
    lines = [
        '\ufeff{"note": "after a byte order mark"}',
        '{"note": 1e999}',
        '{"note": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"note": "nul \\u0000 inside"}',
        '{"note": "fine"}',
    ]
    drop(drop_folder, "odd.jsonl", "\n".join(lines) + "\n")

    source_file = process(connector)

    assert source_file.status == "done"
    assert [(e["line"], e["error"]) for e in source_file.errors] == [
        (2, "not valid JSON: the number 1e999 is too large"),
        (3, "not valid JSON: the JSON is nested more than 64 levels deep"),
        (4, "text contains a NUL character, which cannot be stored"),
    ]
    assert sorted(job.input_data["text"] for job in Job.objects.all()) == [
        "after a byte order mark",
        "fine",
    ]


def test_xml_records_are_read_and_written(make_file_connector, drop_folder):
    connector = make_file_connector("xml", record_element="invoice")
    drop(
        drop_folder,
        "i.xml",
        "<invoices><invoice id='7'><note>chairs</note></invoice>"
        "<invoice id='8'><note>tables</note></invoice></invoices>",
    )

    process(connector)

    output = (drop_folder / "outbox" / "i.xml").read_text()
    assert (
        f"<invoice><id>7</id><note>chairs</note><ai_answer>{answer('chairs')}</ai_answer>" in output
    )
    assert output.count("<invoice>") == 2


def test_xml_entity_bomb_is_refused(make_file_connector, drop_folder):
    connector = make_file_connector("xml")
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        "<records><record><note>&lol2;</note></record></records>"
    )
    drop(drop_folder, "bomb.xml", bomb)

    source_file = process(connector)

    assert source_file.status == "failed"
    assert source_file.errors[0]["error"].startswith("file: refused: DTDForbidden")
    assert Job.objects.count() == 0
    assert (drop_folder / "error" / source_file.name).exists()


def test_a_poller_that_died_mid_file_resumes_without_duplicates(
    make_file_connector, drop_folder, monkeypatch
):
    connector = make_file_connector()
    drop(drop_folder, "big.csv", "note\n" + "".join(f"row {n}\n" for n in range(1, 1201)))
    real_submit = polling.submit_items
    calls = []

    def dying_submit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise SystemExit("killed")  # the poller dies after the first 500 rows
        return real_submit(*args, **kwargs)

    monkeypatch.setattr(polling, "submit_items", dying_submit)
    with pytest.raises(SystemExit):
        polling.build_source(connector).poll(
            lambda *a, **k: polling.submit_items(connector, *a, **k)
        )
    assert Job.objects.count() == 500
    assert SourceFile.objects.get().status == "reading"
    monkeypatch.setattr(polling, "submit_items", real_submit)

    source_file = process(connector)

    assert Job.objects.count() == 1200
    with (drop_folder / "outbox" / "big.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["note"] for row in rows] == [f"row {n}" for n in range(1, 1201)]
    assert source_file.status == "done"


def test_a_result_delivered_twice_is_written_once(make_file_connector, drop_folder):
    connector = make_file_connector()
    drop(drop_folder, "twice.csv", "note\nonly\n")
    polling.poll(connector)
    drain()
    job = Job.objects.get()
    Job.objects.filter(id=job.id).update(status="pending", result=None)  # as if run again
    drain()
    polling.poll(connector)

    with (drop_folder / "outbox" / "twice.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 1


def test_a_file_appended_to_after_its_claim_is_reported(make_file_connector, drop_folder):
    connector = make_file_connector()
    drop(drop_folder, "growing.csv", "note\na\n")
    polling.poll(connector)
    source_file = SourceFile.objects.get()
    with (drop_folder / "processing" / source_file.name).open("a") as handle:
        handle.write("b\n")  # a writer still holding the file open
    drain()
    polling.poll(connector)

    source_file.refresh_from_db()
    assert source_file.status == "failed"
    errors = (drop_folder / "outbox" / "growing.csv.errors.csv").read_text()
    assert "it grew by 2 bytes after it was claimed" in errors
    assert (drop_folder / "error" / source_file.name).exists()


def test_files_still_being_written_are_left_alone(make_file_connector, drop_folder):
    connector = make_file_connector(settle_seconds=60)
    (drop_folder / "fresh.csv").write_text("note\nx\n")

    assert polling.poll(connector) == 0
    assert (drop_folder / "fresh.csv").exists()
    old = time.time() - 120
    os.utime(drop_folder / "fresh.csv", (old, old))
    assert polling.poll(connector) == 1


def test_the_same_file_dropped_twice_is_not_processed_twice(make_file_connector, drop_folder):
    connector = make_file_connector()
    drop(drop_folder, "a.csv", "note\nx\n")
    process(connector)
    drop(drop_folder, "again.csv", "note\nx\n")

    polling.poll(connector)

    assert Job.objects.count() == 1
    assert [p.name.endswith("again.csv.duplicate") for p in (drop_folder / "error").iterdir()] == [
        True
    ]


def test_test_connection_and_config_validation(make_file_connector, drop_folder, tmp_path):
    source = polling.build_source(make_file_connector())
    assert source.test_connection() == f"OK: {drop_folder} can be read and written; 0 files waiting"

    from connectors.sources.file_drop import FileDropSource

    for config, message in [
        ({}, "missing path"),
        ({"path": "relative/dir"}, "absolute"),
        ({"path": "/x", "format": "xlsx"}, "format must be one of"),
        ({"path": "/x", "encoding": "klingon"}, "unknown encoding"),
    ]:
        with pytest.raises(ValueError, match=message):
            FileDropSource.validate_config(config)


def test_a_watched_folder_wakes_the_poller_when_a_file_lands(drop_folder):
    import threading

    from connectors.watching import FolderWatcher

    woken = threading.Event()
    watcher = FolderWatcher()
    try:
        watcher.sync({7: str(drop_folder)}, lambda connector_id: woken.set())
        drop(drop_folder, "new.csv", "note\nx\n")
        assert woken.wait(5), "no file-system event arrived"
    finally:
        watcher.stop()


def test_run_sources_once_polls_every_enabled_connector(make_file_connector, drop_folder):
    import io

    from django.core.management import call_command

    make_file_connector()
    disabled = make_file_connector("jsonl")
    disabled.is_enabled = False
    disabled.save()
    drop(drop_folder, "a.csv", "note\nx\ny\n")
    out = io.StringIO()

    call_command("run_sources", "--once", stdout=out)

    assert out.getvalue() == "files-csv: 2 records submitted\n"


# --- What legacy exports really look like, and pollers that fail halfway ----------------------


def test_excel_utf8_with_a_byte_order_mark(make_file_connector, drop_folder):
    connector = make_file_connector()
    drop(drop_folder, "excel.csv", "\ufeffnote\nfirst\n".encode())

    source_file = process(connector)

    assert (source_file.status, source_file.rows_rejected) == ("done", 0)
    assert Job.objects.get().input_data == {"text": "first"}


@pytest.fixture
def small_csv_fields():
    limit = csv.field_size_limit(100)  # stands for the 10 MiB limit
    yield
    csv.field_size_limit(limit)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("note,note\na,b\n", "file: the header names 'note' more than once"),
        ("note\nfine\n" + "x" * 101 + "\nnever read\n", "file: CSV error at line 3"),
    ],
)
@pytest.mark.usefixtures("small_csv_fields")
def test_a_csv_that_cannot_be_read_to_its_end_fails_as_a_file(
    make_file_connector, drop_folder, content, reason
):
    connector = make_file_connector()
    drop(drop_folder, "bad.csv", content)

    source_file = process(connector)

    assert source_file.status == "failed"
    assert source_file.errors[0]["error"].startswith(reason)
    assert (drop_folder / "error" / source_file.name).exists()


def test_xml_with_a_default_namespace(make_file_connector, drop_folder):
    connector = make_file_connector("xml", record_element="invoice")
    drop(
        drop_folder,
        "ns.xml",
        "<invoices xmlns='urn:erp'><invoice><note>desks</note></invoice></invoices>",
    )

    source_file = process(connector)

    assert (source_file.status, source_file.rows_total) == ("done", 1)
    assert Job.objects.get().input_data == {"text": "desks"}


def test_answers_the_file_encoding_cannot_hold_are_escaped_not_lost(
    make_file_connector, drop_folder
):
    connector = make_file_connector(encoding="latin-1")
    connector.prompt_template = "Price in € of {{ text }}"
    connector.save()
    drop(drop_folder, "prices.csv", "note\nchaise\n".encode("latin-1"))

    source_file = process(connector)

    assert source_file.status == "done"
    output = (drop_folder / "outbox" / "prices.csv").read_text(encoding="latin-1")
    assert "Price in \\u20ac of chaise" in output


def test_the_same_file_name_every_day_keeps_every_output(make_file_connector, drop_folder):
    connector = make_file_connector()
    drop(drop_folder, "daily.csv", "note\nmonday\n")
    first = process(connector)
    drop(drop_folder, "daily.csv", "note\ntuesday\n")
    polling.poll(connector)
    drain()
    polling.poll(connector)

    second = SourceFile.objects.exclude(id=first.id).get()
    assert first.output_name == "daily.csv" and second.output_name == second.name
    assert "monday" in (drop_folder / "outbox" / "daily.csv").read_text()
    assert "tuesday" in (drop_folder / "outbox" / second.name).read_text()


def test_a_poller_that_died_after_archiving_does_not_block_the_next_files(
    make_file_connector, drop_folder
):
    connector = make_file_connector()
    drop(drop_folder, "one.csv", "note\nfirst\n")
    polling.poll(connector)
    drain()
    one = SourceFile.objects.get()
    # The poller moved the original to archive/ and died before recording it.
    os.replace(drop_folder / "processing" / one.name, drop_folder / "archive" / one.name)
    drop(drop_folder, "two.csv", "note\nsecond\n")

    polling.poll(connector)

    one.refresh_from_db()
    assert one.status == "done"
    assert SourceFile.objects.filter(name__endswith="two.csv", status="running").exists()


def test_a_file_claimed_but_never_recorded_is_put_back(make_file_connector, drop_folder):
    connector = make_file_connector()
    polling.build_source(connector).prepare_folders()
    # The poller renamed the file into processing/ and died before writing its row.
    (drop_folder / "processing" / "20261125T000000000000-lost.csv").write_text("note\nfound\n")

    polling.poll(connector)  # puts it back
    source_file = process(connector)  # and claims it as any other file

    assert source_file.status == "done"
    assert Job.objects.get().input_data == {"text": "found"}


def test_only_one_poller_at_a_time_polls_a_connector(make_file_connector, drop_folder):
    connector = make_file_connector()
    drop(drop_folder, "a.csv", "note\nx\n")

    with polling.exclusive(connector) as first:
        assert first
        with polling.exclusive(connector) as second:
            assert not second
        assert polling.poll(connector) == 0  # another host holds the connector
        assert (drop_folder / "a.csv").exists()

    assert polling.poll(connector) == 1


def test_repeated_xml_children_and_multi_line_csv_records_keep_everything(
    make_file_connector, drop_folder
):
    xml = make_file_connector("xml", record_element="order")
    drop(
        drop_folder,
        "o.xml",
        "<orders><order><note>n</note><line>a</line><line>b</line></order></orders>",
    )
    csv_connector = make_file_connector(path=str(drop_folder / "csv"))
    (drop_folder / "csv").mkdir()
    drop(drop_folder / "csv", "m.csv", 'note,extra\nfine,1\n"two\nlines"\n')

    process(xml)
    polling.poll(csv_connector)

    assert Job.objects.get(connector=xml).input_data == {"text": "n"}
    from connectors.files.formats import FileFormat, read_rows

    [row] = read_rows(
        drop_folder / "archive" / SourceFile.objects.get(connector=xml).name,
        FileFormat(kind="xml", record_element="order"),
    )
    assert row.record == {"note": "n", "line": ["a", "b"]}
    errors = SourceFile.objects.get(connector=csv_connector).errors
    assert errors == [{"row": 2, "line": 3, "error": "expected 2 fields, found 1"}]  # not 4


def test_the_poll_lock_is_renewed_while_a_long_poll_runs(make_file_connector, monkeypatch):
    connector = make_file_connector()
    monkeypatch.setattr(polling, "POLL_LOCK_SECONDS", 0.3)

    with polling.exclusive(connector) as held:
        time.sleep(1.0)  # three lock lifetimes
        with polling.exclusive(connector) as other:
            assert held and not other  # still held: it was renewed
    with polling.exclusive(connector) as after:
        assert after  # released at the end
