"""The admin console: write-only secrets, validated connectors, keys shown once, audited changes."""

import html

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from connectors import audit
from connectors.models import ApiKey, AuditEvent, Connector, Credential, Job
from tests.conftest import CANARY_SECRET

pytestmark = pytest.mark.django_db


def test_credential_value_is_write_only_and_its_change_is_audited_masked(admin_client):
    response = admin_client.post(
        reverse("admin:connectors_credential_add"),
        {"name": "erp", "kind": "bearer", "value": CANARY_SECRET},
    )
    assert response.status_code == 302
    credential = Credential.objects.get(name="erp")
    assert credential.reveal() == CANARY_SECRET
    assert CANARY_SECRET not in credential.encrypted_value

    page = admin_client.get(reverse("admin:connectors_credential_change", args=[credential.pk]))
    assert CANARY_SECRET not in page.content.decode()

    admin_client.post(
        reverse("admin:connectors_credential_change", args=[credential.pk]),
        {"name": "erp", "kind": "bearer", "value": ""},
    )
    assert Credential.objects.get().reveal() == CANARY_SECRET  # empty keeps the value

    admin_client.post(
        reverse("admin:connectors_credential_change", args=[credential.pk]),
        {"name": "erp", "kind": "bearer", "value": CANARY_SECRET + "-rotated"},
    )

    [created] = AuditEvent.objects.filter(action="credential.create")
    assert created.changes["encrypted_value"][0] is None
    assert created.changes["encrypted_value"][1].startswith(audit.SECRET_MARK)
    [replaced] = AuditEvent.objects.filter(action="credential.update")  # the empty save: none
    old_mark, new_mark = replaced.changes["encrypted_value"]
    assert old_mark != new_mark and new_mark.startswith(audit.SECRET_MARK)
    assert created.actor == "admin"
    assert CANARY_SECRET not in str(AuditEvent.objects.values())


def test_new_credential_needs_a_value(admin_client):
    response = admin_client.post(
        reverse("admin:connectors_credential_add"), {"name": "erp", "kind": "bearer", "value": ""}
    )

    assert "A new credential needs a value." in response.content.decode()
    assert not Credential.objects.exists()


def connector_form(demo_provider, **overrides):
    data = {
        "name": "Invoices",
        "slug": "invoices",
        "is_enabled": "on",
        "source_kind": "webhook",
        "source_config": "{}",
        "batch_size": "20",
        "provider": str(demo_provider.pk),
        "fallback_providers": "[]",
        "prompt_template": "Classify {{ text }}",
        "output_format": "text",
        "output_schema": "null",
        "answer_pii": "redact",
        "phone_regions": "[]",
        "id_countries": "[]",
        "sink_kind": "none",
        "sink_config": "{}",
        "max_attempts": "5",
        "retention_days": "",
        "poll_interval_seconds": "60",
        "mappings-TOTAL_FORMS": "1",
        "mappings-INITIAL_FORMS": "0",
        "mappings-0-direction": "input",
        "mappings-0-source_path": "text",
        "mappings-0-target_name": "text",
        "mappings-0-transform": "strip",
        "mappings-0-is_required": "on",
        "mappings-0-position": "0",
        "redaction_rules-TOTAL_FORMS": "1",
        "redaction_rules-INITIAL_FORMS": "0",
        "redaction_rules-0-detector": "ssn",
        "redaction_rules-0-action": "mask",
        "redaction_rules-0-position": "0",
        "redaction_rules-0-is_enabled": "on",
    }
    data.update(overrides)
    return data


def test_connector_is_created_with_its_inlines_and_one_audit_event(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"), connector_form(demo_provider)
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    [event] = AuditEvent.objects.filter(action="connector.create")
    assert event.changes["input_mapping"] == [
        None,
        [{"from": "text", "to": "text", "transform": "strip", "required": True}],
    ]
    assert event.changes["redaction"] == [None, [{"detector": "ssn", "action": "mask"}]]


def test_changing_only_an_inline_position_is_audited(admin_client, demo_provider):
    admin_client.post(reverse("admin:connectors_connector_add"), connector_form(demo_provider))
    connector = Connector.objects.get()
    mapping, rule = connector.mappings.get(), connector.redaction_rules.get()
    form = connector_form(
        demo_provider,
        **{
            "mappings-INITIAL_FORMS": "1",
            "mappings-0-id": str(mapping.pk),
            "mappings-0-connector": str(connector.pk),
            "mappings-0-position": "5",
            "redaction_rules-INITIAL_FORMS": "1",
            "redaction_rules-0-id": str(rule.pk),
            "redaction_rules-0-connector": str(connector.pk),
        },
    )

    response = admin_client.post(
        reverse("admin:connectors_connector_change", args=[connector.pk]), form
    )

    assert response.status_code == 302
    [update] = AuditEvent.objects.filter(action="connector.update")
    assert update.changes["positions"] == [
        {"mappings": [0], "redaction": [0]},
        {"mappings": [5], "redaction": [0]},
    ]


def test_connector_page_shows_its_intake_url_and_rate_limit(admin_client, make_connector):
    connector = make_connector("invoices", source_config={"requests_per_minute": 120})

    page = admin_client.get(f"/admin/connectors/connector/{connector.pk}/change/").content.decode()

    assert "/api/v1/connectors/invoices/records/" in page
    assert "Rate limit: 120 requests per minute (all keys together)" in page


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"prompt_template": "{% if %}"}, "prompt_template"),
        ({"prompt_template": "{% include '/etc/passwd' %}"}, "include"),
        ({"sink_kind": "http", "sink_config": "{}"}, "url"),
        ({"output_format": "json", "output_schema": "null"}, "needs a JSON Schema"),
        ({"output_format": "json", "output_schema": '{"type": 12}'}, "output_schema"),
        ({"mappings-0-source_path": "a..b"}, "source_path"),
        ({"mappings-0-transform": "shout"}, "shout"),
        ({"redaction_rules-0-detector": "regex", "redaction_rules-0-pattern": "("}, "pattern"),
        ({"prompt_template": "Classify {{ txet }}"}, "The prompt uses txet, which no input"),
        ({"redaction_rules-0-action": "tokenize"}, "A tokenize rule needs a sink that writes back"),
    ],
)
def test_connector_form_refuses_a_config_that_cannot_run(
    admin_client, demo_provider, override, message
):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"), connector_form(demo_provider, **override)
    )

    assert response.status_code == 200
    assert message in html.unescape(response.content.decode())
    assert not AuditEvent.objects.filter(action="connector.create").exists()


