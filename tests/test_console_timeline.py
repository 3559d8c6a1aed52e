"""The job page reads as the journey: a timeline of the pipeline's steps with their timing and
data, each attempt's request metadata and answer status, Retry and Re-send write-back buttons;
and nothing secret on it."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from connectors.models import AuditEvent, Credential, Job, JobAttempt, Provider
from tests.conftest import CANARY_SECRET, CANARY_SSN, post_records
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)
STEPS = ["intake", "redaction", "prompt", "ai", "validation", "restore", "write_back", "end"]


def page_of(client, job) -> str:
    response = client.get(reverse("admin:connectors_job_change", args=[job.id]))
    assert response.status_code == 200
    return response.content.decode()


def run_one(client, make_connector, api_key, record: dict) -> Job:
    connector = make_connector(
        "claims",
        inputs=(("text", "text", True), ("ssn", "ssn", False)),
        outputs=(("text", "summary"),),
        redaction=(("ssn", "tokenize"),),
        prompt="Summarise: {{ text }} ({{ ssn }})",
    )
    response = post_records(client, connector.slug, record, key=api_key(connector)[1])
    assert response.status_code == 202, response.content
    drain()
    return Job.objects.get()


def test_the_job_page_shows_each_step_of_a_real_run_in_order(admin_client, make_connector, api_key):
    job = run_one(admin_client, make_connector, api_key, {"text": "a claim", "ssn": CANARY_SSN})
    assert job.status == "succeeded"

    page = page_of(admin_client, job)

    found = re.findall(r'<li class="step state-(\w+)" id="step-(\w+)">', page)
    assert [key for _, key in found] == STEPS
    states = dict((key, state) for state, key in found)
    assert states["ai"] == states["write_back"] == states["end"] == "done"
    assert "SSN: 1" in page  # the redaction step names the rule's type and count
    assert "Summarise: a claim (&lt;SSN_1&gt;)" in page  # the prompt as sent, redacted
    assert "stored to job API" in page  # the write-back's outcome
    attempt = page[page.index('id="attempt-1"') :]
    attempt = attempt[: attempt.index("</details>")]
    for label in ("queue wait", "AI call", "write-back", "request", "answer"):
        assert f"<th>{label}</th>" in attempt or f'colspan="2">{label}<' in attempt
    assert "<th>provider</th><td>demo (demo)</td>" in attempt
    assert "<th>outcome</th><td>succeeded</td>" in attempt
    assert "audit trail (3 events)" in page
    assert CANARY_SSN not in page


def test_the_timeline_shows_no_secret(admin_client, make_connector, credential):
    provider = Provider.objects.create(
        name="vendor",
        kind="openai",
        base_url=f"https://user:{CANARY_SECRET}@llm.example.com/v1?key={CANARY_SECRET}",
        model="gpt-x",
        credential=credential,
    )
    connector = make_connector("leaky", provider=provider)
    job = Job.objects.create(
        connector=connector,
        idempotency_key="k",
        status="dead",
        prompt="Summarise <PERSON_1>",
        encrypted_tokens="gAAAA-canary-token-map",
        provider_name="vendor",
        error_code="provider_error",
        error_message="provider answered HTTP 500",
    )
    JobAttempt.objects.create(
        job=job,
        number=1,
        outcome="failed",
        started_at=timezone.now() - timedelta(seconds=2),
        finished_at=timezone.now(),
        provider_name="vendor",
        error_code="provider_error",
    )

    page = page_of(admin_client, job)

    assert "<th>endpoint</th><td>https://llm.example.com/v1</td>" in page
    assert CANARY_SECRET not in page
    assert "gAAAA-canary-token-map" not in page
    assert credential.encrypted_value not in page
    assert Credential.objects.get().reveal() == CANARY_SECRET  # the canary was there to leak


def test_retry_on_the_page_queues_the_job_again_and_is_audited(admin_client, make_connector):
    job = Job.objects.create(
        connector=make_connector(), idempotency_key="k", status="dead", error_code="sink_error"
    )
    assert 'id="retry-button"' in page_of(admin_client, job)

    response = admin_client.post(reverse("admin:connectors_job_retry", args=[job.id]))

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status in ("pending", "queued")
    assert job.error_code == ""
    assert AuditEvent.objects.filter(action="job.retried", object_id=str(job.id)).count() == 1


def test_resend_writes_the_stored_result_again_without_asking_the_ai(
    admin_client, make_connector, api_key
):
    job = run_one(admin_client, make_connector, api_key, {"text": "no pii here"})
    assert job.status == "succeeded" and job.token_report == {}
    assert 'id="resend-button"' in page_of(admin_client, job)

    response = admin_client.post(reverse("admin:connectors_job_resend", args=[job.id]))
    assert response.status_code == 302
    drain()

    job.refresh_from_db()
    assert job.status == "succeeded"
    second = job.attempt_rows.get(number=2)
    assert (second.ai_ms, second.tokens_in, second.provider_name) == (None, 0, "")  # no AI call
    assert second.write_outcome == {"target": "job API", "status": "stored", "detail": ""}
    assert AuditEvent.objects.filter(action="job.resend_write_back").count() == 1


def test_resend_is_refused_when_the_token_map_is_gone(admin_client, make_connector, api_key):
    job = run_one(admin_client, make_connector, api_key, {"text": "a", "ssn": CANARY_SSN})
    Job.objects.filter(id=job.id).update(token_report={"restored": ["<SSN_1>"]})

    page = page_of(admin_client, job)
    response = admin_client.post(reverse("admin:connectors_job_resend", args=[job.id]))

    assert 'id="resend-button"' not in page
    assert "tokenized values were restored and their map deleted" in page
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert not AuditEvent.objects.filter(action="job.resend_write_back").exists()


def test_a_compliance_officer_sees_the_timeline_but_no_buttons(
    client, django_user_model, make_connector
):
    job = Job.objects.create(connector=make_connector(), idempotency_key="k", status="dead")
    officer = django_user_model.objects.create_user("olga", password="pw-123456789", is_staff=True)
    officer.groups.add(Group.objects.get(name="Compliance officer"))
    client.force_login(officer)

    page = page_of(client, job)

    assert 'id="job-timeline"' in page
    assert 'id="retry-button"' not in page and 'id="resend-button"' not in page
    assert client.post(reverse("admin:connectors_job_retry", args=[job.id])).status_code == 403
    assert client.get(reverse("admin:connectors_job_retry", args=[job.id])).status_code == 404
    job.refresh_from_db()
    assert job.status == "dead"
