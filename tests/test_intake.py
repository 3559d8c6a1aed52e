"""The webhook intake: auth, signatures, idempotency, batches and every refusal."""

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from connectors import jobs, legacy_json
from connectors.models import AuditEvent, Job, WebhookReceipt
from connectors.sources.webhook import WebhookSource
from tests.conftest import post_records

pytestmark = pytest.mark.django_db(transaction=True)


def signed_headers(secret, body: bytes, *, msg_id=None, at=None):
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


@pytest.fixture
def connector(make_connector):
    return make_connector("invoices")


def test_accepts_one_record_with_202_and_a_pending_or_queued_job(client, connector, key):
    response = post_records(client, "invoices", {"text": "hello"}, key=key)

    assert response.status_code == 202
    [job_ref] = response.json()["jobs"]
    job = Job.objects.get(id=job_ref["id"])
    assert job_ref["url"] == f"/api/v1/jobs/{job.id}/"
    assert job.status == Job.Status.QUEUED
    assert job.input_data == {"text": "hello"}
    assert job.prompt == "Classify: hello"
    assert AuditEvent.objects.filter(action="job.created", object_id=str(job.id)).count() == 1


def test_x_api_key_header_is_accepted(client, connector, key):
    response = client.post(
        "/api/v1/connectors/invoices/records/",
        data='{"text": "x"}',
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )

    assert response.status_code == 202


def test_batch_of_records_is_inserted_in_one_request(client, connector, key):
    records = [{"text": f"record {n}"} for n in range(1000)]

    response = post_records(client, "invoices", {"records": records}, key=key)

    assert response.status_code == 202
    assert len(response.json()["jobs"]) == 1000
    assert Job.objects.count() == 1000
    assert sorted(Job.objects.values_list("prompt", flat=True))[:2] == [
        "Classify: record 0",
        "Classify: record 1",
    ]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ("{not json", 400, "malformed_json"),
        ("", 400, "empty_body"),
        ('{"records": []}', 400, "invalid_body"),
        ('{"records": {"a": 1}}', 400, "invalid_body"),
        ('"just a string"', 400, "invalid_record"),
        ('{"records": [{"text": "a"}, 42]}', 400, "invalid_record"),
        ('{"text": NaN}', 400, "malformed_json"),
        ('{"other": "no text"}', 422, "missing_field"),
    ],
)
def test_refuses_bad_bodies_with_a_clear_code_and_stores_nothing(
    client, connector, key, raw, status, code
):
    response = post_records(client, "invoices", None, key=key, raw=raw)

    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["detail"]
    assert Job.objects.count() == 0


def test_missing_required_field_names_the_field_and_record(client, connector, key):
    body = {"records": [{"text": "ok"}, {"nope": 1}]}

    response = post_records(client, "invoices", body, key=key)

    assert response.status_code == 422
    assert response.json()["field"] == "text"
    assert response.json()["index"] == 1
    assert Job.objects.count() == 0


def test_refuses_oversize_body_and_batch(client, connector, key, settings):
    settings.INTAKE_MAX_BODY_BYTES = 100
    response = post_records(client, "invoices", {"text": "x" * 200}, key=key)
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")
    assert response.json()["limit"] == 100

    settings.INTAKE_MAX_BODY_BYTES = 10_000_000
    settings.INTAKE_MAX_BATCH = 3
    response = post_records(client, "invoices", {"records": [{"text": "a"}] * 4}, key=key)
    assert (response.status_code, response.json()["code"]) == (413, "batch_too_large")
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("authorization", "code"),
    [(None, "not_authenticated"), ("Bearer ilk_wrong", "invalid_api_key")],
)
def test_refuses_missing_or_wrong_key(client, connector, authorization, code):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.post(
        "/api/v1/connectors/invoices/records/",
        data='{"text": "a"}',
        content_type="application/json",
        **extra,
    )

    assert response.status_code == 401
    assert response.json()["code"] == code
    assert Job.objects.count() == 0


def test_refuses_revoked_key(client, connector, api_key):
    record, plain, _ = api_key(connector)
    record.revoked_at = datetime.now(tz=UTC)
    record.save()

    response = post_records(client, "invoices", {"text": "a"}, key=plain)

    assert (response.status_code, response.json()["code"]) == (401, "invalid_api_key")