def test_api_key_is_shown_once_and_stored_as_a_hash(admin_client, make_connector):
    connector = make_connector("invoices")

    response = admin_client.post(
        reverse("admin:connectors_apikey_add"),
        {"connector": str(connector.pk), "name": "erp", "allowed_networks": "[]"},
    )

    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    api_key = ApiKey.objects.get()
    html = response.content.decode()
    plain = html.split('<code class="issued-key">')[1].split("</code>")[0]
    assert plain.startswith(api_key.prefix)
    listing = admin_client.get(reverse("admin:connectors_apikey_changelist")).content.decode()
    assert plain not in listing
    assert AuditEvent.objects.filter(action="api_key.create").count() == 1


def test_revoking_a_key_is_audited_and_stops_it(admin_client, client, make_connector, api_key):
    connector = make_connector("invoices")
    key, plain, _ = api_key(connector)

    admin_client.post(
        reverse("admin:connectors_apikey_changelist"),
        {"action": "revoke", "_selected_action": [str(key.pk)]},
    )

    assert ApiKey.objects.get().revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoke").count() == 1
    answer = client.post(
        "/api/v1/connectors/invoices/records/",
        data='{"text": "x"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {plain}",
    )
    assert answer.status_code == 401


def test_jobs_and_audit_events_are_read_only(admin_client, make_connector):
    job = Job.objects.create(connector=make_connector("invoices"), idempotency_key="a")

    assert admin_client.get(reverse("admin:connectors_job_add")).status_code == 403
    assert admin_client.get(reverse("admin:connectors_auditevent_add")).status_code == 403
    page = admin_client.get(reverse("admin:connectors_job_change", args=[job.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


def test_retry_action_queues_a_dead_job_for_a_fresh_round(admin_client, make_connector):
    job = Job.objects.create(
        connector=make_connector("invoices"), idempotency_key="a", status="dead", attempts=5
    )

    admin_client.post(
        reverse("admin:connectors_job_changelist"),
        {"action": "retry", "_selected_action": [str(job.pk)]},
    )

    job.refresh_from_db()
    assert job.status in ("pending", "queued")
    assert job.attempts_before_retry == 5
    assert AuditEvent.objects.filter(action="job.retried", object_id=str(job.pk)).count() == 1


def test_provider_test_connection_reports_the_demo_provider(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_provider_changelist"),
        {"action": "test_connection", "_selected_action": [str(demo_provider.pk)]},
        follow=True,
    )

    assert "Demo provider: no AI is called." in response.content.decode()


def test_login_logout_and_failed_login_are_audited(client, django_user_model):
    django_user_model.objects.create_superuser("alice", "a@example.com", "correct-horse-1")

    client.post(reverse("admin:login"), {"username": "alice", "password": "wrong"})
    client.post(reverse("admin:login"), {"username": "alice", "password": "correct-horse-1"})
    client.post(reverse("admin:logout"))

    actions = list(AuditEvent.objects.order_by("sequence").values_list("action", "actor"))
    assert actions == [
        ("auth.login_failed", "alice"),
        ("auth.login", "alice"),
        ("auth.logout", "alice"),
    ]
    assert "wrong" not in str(AuditEvent.objects.values())


def test_a_password_typed_as_the_username_is_not_kept_in_the_audit_log(client):
    client.post(reverse("admin:login"), {"username": "correct-horse-1", "password": "x"})

    [event] = AuditEvent.objects.filter(action="auth.login_failed")
    assert event.actor.startswith("(unknown user ")
    assert "correct-horse-1" not in str(AuditEvent.objects.values())


def test_preview_shows_mapping_redaction_and_prompt_without_storing(admin_client, make_connector):
    connector = make_connector(
        "invoices",
        inputs=[("note", "text", True), ("customer.email", "email", False)],
        redaction=[("email", "mask"), ("ssn", "tokenize")],
        prompt="Decide {{ text }} for {{ email }}",
        sink_kind="http",
        sink_config={"url": "https://erp.example/cb"},
    )
    url = reverse("admin:connectors_connector_preview", args=[connector.pk])
    sample = '{"note": "pay 219-09-9999", "customer": {"email": "jane@example.com"}}'

    page = html.unescape(
        admin_client.post(url, {"sample": sample, "preview": "1"}).content.decode()
    )

    assert "Decide pay <mark><SSN_1></mark> for <mark>[REDACTED EMAIL]</mark>" in page
    assert "<td>EMAIL</td><td>mask</td><td>1</td>" in page
    assert not Job.objects.exists()
    assert not AuditEvent.objects.filter(action="connector.try_it").exists()


def test_try_it_calls_the_ai_once_and_is_audited(admin_client, make_connector):
    connector = make_connector("invoices", outputs=[("text", "answer")])
    url = reverse("admin:connectors_connector_preview", args=[connector.pk])

    page = html.unescape(
        admin_client.post(url, {"sample": '{"text": "hello"}', "try": "1"}).content.decode()
    )

    assert "Demo answer (no AI was called): Classify: hello" in page
    assert "{'answer': 'Demo answer (no AI was called): Classify: hello'}" in page
    assert AuditEvent.objects.filter(action="connector.try_it").count() == 1
    assert not Job.objects.exists()


def test_preview_refuses_a_sample_that_is_not_json(admin_client, make_connector):
    connector = make_connector("invoices")
    url = reverse("admin:connectors_connector_preview", args=[connector.pk])

    page = admin_client.post(url, {"sample": "{nope", "preview": "1"}).content.decode()

    assert "The sample is not valid JSON" in page


def test_clone_enable_disable_and_export_connectors(admin_client, make_connector):
    connector = make_connector("invoices", redaction=[("ssn", "mask")])
    changelist = reverse("admin:connectors_connector_changelist")

    admin_client.post(changelist, {"action": "clone", "_selected_action": [str(connector.pk)]})
    copy = Connector.objects.get(slug="invoices-copy")
    assert (copy.is_enabled, copy.name) == (False, "Invoices (copy)")
    assert list(copy.redaction_rules.values_list("detector", "action")) == [("ssn", "mask")]

    admin_client.post(changelist, {"action": "disable", "_selected_action": [str(connector.pk)]})
    assert not Connector.objects.get(slug="invoices").is_enabled
    [event] = AuditEvent.objects.filter(action="connector.update", object_id=str(connector.pk))
    assert event.changes == {"enabled": [True, False]}

    export = admin_client.post(
        changelist, {"action": "export_selected", "_selected_action": [str(connector.pk)]}
    )
    assert yaml.safe_load(export.content)["connectors"][0]["slug"] == "invoices"


def test_import_a_configuration_file_from_the_page(admin_client, demo_provider):
    url = reverse("admin:connectors_connector_import")
    good = SimpleUploadedFile(
        "c.yaml", b"connectors:\n  - {slug: imported, provider: demo, prompt: 'Hi {{ text }}'}\n"
    )
    bad = SimpleUploadedFile(
        "c.yaml", b"connectors:\n  - {slug: broken, provider: nope, prompt: x}\n  - {slug: y}\n"
    )

    assert admin_client.post(url, {"file": good}).status_code == 302
    assert Connector.objects.filter(slug="imported").exists()
    page = html.unescape(admin_client.post(url, {"file": bad}).content.decode())
    assert "connectors[0].provider: no provider named 'nope'" in page
    assert "connectors[1].provider: is required" in page
    assert not Connector.objects.filter(slug="broken").exists()


def test_credential_page_says_what_uses_it(admin_client, credential, make_connector):
    make_connector(
        "invoices",
        sink_kind="http",
        sink_config={"url": "https://x", "credential": credential.name},
    )

    page = admin_client.get(
        reverse("admin:connectors_credential_change", args=[credential.pk])
    ).content.decode()

    assert "connector invoices (sink)" in page


def test_job_list_shows_badges_age_and_duration(admin_client, make_connector):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    Job.objects.create(
        connector=make_connector("invoices"),
        idempotency_key="a",
        status="dead",
        error_code="provider_error",
        created_at=now - timedelta(seconds=3),
        finished_at=now,
    )

    page = admin_client.get(reverse("admin:connectors_job_changelist")).content.decode()

    assert 'class="status-badge" style="background:#ba2121' in page
    assert "3.0 s" in page
    assert "provider_error" in page


def test_provider_test_connection_names_a_secret_no_key_decrypts(
    admin_client, openai_provider, credential
):
    Credential.objects.filter(id=credential.id).update(encrypted_value="made-with-a-lost-key")

    response = admin_client.post(
        reverse("admin:connectors_provider_changelist"),
        {"action": "test_connection", "_selected_action": [str(openai_provider.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert "its key is missing from FIELD_ENCRYPTION_KEYS" in response.content.decode()
