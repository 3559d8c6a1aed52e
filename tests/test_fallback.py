"""Fallback providers: a retryable error of the connector's provider (down, 429, 5xx, timeout)
sends the call to the next one, through a real worker; a permanent error does not."""

import pytest
from django.urls import reverse

from connectors import audit, config
from connectors.models import AuditEvent, Connector, Job, Provider
from tests.conftest import post_records
from tests.fixtures_http import OpenAIServer
from tests.test_admin import connector_form
from tests.worker import drain, run_worker

pytestmark = pytest.mark.django_db(transaction=True)

ACTOR = audit.Actor.system("test")


@pytest.fixture
def backup_server():
    server = OpenAIServer()
    yield server
    server.close()


@pytest.fixture
def backup_provider(openai_provider, backup_server):
    return Provider.objects.create(
        name="backup",
        kind="openai",
        base_url=backup_server.base_url,
        model="backup-model",
        credential=openai_provider.credential,
        timeout_seconds=5,
        max_concurrency=2,
        price_per_1m_input="1000",
        price_per_1m_output="2000",
    )


@pytest.fixture
def connector(make_connector, openai_provider, backup_provider, callback_server):
    return make_connector(
        "invoices",
        provider=openai_provider,
        fallback_providers=["backup"],
        outputs=[("decision", "ai_decision")],
        prompt="Decide on: {{ text }}. Answer JSON.",
        sink_kind="http",
        sink_config={"url": callback_server.url},
        output_format="json",
        output_schema={"type": "object", "required": ["decision"]},
        max_attempts=3,
    )


def send(client, key, text="Invoice 42"):
    response = post_records(client, "invoices", {"text": text}, key=key)
    assert response.status_code == 202, response.content
    return Job.objects.get(id=response.json()["jobs"][0]["id"])


def assert_backup_answered(job, callback_server):
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 1
    assert job.provider_name == "backup"
    assert job.model == "backup-model"
    [attempt] = job.attempt_rows.all()
    assert (attempt.provider_name, attempt.outcome) == ("backup", "succeeded")
    assert attempt.cost == job.cost > 0
    [(_, _, payload)] = callback_server.received
    assert payload["result"] == {"ai_decision": "approve"}
    event = AuditEvent.objects.get(object_id=str(job.id), action="job.succeeded")
    assert event.changes["provider"] == "backup"


def test_primary_down_the_fallback_answers(
    client, key, openai_server, backup_server, callback_server
):
    openai_server.script([("status", 503)])
    job = send(client, key)

    drain()

    assert_backup_answered(job, callback_server)
    assert len(openai_server.requests) == 1
    [request] = backup_server.requests
    assert request[2]["messages"][0]["content"] == "Decide on: Invoice 42. Answer JSON."


def test_primary_refusing_connections_the_fallback_answers(
    client, key, openai_provider, openai_server, backup_server, callback_server
):
    openai_server.close()  # nothing listens there any more: connection refused
    job = send(client, key)

    drain()

    assert_backup_answered(job, callback_server)
    assert len(backup_server.requests) == 1


def test_primary_rate_limited_the_fallback_answers(
    client, key, openai_server, backup_server, callback_server
):
    openai_server.script([("status", 429, {"Retry-After": "30"})])
    job = send(client, key)

    drain()

    assert_backup_answered(job, callback_server)


def test_the_repair_goes_to_the_provider_that_answered(
    client, key, openai_server, backup_server, callback_server
):
    openai_server.script([("status", 500)])
    backup_server.script(['{"nope": 1}', '{"decision": "approve"}'])
    job = send(client, key)

    drain()

    assert_backup_answered(job, callback_server)
    assert len(openai_server.requests) == 1
    assert len(backup_server.requests) == 2
    assert job.repair_prompt


@pytest.mark.parametrize("status", [401, 400])
def test_a_permanent_refusal_is_not_sent_to_the_fallback(
    client, key, openai_server, backup_server, status
):
    openai_server.script([("status", status)])
    job = send(client, key)

    drain()

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.DEAD, 1)
    assert job.provider_name == "gpt"
    assert backup_server.requests == []


def test_all_down_the_job_fails_and_is_retried_later(client, key, openai_server, backup_server):
    openai_server.script([("status", 503)])
    backup_server.script([("status", 502)])
    job = send(client, key)

    run_worker()

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.next_attempt_at is not None
    assert job.error_code == "provider_error"
    assert "502" in job.error_message  # the last provider's error is the job's
    assert (len(openai_server.requests), len(backup_server.requests)) == (1, 1)

    drain()  # both answer again (the scripts are spent)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.provider_name) == (Job.Status.SUCCEEDED, 2, "gpt")
    assert list(job.attempt_rows.values_list("outcome", "provider_name")) == [
        ("failed", ""),
        ("succeeded", "gpt"),
    ]


def connectors_document(fallbacks):
    return {
        "connectors": [
            {
                "slug": "invoices",
                "provider": "gpt",
                "fallback_providers": fallbacks,
                "prompt": "Classify: {{ text }}",
                "input_mapping": [{"from": "text", "to": "text"}],
                "source": {"kind": "webhook"},
                "sink": {"kind": "none"},
            }
        ]
    }


def test_config_round_trips_the_fallbacks(openai_provider, backup_provider):
    config.import_config(connectors_document(["backup"]), ACTOR)

    connector = Connector.objects.get(slug="invoices")
    assert connector.fallback_providers == ["backup"]
    exported = config.export_config()
    [item] = exported["connectors"]
    assert item["fallback_providers"] == ["backup"]

    summary = config.import_config({"connectors": exported["connectors"]}, ACTOR)
    assert summary.unchanged == ["connector invoices"]


@pytest.mark.parametrize(
    "fallbacks, message",
    [
        (["nowhere"], "no provider named 'nowhere'"),
        (["gpt"], "is the connector's own provider"),
        (["backup", "backup"], "names a provider twice"),
        ("backup", "must be a list of provider names"),
    ],
)
def test_config_refuses_bad_fallbacks(openai_provider, backup_provider, fallbacks, message):
    with pytest.raises(config.ConfigFileError, match=message):
        config.import_config(connectors_document(fallbacks), ACTOR)
    assert not Connector.objects.exists()


def test_the_admin_form_saves_fallbacks(admin_client, demo_provider, backup_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        connector_form(demo_provider, fallback_providers='["backup"]'),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    assert Connector.objects.get().fallback_providers == ["backup"]
    [event] = AuditEvent.objects.filter(action="connector.create")
    assert event.changes["fallback_providers"] == [None, ["backup"]]


def test_the_admin_form_refuses_an_unknown_fallback(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        connector_form(demo_provider, fallback_providers='["nowhere"]'),
    )

    assert response.status_code == 200
    assert "no provider named" in response.content.decode()
    assert not Connector.objects.exists()