def test_refuses_unknown_slug_and_another_connectors_slug(client, connector, key, make_connector):
    make_connector("other")

    unknown = post_records(client, "nope", {"text": "a"}, key=key)
    other = post_records(client, "other", {"text": "a"}, key=key)

    assert (unknown.status_code, unknown.json()["code"]) == (404, "connector_not_found")
    assert (other.status_code, other.json()["code"]) == (403, "key_not_for_connector")
    assert Job.objects.count() == 0


def test_disabled_connector_refuses_with_retry_after(client, connector, key):
    connector.is_enabled = False
    connector.save()

    response = post_records(client, "invoices", {"text": "a"}, key=key)

    assert (response.status_code, response.json()["code"]) == (503, "connector_disabled")
    assert response["Retry-After"] == "60"
    assert Job.objects.count() == 0


@pytest.fixture
def early_in_a_minute():
    """The intake limit counts per minute: keep a test's requests inside one window."""
    while time.time() % 60 > 55:
        time.sleep(0.5)


@pytest.mark.usefixtures("early_in_a_minute")
def test_a_connector_over_its_requests_per_minute_is_refused_with_retry_after(
    client, connector, key, api_key, redis_client
):
    connector.source_config = {"requests_per_minute": 2}
    connector.save()
    second_key = api_key(connector)[1]

    accepted = [
        post_records(client, "invoices", {"text": "a"}, key=k).status_code for k in (key, key)
    ]
    refused = post_records(
        client, "invoices", {"text": "b"}, key=second_key
    )  # keys share the limit

    assert accepted == [202, 202]
    body = refused.json()
    assert (refused.status_code, body["code"], body["limit"]) == (429, "rate_limited", 2)
    assert 1 <= int(refused["Retry-After"]) <= 60 and body["retry_after"] == int(
        refused["Retry-After"]
    )
    assert Job.objects.count() == 2  # nothing of the refused request was stored
    assert redis_client.keys("interlock:rpm:intake:invoices:*")  # one count for every process


@pytest.mark.usefixtures("early_in_a_minute")
def test_the_intake_limit_counts_per_connector_and_defaults_to_the_setting(
    client, connector, key, make_connector, api_key, settings
):
    settings.INTAKE_REQUESTS_PER_MINUTE = 1
    other_key = api_key(make_connector("orders"))[1]

    first, second = (post_records(client, "invoices", {"text": "a"}, key=key) for _ in range(2))
    other = post_records(client, "orders", {"text": "a"}, key=other_key)

    assert (first.status_code, second.status_code, other.status_code) == (202, 429, 202)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"requests_per_minute": 0}, "at least 1"),
        ({"requests_per_minute": "60"}, "whole number"),
        ({"rate": 60}, "unknown keys rate"),
    ],
)
def test_the_webhook_source_config_is_validated(config, message):
    assert WebhookSource.validate_config({"requests_per_minute": 60}) == {"requests_per_minute": 60}
    with pytest.raises(ValueError, match=message):
        WebhookSource.validate_config(config)


def make_the_database_unreachable(monkeypatch) -> None:
    """Point the connection at a database that is not there: the next query fails for real."""
    unreachable = (
        {"NAME": "/nonexistent/interlock.sqlite3"}
        if connection.vendor == "sqlite"
        else {"HOST": "127.0.0.1", "PORT": "1"}
    )
    for name, value in unreachable.items():
        monkeypatch.setitem(connection.settings_dict, name, value)
    connection.close()  # the next query opens a new connection, which fails


def test_an_unreachable_database_is_a_503_to_retry_not_a_500(client, key, monkeypatch):
    make_the_database_unreachable(monkeypatch)
    try:
        response = post_records(client, "invoices", {"text": "a"}, key=key)
    finally:
        monkeypatch.undo()
        connection.close()

    assert (response.status_code, response.json()["code"]) == (503, "database_unavailable")
    assert response["Retry-After"] == "5"


