"""The console's roles and exports: what a compliance officer and an integration admin may do."""

import csv
import io
import json

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from connectors import audit
from connectors.models import AuditEvent, Connector, Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def login(client, django_user_model):
    def log_in(role: str):
        user = django_user_model.objects.create_user(
            role.lower().replace(" ", "-"), password="pw-123456789", is_staff=True
        )
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return log_in


@pytest.fixture
def job(make_connector):
    connector = make_connector("invoices")
    job = Job.objects.create(
        connector=connector,
        idempotency_key="k",
        status="dead",
        input_data={"text": "<SSN_1> paid"},
        prompt="Classify: <SSN_1> paid",
        redaction_hits={"SSN": 1},
        encrypted_tokens="gAAAA-not-for-auditors",
        error_code="provider_error",
        error_message="provider answered HTTP 500",
    )
    audit.record("job.created", audit.Actor.system("test"), job, connector="invoices")
    return job


def test_compliance_officer_sees_history_and_changes_nothing(login, job):
    officer = login("Compliance officer")

    for page in [
        reverse("admin:connectors_job_changelist"),
        reverse("admin:connectors_job_change", args=[job.id]),
        reverse("admin:connectors_auditevent_changelist"),
        reverse("admin:connectors_connector_change", args=[job.connector.id]),
    ]:
        assert officer.get(page).status_code == 200, page
    assert officer.get(reverse("admin:connectors_credential_changelist")).status_code == 403
    assert officer.get(reverse("admin:connectors_connector_add")).status_code == 403
    edit = officer.post(
        reverse("admin:connectors_connector_change", args=[job.connector.id]),
        {"name": "renamed"},
    )
    assert edit.status_code == 403
    assert Connector.objects.get().name == "Invoices"
    listing = officer.get(reverse("admin:connectors_job_changelist")).content.decode()
    assert 'value="retry"' not in listing and 'value="cancel"' not in listing
    officer.post(
        reverse("admin:connectors_job_changelist"),
        {"action": "retry", "_selected_action": [str(job.id)]},
    )
    assert Job.objects.get().status == "dead"


@pytest.mark.parametrize("role", ["Compliance officer", None])
def test_only_who_may_add_keys_can_issue_one(client, django_user_model, job, role):
    user = django_user_model.objects.create_user("viewer", password="pw-123456789", is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    client.force_login(user)

    response = client.post(
        reverse("admin:connectors_apikey_add"),
        {
            "connector": job.connector.id,
            "name": "x",
            "allowed_networks": "[]",
            "with_signing_secret": "on",
        },
    )

    assert response.status_code == 403
    assert not job.connector.api_keys.exists()


def test_no_queue_dashboard_lets_staff_empty_the_queues(login):
    # django-rq's admin dashboard checks only is_staff; Interlock shows queues on its own.
    officer = login("Compliance officer")

    assert officer.get("/admin/django_rq/dashboard/").status_code == 404
    assert "django_rq" not in officer.get(reverse("admin:index")).content.decode().lower()


def test_integration_admin_configures_and_retries(login, job):
    admin = login("Integration admin")

    assert admin.get(reverse("admin:connectors_credential_add")).status_code == 200
    assert admin.get(reverse("admin:connectors_connector_add")).status_code == 200
    admin.post(
        reverse("admin:connectors_job_changelist"),
        {"action": "retry", "_selected_action": [str(job.id)]},
    )
    assert Job.objects.get().status in ("pending", "queued")
    assert admin.get(reverse("admin:auth_user_changelist")).status_code == 403


def test_audit_log_shows_whether_the_chain_verifies(admin_client, job):
    page = admin_client.get(reverse("admin:connectors_auditevent_changelist")).content.decode()
    count = AuditEvent.objects.count()  # the job's event and the admin's login
    assert f"Hash chain verified: {count} events, head #{count}." in page

    AuditEvent.objects.update(actor="someone else")
    page = admin_client.get(reverse("admin:connectors_auditevent_changelist")).content.decode()
    assert "Hash chain BROKEN at event #1: its content does not match its hash." in page


def test_audit_export_is_filtered_formula_safe_verifiable_and_audited(login, job):
    officer = login("Compliance officer")
    audit.record(
        "connector.update",
        audit.Actor.system('=HYPERLINK("http://evil")'),
        job.connector,
        connector="invoices",
        changes={"name": ["a", "=1+1"]},
    )
    audit.record("other.thing", audit.Actor.system(), connector="elsewhere")

    url = reverse("admin:connectors_auditevent_export", args=["csv"])
    response = officer.get(url + "?connector=invoices")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["action"] for row in rows] == ["job.created", "connector.update"]
    assert rows[1]["actor"] == '\'=HYPERLINK("http://evil")'
    event = AuditEvent.objects.get(action="connector.update")
    assert rows[1]["hash"] == event.hash == audit.compute_hash(event)
    previous = AuditEvent.objects.get(sequence=event.sequence - 1)
    assert rows[1]["previous_hash"] == previous.hash
    [exported] = AuditEvent.objects.filter(action="audit.export")
    assert exported.actor == "compliance-officer"
    assert exported.changes["events"] == 2


def test_audit_export_as_json_lines(admin_client, job):
    url = reverse("admin:connectors_auditevent_export", args=["jsonl"])
    response = admin_client.get(url + "?action=job.created")

    [line] = b"".join(response.streaming_content).decode().splitlines()
    assert json.loads(line)["action"] == "job.created"
    assert json.loads(line)["hash"] == AuditEvent.objects.get(action="job.created").hash


def test_job_lineage_export_has_the_journey_and_no_token_map(login, job):
    officer = login("Compliance officer")

    response = officer.get(reverse("admin:connectors_job_lineage", args=[job.id]))

    lineage = json.loads(response.content)
    assert lineage["redacted_input"] == {"text": "<SSN_1> paid"}
    assert lineage["redaction_hits"] == {"SSN": 1}
    assert lineage["prompt"] == "Classify: <SSN_1> paid"
    assert lineage["error"] == {"code": "provider_error", "message": "provider answered HTTP 500"}
    assert [event["action"] for event in lineage["audit_events"]] == ["job.created"]
    assert "gAAAA-not-for-auditors" not in response.content.decode()
    assert AuditEvent.objects.filter(action="job.lineage_export").count() == 1


def test_dashboard_shows_status_counts_latency_and_failures(admin_client, job, make_connector):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    for n in range(3):
        Job.objects.create(
            connector=job.connector,
            idempotency_key=f"ok{n}",
            status="succeeded",
            ai_ms=100 * (n + 1),
            created_at=now - timedelta(minutes=5),
            finished_at=now - timedelta(minutes=4),
            tokens_in=10,
            cost="0.5",
        )

    page = admin_client.get(reverse("admin:index") + "?window=hour").content.decode()

    assert '<td id="success-rate">75.0%</td>' in page
    assert "200 / 300 ms" in page  # AI latency p50 / p95
    assert "provider_error provider answered HTTP 500" in page
    assert page.count('fill="#3a9b5c"') == 60  # one bar per minute of the hour
    assert '<td id="tokens-cost">30 in, 0 out, no cost</td>' in page  # no attempt was priced


def test_dashboard_is_not_shown_to_users_who_cannot_see_jobs(client, django_user_model, job):
    user = django_user_model.objects.create_user("guest", password="pw-123456789", is_staff=True)
    client.force_login(user)

    assert 'id="dashboard"' not in client.get(reverse("admin:index")).content.decode()
