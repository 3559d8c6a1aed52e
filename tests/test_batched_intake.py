"""A request's records are redacted in one batch: the same result as one by one, two detector
calls per body, and a record whose redaction fails is refused alone (or refuses the request)."""

import json

import pytest
from django.db import IntegrityError, transaction

from connectors import audit, bulk, jobs, redaction
from connectors.errors import RedactionError
from connectors.models import AuditEvent, Job
from connectors.redaction import Rule, redact, redact_many
from connectors.work import Submission
from tests.conftest import post_records
from tests.test_bulk import job

KEY = b"test-key"
RULES = [Rule("ssn", "tokenize"), Rule("email", "mask"), Rule("phone", "hash")]
RECORDS = [
    {"text": "SSN 219-09-9999 and 078-05-1120", "contact": "jo@example.com"},
    {"text": "SSN 078-05-1120, then 219-09-9999", "contact": "call +1 415-555-0100"},
    {"text": "nothing here", "contact": {"mail": "jo@example.com", "ids": [219099999]}},
    {"text": "SSN 219-09-9999 and 078-05-1120", "contact": "jo@example.com"},  # a repeat
    {"text": "area (415)", "contact": "555-0100"},  # whole only in the prompt
]


def render(fields: dict) -> str:
    return f"Prompt: {fields['text']} {fields['contact']}"


def failing_on(word: str, also: str = ""):
    """An ssn detector that raises on texts holding `word` (and `also`), else finds nothing."""

    def find(scan):
        if word in scan.text and also in scan.text:
            raise RuntimeError(f"boom {scan.text}")
        return iter(())

    return redaction.Detector(find)


def test_a_batch_redacts_each_record_exactly_as_alone():
    batched = redact_many(RECORDS, RULES, hash_key=KEY, prompt=render)

    alone = [redact(record, RULES, hash_key=KEY, prompt=render) for record in RECORDS]
    assert batched == alone  # fields, tokens, hits, spans, prompt and its spans
    assert batched[1].tokens == {"<SSN_1>": "078-05-1120", "<SSN_2>": "219-09-9999"}
    assert batched[0].tokens == {"<SSN_1>": "219-09-9999", "<SSN_2>": "078-05-1120"}
    assert batched[4].prompt_spans and batched[4].prompt.startswith("Prompt: area [PHONE ")


def test_a_batch_runs_the_detectors_once_over_the_fields_and_once_over_the_prompts(
    monkeypatch,
):
    calls = []
    detect = redaction.detect

    def counting(texts, *args, **kwargs):
        calls.append(len(texts))
        return detect(texts, *args, **kwargs)

    prompts = {render(result.fields) for result in redact_many(RECORDS, RULES, hash_key=KEY)}
    monkeypatch.setattr(redaction, "detect", counting)

    redact_many(RECORDS * 20, RULES, hash_key=KEY, prompt=render)

    assert len(calls) == 2  # 100 records: each text detected once, each prompt once
    assert calls[1] == len(prompts) == 4


def test_a_detector_failing_on_one_record_refuses_that_record_alone(monkeypatch):
    monkeypatch.setitem(redaction.DETECTORS, "ssn", failing_on("secret-9"))
    records = [{"text": "fine", "contact": "a"}, {"text": "secret-9", "contact": "b"}]
    records.append({"text": "fine too", "contact": "c"})

    results = redact_many(records, RULES, hash_key=KEY, prompt=render)

    assert isinstance(results[1], RedactionError)
    assert "secret-9" not in str(results[1])
    assert "the ssn detector failed (RuntimeError)" in str(results[1])
    assert results[0] == redact(records[0], RULES, hash_key=KEY, prompt=render)
    assert results[2] == redact(records[2], RULES, hash_key=KEY, prompt=render)


def test_a_prompt_scan_failing_on_one_record_refuses_that_record_alone(monkeypatch):
    # The field alone passes; only its rendered prompt makes the detector fail.
    monkeypatch.setitem(redaction.DETECTORS, "ssn", failing_on("secret-9", also="Prompt:"))
    records = [{"text": "secret-9", "contact": "a"}, {"text": "fine", "contact": "b"}]

    results = redact_many(records, RULES, hash_key=KEY, prompt=render)

    assert isinstance(results[0], RedactionError) and "secret-9" not in str(results[0])
    assert results[1].prompt == "Prompt: fine b"


def test_an_invalid_rule_refuses_the_whole_batch():
    with pytest.raises(RedactionError, match="a rule is invalid"):
        redact_many(RECORDS, [Rule("regex", "mask", pattern="(")], hash_key=KEY)


@pytest.mark.django_db
def test_a_body_with_one_record_failing_redaction_is_refused_whole(
    client, make_connector, api_key, monkeypatch
):
    connector = make_connector("invoices", redaction=[("ssn", "mask")])
    key = api_key(connector)[1]
    monkeypatch.setitem(redaction.DETECTORS, "ssn", failing_on("secret-9"))
    body = {"records": [{"text": "fine"}, {"text": "the secret-9 one"}, {"text": "fine"}]}

    response = post_records(client, "invoices", body, key=key)

    assert response.status_code == 422
    assert response.json()["code"] == "redaction_failed"
    assert response.json()["index"] == 1
    assert "secret-9" not in response.content.decode()
    assert not Job.objects.exists()
    assert not AuditEvent.objects.filter(action="job.created").exists()


@pytest.mark.django_db
def test_a_source_batch_with_one_record_failing_redaction_stores_the_others(
    make_connector, monkeypatch
):
    connector = make_connector("invoices", redaction=[("ssn", "mask")])
    monkeypatch.setitem(redaction.DETECTORS, "ssn", failing_on("secret-9"))
    records = [{"text": "row one"}, {"text": "secret-9 row"}, {"text": "row three"}]
    rejected: list[jobs.RecordRejected] = []

    results = jobs.submit(
        connector,
        [Submission(record) for record in records],
        audit.Actor.system("test"),
        rejected=rejected,
    )

    assert [(r.index, r.error.code) for r in rejected] == [(1, "redaction_failed")]
    assert [job.prompt for job, _ in results] == ["Classify: row one", "Classify: row three"]
    stored = json.dumps(list(Job.objects.values("input_data", "prompt")))
    assert "secret-9" not in stored and Job.objects.count() == 2


@pytest.mark.django_db
def test_a_bulk_insert_that_breaks_a_unique_constraint_raises_django_s_integrity_error(
    make_connector,
):
    connector = make_connector("invoices")
    bulk.insert([job(connector, "same")])

    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.insert([job(connector, "same")])

    assert Job.objects.count() == 1