@pytest.mark.parametrize(
    ("moment", "query"),
    [("before_enqueue", ""), ("after_enqueue", ""), ("after_enqueue", "?wait=1")],
)
def test_jobs_committed_before_the_database_went_away_are_answered_202(
    client, key, monkeypatch, moment, query
):
    """A refusal after the commit would make a caller without an Idempotency-Key send the
    records again: a second job for each."""
    enqueue_created = jobs.enqueue_created

    def enqueue_as_the_database_goes_away(created):
        if moment == "before_enqueue":
            make_the_database_unreachable(monkeypatch)
        enqueue_created(created)
        make_the_database_unreachable(monkeypatch)

    monkeypatch.setattr(jobs, "enqueue_created", enqueue_as_the_database_goes_away)
    body = {"records": [{"text": "a"}, {"text": "b"}]}
    try:
        response = post_records(client, "invoices", body, key=key, query=query)
    finally:
        monkeypatch.undo()
        connection.close()

    assert response.status_code == 202
    refs = response.json()["jobs"]
    stored = dict(Job.objects.values_list("id", "status"))
    assert sorted(ref["id"] for ref in refs) == sorted(str(job_id) for job_id in stored)
    # Committed as queued in the RQ job the enqueue sends (it needs Redis, not the database).
    assert [ref["status"] for ref in refs] == ["queued", "queued"]
    assert set(stored.values()) == {"queued"}
    if moment == "before_enqueue":
        jobs.reconcile(now=timezone.now() + timedelta(minutes=1))  # nothing lost: left alone
        assert set(Job.objects.values_list("status", flat=True)) == {"queued"}


def test_jobs_whose_process_died_before_the_enqueue_are_enqueued_by_the_reconciler(
    client, key, monkeypatch, settings
):
    monkeypatch.setattr(jobs, "enqueue_created", lambda created: None)  # died at the commit
    response = post_records(client, "invoices", {"text": "a"}, key=key)
    monkeypatch.undo()
    [job] = Job.objects.all()
    assert response.status_code == 202 and job.status == "queued"
    assert jobs.get_queue().count == 0  # its RQ job was never sent

    counts = jobs.reconcile(now=timezone.now() + timedelta(seconds=60))

    assert counts["stale_queued"] == 1
    assert jobs.get_queue().count == 1


def test_jobs_that_redis_refused_at_intake_are_pending_again(client, key, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    body = {"records": [{"text": "a"}, {"text": "b"}]}
    response = post_records(client, "invoices", body, key=key)

    assert [ref["status"] for ref in response.json()["jobs"]] == ["pending", "pending"]
    assert set(Job.objects.values_list("status", "rq_job_id")) == {("pending", "")}


@pytest.mark.parametrize("depth", [600, 5000, 100_000])
def test_a_record_nested_too_deeply_is_an_invalid_body_and_stores_nothing(client, key, depth):
    raw = '{"text": ' + '{"a": ' * depth + '"deep"' + "}" * depth + "}"

    response = post_records(client, "invoices", None, key=key, raw=raw)

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_body",
        "detail": "the JSON is nested more than 64 levels deep",
        "limit": legacy_json.MAX_DEPTH,
    }
    assert Job.objects.count() == 0
    assert not AuditEvent.objects.filter(action="job.created").exists()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"text": 1e999}', "too large"),
        ('{"text": NaN}', "NaN is not valid JSON"),
    ],
)
def test_json_no_row_can_hold_is_a_400(client, key, raw, reason):
    response = post_records(client, "invoices", None, key=key, raw=raw)

    assert (response.status_code, response.json()["code"]) == (400, "malformed_json")
    assert reason in response.json()["detail"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (r'{"text": "a\u0000b"}', "text contains a NUL character"),
        (r'{"text": "a\ud800b"}', "text contains an unpaired surrogate"),
    ],
)
def test_values_no_database_can_store_are_refused_by_name(client, key, raw, reason):
    response = post_records(client, "invoices", None, key=key, raw=raw)

    assert (response.status_code, response.json()["code"]) == (422, "invalid_value")
    assert reason in response.json()["detail"]
    assert Job.objects.count() == 0


def test_a_reused_idempotency_key_with_another_record_is_refused(client, key):
    batch = post_records(
        client,
        "invoices",
        {"records": [{"text": "batch"}]},
        key=key,
        headers={"Idempotency-Key": "K"},
    )
    single = post_records(
        client, "invoices", {"text": "a new record"}, key=key, headers={"Idempotency-Key": "K:0"}
    )  # the batch's record 0 has key K:0
    retry = post_records(
        client, "invoices", {"text": "batch"}, key=key, headers={"Idempotency-Key": "K:0"}
    )

    assert batch.status_code == 202
    assert (single.status_code, single.json()["code"]) == (409, "idempotency_key_reused")
    assert retry.status_code == 202  # the same record again is a replay, not a conflict
    assert retry.json()["jobs"][0]["id"] == batch.json()["jobs"][0]["id"]
    assert Job.objects.count() == 1


