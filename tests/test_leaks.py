"""A canary secret and a canary SSN must never surface anywhere we write or show."""

import io
import json
import logging

import pytest
from django.core.management import call_command
from django.urls import reverse

from connectors import jobs
from connectors.models import AuditEvent, Credential, Job, JobAttempt
from tests.conftest import CANARY_SECRET, CANARY_SSN
from tests.fixtures_http import FAKE_KINDS
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)
CANARIES = (CANARY_SECRET, CANARY_SSN)


def redis_dumps(redis_client) -> dict[bytes, str]:
    """Every key of the test's Redis database with its whole value as text."""
    dumps = {}
    for key in redis_client.scan_iter():
        if redis_client.type(key) == b"hash":
            dumps[key] = json.dumps({str(k): str(v) for k, v in redis_client.hgetall(key).items()})
        else:
            dumps[key] = str(redis_client.dump(key))
    return dumps


@pytest.fixture
def redis_while_queued():
    """What Redis held after the record was accepted and before any worker ran (filled below)."""
    return {"keys": {}, "payloads": []}


@pytest.fixture
def processed_job(
    client,
    make_connector,
    openai_provider,
    openai_server,
    callback_server,
    api_key,
    redis_client,
    redis_while_queued,
):
    sink_secret = Credential(name="erp-token", kind=Credential.Kind.BEARER)
    sink_secret.set_value(CANARY_SECRET + "-sink")
    sink_secret.save()
    connector = make_connector(
        "leaky",
        provider=openai_provider,
        inputs=[("note", "note", True), ("ssn", "ssn", False)],
        redaction=[("ssn", "tokenize")],
        prompt="{{ note }} {{ ssn }}",
        sink_kind="http",
        sink_config={"url": callback_server.url, "credential": "erp-token"},
        max_attempts=2,
    )
    openai_server.script([("status", 500)])
    openai_server.responder = lambda body: body["messages"][0]["content"]
    key = api_key(connector)[1]
    response = client.post(
        "/api/v1/connectors/leaky/records/",
        data=json.dumps({"note": "pay", "ssn": CANARY_SSN}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    job = Job.objects.get(id=response.json()["jobs"][0]["id"])
    redis_while_queued["keys"] = redis_dumps(redis_client)
    redis_while_queued["payloads"] = [queued.args for queued in jobs.get_queue().get_jobs()]
    drain()
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    # The callback (the legacy system, inside the walls) does get the real value back.
    assert CANARY_SSN in json.dumps(callback_server.received[-1][2])
    return job, key


def assert_clean(text: str, where: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"canary leaked into {where}"


def test_canaries_never_reach_stored_job_fields(processed_job):
    for row in Job.objects.values():
        assert_clean(json.dumps(row, default=str), "a job row")
    for row in JobAttempt.objects.values():
        assert_clean(json.dumps(row, default=str), "an attempt row")
    for row in AuditEvent.objects.values():
        assert_clean(json.dumps(row, default=str), "an audit event")
    for row in Credential.objects.values():
        assert_clean(json.dumps(row, default=str), "a credential row")


def test_canaries_never_reach_redis(processed_job, redis_client, redis_while_queued):
    job, _ = processed_job
    # The enqueued payload is the job's id and nothing of the record.
    assert redis_while_queued["payloads"] == [([str(job.id)],)]
    queued = redis_while_queued["keys"]
    assert any(key.startswith(b"rq:job:") for key in queued), "no queued RQ job was scanned"

    after_the_worker = redis_dumps(redis_client)
    assert after_the_worker, "the worker left nothing in Redis to check"
    for key, dump in {**queued, **after_the_worker}.items():
        assert_clean(dump, f"redis key {key!r}")


def test_canaries_never_reach_api_answers(client, processed_job):
    job, key = processed_job
    answer = client.get(f"/api/v1/jobs/{job.id}/", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert answer.status_code == 200
    assert_clean(answer.content.decode(), "the job API")


def test_canaries_never_reach_logs(
    client, make_connector, openai_provider, openai_server, api_key, caplog
):
    caplog.set_level(logging.DEBUG)
    connector = make_connector(
        "logs",
        provider=openai_provider,
        inputs=[("ssn", "ssn", True)],
        redaction=[("ssn", "mask")],
        prompt="{{ ssn }}",
        max_attempts=1,
    )
    openai_server.script([("status", 401)])
    key = api_key(connector)[1]
    client.post(
        "/api/v1/connectors/logs/records/",
        data=json.dumps({"ssn": CANARY_SSN}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    drain()

    assert Job.objects.get().status == Job.Status.DEAD
    assert caplog.records, "expected the failure to be logged somewhere"
    assert_clean(caplog.text, "the logs")


def test_canaries_never_reach_admin_pages(admin_client, processed_job):
    job, _ = processed_job
    credential = Credential.objects.get(name="openai-key")
    pages = [
        reverse("admin:connectors_job_changelist"),
        reverse("admin:connectors_job_change", args=[job.id]),
        reverse("admin:connectors_credential_changelist"),
        reverse("admin:connectors_credential_change", args=[credential.id]),
        reverse("admin:connectors_provider_changelist"),
        reverse("admin:connectors_auditevent_changelist"),
        reverse("admin:connectors_connector_changelist"),
        reverse("admin:connectors_connector_change", args=[job.connector_id]),  # kind forms
        reverse("admin:connectors_provider_change", args=[job.connector.provider_id]),
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert_clean(response.content.decode(), page)
    tested = admin_client.post(
        reverse("admin:connectors_connector_test_delivery", args=[job.connector_id]), follow=True
    )
    assert "Test delivery: delivered to" in tested.content.decode()
    assert_clean(tested.content.decode(), "the test delivery's answer")


def test_canaries_never_reach_exports(processed_job):
    for fmt in ("yaml", "json"):
        out = io.StringIO()
        call_command("export_config", "--format", fmt, stdout=out)
        assert "leaky" in out.getvalue()
        assert_clean(out.getvalue(), f"the {fmt} export")


def test_canaries_never_reach_the_console_exports_or_metrics(admin_client, processed_job):
    job, _ = processed_job
    answers = {
        "the audit CSV": reverse("admin:connectors_auditevent_export", args=["csv"]),
        "the audit JSON Lines": reverse("admin:connectors_auditevent_export", args=["jsonl"]),
    }
    for where, url in answers.items():
        response = admin_client.get(url)
        assert response.status_code == 200, where
        assert_clean(b"".join(response.streaming_content).decode(), where)
    for where, url in {
        "the job lineage": reverse("admin:connectors_job_lineage", args=[job.id]),
        "the metrics": "/metrics",
        "the dashboard": reverse("admin:index"),
        "the source files page": reverse("admin:connectors_sourcefile_changelist"),
    }.items():
        response = admin_client.get(url)
        assert response.status_code == 200, where
        assert_clean(response.content.decode(), where)


def test_oauth2_client_secret_and_access_token_stay_out_of_jobs_logs_and_audit(
    client, make_connector, callback_server, token_server, api_key, caplog
):
    caplog.set_level(logging.DEBUG)
    client_secret = Credential(name="erp-oauth", kind=Credential.Kind.OAUTH2)
    client_secret.set_value(CANARY_SECRET)
    client_secret.save()
    connector = make_connector(
        "oauth",
        sink_kind="http",
        sink_config={
            "url": callback_server.url,
            "auth": "oauth2",
            "token_url": token_server.url,
            "client_id": "erp",
            "credential": "erp-oauth",
        },
        max_attempts=2,
    )
    echo = {"error": "temporarily_unavailable", "error_description": f"got {CANARY_SECRET}"}
    token_server.script([(503, echo)])  # a careless server echoes the secret it was sent
    key = api_key(connector)[1]
    client.post(
        "/api/v1/connectors/oauth/records/",
        data=json.dumps({"text": "pay"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )

    drain()

    job = Job.objects.get()
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 2)
    assert callback_server.received[0][0]["authorization"] == "Bearer access-1"
    stored = [*Job.objects.values(), *JobAttempt.objects.values(), *AuditEvent.objects.values()]
    dump = json.dumps(stored, default=str) + caplog.text
    assert "token endpoint answered HTTP 503" in dump  # the failure is recorded...
    assert CANARY_SECRET not in dump  # ...without the secret
    assert "access-1" not in dump


# The kinds that send the credential itself; token-based forms are covered in their own tests.
KEY_SENDING_KINDS = sorted(name for name, fake in FAKE_KINDS.items() if not fake.variant)


@pytest.mark.parametrize("fake_kind", KEY_SENDING_KINDS, indirect=True)
def test_no_provider_kind_lets_its_key_reach_a_job_log_page_export_or_message(
    request, client, admin_client, make_connector, fake_kind, api_key, caplog
):
    """Each kind's server quotes the key it refused (a careless server does): the key is
    scrubbed from the error before anything stores, logs or shows it."""

    caplog.set_level(logging.DEBUG)
    fake, server = fake_kind
    credential = request.getfixturevalue(fake.credential)
    connector = canary_connector(make_connector, fake, server, credential)
    server.script([("echo_key",), ("echo_key",)])
    client.post(
        "/api/v1/connectors/canary/records/",
        data=json.dumps({"ssn": CANARY_SSN}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key(connector)[1]}",
    )

    drain()
    tested = admin_client.post(
        reverse("admin:connectors_provider_changelist"),
        {"action": "test_connection", "_selected_action": [str(connector.provider.pk)]},
        follow=True,
    )

    job = Job.objects.get()
    assert (job.status, job.error_code) == (Job.Status.DEAD, "provider_error")
    assert "Incorrect API key provided: ***" in job.error_message  # the failure is named...
    assert all(CANARY_SSN not in prompt for prompt in server.prompts())
    stored = [*Job.objects.values(), *JobAttempt.objects.values(), *AuditEvent.objects.values()]
    assert_clean(json.dumps(stored, default=str), "the job, attempt and audit rows")
    assert_clean(caplog.text, "the logs")
    assert "Incorrect API key provided: ***" in tested.content.decode()
    assert_clean(tested.content.decode(), "the Test connection message")
    for page in (
        reverse("admin:connectors_provider_changelist"),
        reverse("admin:connectors_provider_change", args=[connector.provider.pk]),
        reverse("admin:connectors_job_change", args=[job.pk]),
        reverse("admin:connectors_job_lineage", args=[job.pk]),
    ):
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert_clean(response.content.decode(), page)
    exported = io.StringIO()
    call_command("export_config", stdout=exported)
    assert_clean(exported.getvalue(), "the export")


TOKEN_KINDS = sorted(name for name, fake in FAKE_KINDS.items() if fake.variant)


@pytest.mark.parametrize("fake_kind", TOKEN_KINDS, indirect=True)
def test_no_token_kind_lets_its_secret_or_token_reach_a_job_log_page_or_export(
    request, client, admin_client, make_connector, fake_kind, api_key, caplog
):
    """Vertex AI and Entra ID: the stored secret (a service account's private key, a client
    secret) goes only to the token endpoint, and neither it nor the access token it buys is
    stored, logged or shown; a token endpoint quoting the secret is scrubbed."""

    caplog.set_level(logging.DEBUG)
    fake, server = fake_kind
    credential = request.getfixturevalue(fake.credential)
    secret = credential.reveal()
    private = json.loads(secret)["private_key"] if secret.startswith("{") else secret
    connector = canary_connector(make_connector, fake, server, credential)
    post = {
        "data": json.dumps({"ssn": CANARY_SSN}),
        "content_type": "application/json",
        "HTTP_AUTHORIZATION": f"Bearer {api_key(connector)[1]}",
    }
    client.post("/api/v1/connectors/canary/records/", **post)
    drain()  # succeeds with a token
    server.tokens.script([(400, {"error": "invalid_client", "error_description": private})])
    from connectors import oauth2

    with oauth2._lock:
        oauth2._tokens.clear()
    client.post("/api/v1/connectors/canary/records/", **{**post, "HTTP_IDEMPOTENCY_KEY": "2"})
    drain()

    done, refused = Job.objects.order_by("created_at")
    assert (done.status, refused.status) == (Job.Status.SUCCEEDED, Job.Status.DEAD)
    assert "token endpoint answered HTTP 400: invalid_client ***" in refused.error_message
    issued = getattr(server.tokens, "issued", [])
    tokens = issued if isinstance(issued, list) else [f"access-{n}" for n in range(1, issued + 1)]
    assert tokens
    leaks = [private.strip(), *tokens]
    stored = [*Job.objects.values(), *JobAttempt.objects.values(), *AuditEvent.objects.values()]
    pages = [
        admin_client.get(page).content.decode()
        for page in (
            reverse("admin:connectors_provider_change", args=[connector.provider.pk]),
            reverse("admin:connectors_job_change", args=[refused.pk]),
            reverse("admin:connectors_credential_change", args=[credential.pk]),
        )
    ]
    exported = io.StringIO()
    call_command("export_config", stdout=exported)
    for text in [json.dumps(stored, default=str), caplog.text, *pages, exported.getvalue()]:
        for leak in leaks:
            assert leak not in text
        assert_clean(text, "a job, log, page or export")


def canary_connector(make_connector, fake, server, credential):
    """A connector whose provider is `fake`'s test server and whose prompt is the canary SSN."""
    from connectors.models import Provider

    provider = Provider.objects.create(
        name="ai",
        kind=fake.kind,
        base_url=server.base_url,
        model=fake.model,
        credential=credential,
        settings=fake.settings,
        timeout_seconds=5,
    )
    return make_connector(
        "canary",
        provider=provider,
        inputs=[("ssn", "ssn", True)],
        redaction=[("ssn", "mask")],
        prompt="{{ ssn }}",
        max_attempts=1,
    )
