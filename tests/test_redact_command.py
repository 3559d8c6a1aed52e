"""manage.py redact: JSON lines in, one JSON line out per input, a stable shape."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parent.parent


def run(*args) -> list[dict]:
    out = io.StringIO()
    call_command("redact", *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_redacts_a_file_of_texts_with_every_detector(tmp_path):
    sample = tmp_path / "sample.jsonl"
    sample.write_text(
        json.dumps({"text": "SSN 401687488, Tel. +49(0) 313058901"})
        + "\n\n"
        + json.dumps({"text": "IBAN DE39 7069 0059 2922 4469 62, PO 4500012345"})
        + "\n",
        encoding="utf-8",
    )

    lines = run(str(sample), "--all-detectors")

    assert lines == [
        {
            "text": "SSN [REDACTED SSN], Tel. [REDACTED PHONE]",
            "spans": [
                {"start": 4, "end": 13, "type": "ssn", "action": "mask"},
                {"start": 20, "end": 36, "type": "phone", "action": "mask"},
            ],
        },
        {
            "text": "IBAN [REDACTED IBAN], PO 4500012345",
            "spans": [{"start": 5, "end": 32, "type": "iban", "action": "mask"}],
        },
    ]


def test_a_bad_line_gives_an_error_line_that_quotes_nothing_and_the_rest_goes_on(tmp_path):
    sample = tmp_path / "sample.jsonl"
    sample.write_text(
        '{"text": "call 030 1234567"\n'  # cut off
        '{"txt": "219-09-9999"}\n'
        '{"text": "mail jo@example.com"}\n',
        encoding="utf-8",
    )
    out = io.StringIO()

    with pytest.raises(CommandError, match="2 of 3 lines could not be redacted"):
        call_command("redact", str(sample), "--detectors", "email,phone", stdout=out)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [set(line) for line in lines] == [{"error"}, {"error"}, {"text", "spans"}]
    assert lines[0]["error"].startswith("line 1: not valid JSON")
    assert lines[1]["error"] == 'line 2: expected an object with a "text" string'
    assert "1234567" not in out.getvalue() and "219-09" not in out.getvalue()
    assert lines[2]["text"] == "mail [REDACTED EMAIL]"


def test_reads_standard_input():
    texts = [{"text": "Tel. 0171 1234567"}, {"text": "nothing here"}]

    done = subprocess.run(
        [sys.executable, "manage.py", "redact", "--detectors", "phone", "--phone-regions", "DE"],
        input="".join(json.dumps(text) + "\n" for text in texts),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ},
        check=True,
    )

    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {
            "text": "Tel. [REDACTED PHONE]",
            "spans": [{"start": 5, "end": 17, "type": "phone", "action": "mask"}],
        },
        {"text": "nothing here", "spans": []},
    ]


def test_a_connector_redacts_whole_records_as_its_intake_does(tmp_path, make_connector):
    make_connector(
        "tickets",
        inputs=(("body", "body", True), ("customer.email", "email", False)),
        redaction=(("email", "tokenize"), ("phone", "mask"), ("field", "mask")),
        prompt="{{ body }} ({{ email }})",
        sink_kind="none",
    )
    from connectors.models import RedactionRule

    RedactionRule.objects.filter(detector="field").update(field_name="email")
    sample = tmp_path / "records.jsonl"
    sample.write_text(
        json.dumps({"body": "Call 030 1234567", "customer": {"email": "jo@example.com"}})
        + "\n"
        + json.dumps({"customer": {}})  # the required body is missing
        + "\n",
        encoding="utf-8",
    )
    out = io.StringIO()

    with pytest.raises(CommandError):
        call_command("redact", str(sample), "--connector", "tickets", stdout=out)

    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first == {
        "record": {"body": "Call [REDACTED PHONE]", "email": "[REDACTED EMAIL]"},
        "spans": {
            "body": [{"start": 5, "end": 16, "type": "phone", "action": "mask"}],
            "email": [{"start": 0, "end": 14, "type": "field", "action": "mask"}],
        },
        "prompt": "Call [REDACTED PHONE] ([REDACTED EMAIL])",
    }
    assert second == {"error": "line 2: mapping_error: required field 'body' is missing"}


def test_an_unknown_detector_or_connector_is_refused(db):
    with pytest.raises(CommandError, match="unknown detector 'dna'"):
        call_command("redact", "--detectors", "phone,dna")
    with pytest.raises(CommandError, match="no connector 'nope'"):
        call_command("redact", "--connector", "nope")


def test_the_help_documents_the_shape():
    done = subprocess.run(
        [sys.executable, "manage.py", "redact", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )

    assert '{"text": "<redacted>", "spans": [{"start"' in done.stdout
    assert '"record": {<the redacted fields>}' in done.stdout
    assert "stable interface" in done.stdout