def test_a_missing_trailing_slash_is_forgiven(client, key):
    response = client.post(
        "/api/v1/connectors/invoices/records",
        data=json.dumps({"text": "no slash"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )

    assert response.status_code == 202
    job_id = response.json()["jobs"][0]["id"]
    assert (
        client.get(f"/api/v1/jobs/{job_id}", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    )


def test_an_idempotency_key_with_a_trailing_newline_is_refused(client, key):
    response = post_records(
        client, "invoices", {"text": "a"}, key=key, headers={"Idempotency-Key": "abc\n"}
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_idempotency_key")


def test_an_overlong_webhook_id_is_refused_not_truncated(client, connector, api_key):
    _, key, secret = api_key(connector, signed=True)
    body = json.dumps({"text": "signed"}).encode()

    response = post_records(
        client,
        "invoices",
        None,
        key=key,
        raw=body,
        headers=signed_headers(secret, body, msg_id="m" * 256),
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_webhook_id")


def test_unknown_api_path_answers_json_404(client):
    response = client.get("/api/v1/nothing-here/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_idempotency_key_returns_the_same_job(client, connector, key):
    first = post_records(
        client, "invoices", {"text": "a"}, key=key, headers={"Idempotency-Key": "inv-42"}
    )
    second = post_records(
        client, "invoices", {"text": "a"}, key=key, headers={"Idempotency-Key": "inv-42"}
    )

    assert first.status_code == second.status_code == 202
    assert first.json()["jobs"][0]["id"] == second.json()["jobs"][0]["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1


def test_idempotency_key_applies_per_record_of_a_batch(client, connector, key):
    body = {"records": [{"text": "a"}, {"text": "b"}]}
    first = post_records(client, "invoices", body, key=key, headers={"Idempotency-Key": "batch-1"})
    second = post_records(client, "invoices", body, key=key, headers={"Idempotency-Key": "batch-1"})

    assert [j["id"] for j in first.json()["jobs"]] == [j["id"] for j in second.json()["jobs"]]
    assert sorted(Job.objects.values_list("idempotency_key", flat=True)) == [
        "batch-1:0",
        "batch-1:1",
    ]


def test_invalid_idempotency_key_is_refused(client, connector, key):
    response = post_records(
        client, "invoices", {"text": "a"}, key=key, headers={"Idempotency-Key": "x" * 201}
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_idempotency_key")


@pytest.fixture
def signed(connector, api_key):
    _, plain, secret = api_key(connector, signed=True)
    return plain, secret


def test_accepts_a_valid_signature(client, signed):
    plain, secret = signed
    body = b'{"text": "signed"}'

    response = post_records(
        client, "invoices", None, key=plain, raw=body, headers=signed_headers(secret, body)
    )

    assert response.status_code == 202
    assert WebhookReceipt.objects.count() == 1


def test_accepts_when_any_of_several_signatures_matches(client, signed):
    plain, secret = signed
    body = b'{"text": "rotating"}'
    headers = signed_headers(secret, body)
    old = Webhook("whsec_" + base64.b64encode(b"o" * 32).decode())
    stale = old.sign(headers["webhook-id"], datetime.now(tz=UTC), body.decode())
    headers["webhook-signature"] = f"{stale} {headers['webhook-signature']}"

    response = post_records(client, "invoices", None, key=plain, raw=body, headers=headers)

    assert response.status_code == 202


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("no_headers", "signature_required"),
        ("bad_signature", "invalid_signature"),
        ("garbage_signature", "invalid_signature"),
        ("body_changed", "invalid_signature"),
        ("too_old", "timestamp_out_of_tolerance"),
        ("too_new", "timestamp_out_of_tolerance"),
    ],
)
def test_refuses_bad_signatures(client, signed, tamper, code):
    plain, secret = signed
    body = b'{"text": "signed"}'
    now = time.time()
    at = {"too_old": now - 360, "too_new": now + 360}.get(tamper, now)
    headers = signed_headers(secret, body, at=datetime.fromtimestamp(at, tz=UTC))
    if tamper == "no_headers":
        headers = {}
    if tamper == "bad_signature":
        headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    if tamper == "garbage_signature":
        headers["webhook-signature"] = "nonsense"
    sent = b'{"text": "changed"}' if tamper == "body_changed" else body

    response = post_records(client, "invoices", None, key=plain, raw=sent, headers=headers)

    assert (response.status_code, response.json()["code"]) == (401, code)
    assert Job.objects.count() == 0


def test_refuses_a_replayed_webhook_id(client, signed):
    plain, secret = signed
    body = b'{"text": "once"}'
    headers = signed_headers(secret, body, msg_id="msg_replay")

    first = post_records(client, "invoices", None, key=plain, raw=body, headers=headers)
    replay = post_records(client, "invoices", None, key=plain, raw=body, headers=headers)

    assert first.status_code == 202
    assert (replay.status_code, replay.json()["code"]) == (409, "webhook_replayed")
    assert Job.objects.count() == 1


def test_a_refused_record_does_not_burn_its_webhook_id(client, signed):
    """A sender that fixes its record and retries with the same message id must get through."""
    plain, secret = signed
    bad, good = b'{"nothing": 1}', b'{"text": "fixed"}'

    refused = post_records(
        client,
        "invoices",
        None,
        key=plain,
        raw=bad,
        headers=signed_headers(secret, bad, msg_id="msg_1"),
    )
    accepted = post_records(
        client,
        "invoices",
        None,
        key=plain,
        raw=good,
        headers=signed_headers(secret, good, msg_id="msg_1"),
    )

    assert refused.status_code == 422
    assert accepted.status_code == 202


def test_a_signing_key_reads_its_jobs_with_the_key_alone_but_a_bad_signature_is_refused(
    client, signed
):
    plain, secret = signed
    body = b'{"text": "signed"}'
    posted = post_records(
        client, "invoices", None, key=plain, raw=body, headers=signed_headers(secret, body)
    )
    url = posted.json()["jobs"][0]["url"]
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {plain}"}
    old = datetime.fromtimestamp(time.time() - 301, tz=UTC)

    key_alone = client.get(url, **bearer)
    signed_read = client.get(url, **bearer, **http_headers(signed_headers(secret, b"")))
    bad = signed_headers(secret, b"")
    bad["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    badly_signed = client.get(url, **bearer, **http_headers(bad))
    stale = client.get(url, **bearer, **http_headers(signed_headers(secret, b"", at=old)))
    partly = client.get(url, **bearer, HTTP_WEBHOOK_ID="msg_1")

    assert (key_alone.status_code, key_alone.json()["id"]) == (200, posted.json()["jobs"][0]["id"])
    assert signed_read.status_code == 200
    assert (badly_signed.status_code, badly_signed.json()["code"]) == (401, "invalid_signature")
    assert (stale.status_code, stale.json()["code"]) == (401, "timestamp_out_of_tolerance")
    assert (partly.status_code, partly.json()["code"]) == (401, "signature_required")


def http_headers(headers: dict) -> dict:
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


def test_job_is_visible_only_to_keys_of_its_connector(
    client, connector, key, make_connector, api_key
):
    other_key = api_key(make_connector("other"))[1]
    job_id = post_records(client, "invoices", {"text": "a"}, key=key).json()["jobs"][0]["id"]

    mine = client.get(f"/api/v1/jobs/{job_id}/", HTTP_AUTHORIZATION=f"Bearer {key}")
    theirs = client.get(f"/api/v1/jobs/{job_id}/", HTTP_AUTHORIZATION=f"Bearer {other_key}")

    assert mine.status_code == 200
    assert mine.json()["id"] == job_id
    assert mine.json()["status"] == "queued"
    assert (theirs.status_code, theirs.json()["code"]) == (404, "job_not_found")


def test_health_reports_database_redis_queue_and_workers(client, connector, key):
    post_records(client, "invoices", {"records": [{"text": "a"}, {"text": "b"}]}, key=key)

    body = client.get("/api/v1/health/").json()

    assert body == {"database": "ok", "redis": "ok", "queue_depth": 1, "workers": 0, "status": "ok"}


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/v1/schema/?format=json")
    docs = client.get("/api/v1/docs/")

    assert schema.status_code == 200
    assert "/api/v1/connectors/{slug}/records/" in schema.json()["paths"]
    assert docs.status_code == 200
    assert b"cdn.jsdelivr" not in docs.content
