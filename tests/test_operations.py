"""On call: /metrics, failing-connector alerts, payload retention."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from connectors import operations
from connectors.models import AuditEvent, Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def connector(make_connector):
    return make_connector("invoices")


def finished_jobs(connector, statuses, *, age=timedelta(minutes=1)):
    now = timezone.now()
    for index, status in enumerate(statuses):
        Job.objects.create(
            connector=connector,
            idempotency_key=f"{status}-{index}-{age}",
            status=status,
            input_data={"text": "redacted"},
            prompt="Classify: redacted",
            result={"answer": "x"},
            ai_ms=120,
            created_at=now - age - timedelta(seconds=5),
            finished_at=now - age,
        )


def test_metrics_need_the_token_or_a_staff_login(client, settings, connector):
    settings.METRICS_TOKEN = "metrics-token-123"
    finished_jobs(connector, ["succeeded", "succeeded", "dead"])

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-123")

    text = response.content.decode()
    assert response.status_code == 200
    assert 'interlock_jobs{connector="invoices",status="succeeded"} 2.0' in text
    assert 'interlock_jobs{connector="invoices",status="dead"} 1.0' in text
    assert "interlock_queue_depth 0.0" in text
    assert 'interlock_ai_latency_seconds{quantile="0.5"} 0.12' in text


def test_metrics_for_a_staff_user(admin_client, connector):
    assert admin_client.get("/metrics").status_code == 200


def test_a_failing_connector_alerts_once_per_window(settings, connector, redis_client):
    settings.ALERT_EMAILS = ["oncall@example.com"]
    settings.ALERT_MIN_JOBS = 4
    finished_jobs(connector, ["succeeded", "dead", "dead", "dead"])

    assert operations.send_alerts() == ["invoices"]
    assert operations.send_alerts() == []  # the same window: no second e-mail

    [message] = mail.outbox
    assert message.subject == "Interlock: connector invoices is failing"
    assert "3 of the 4 jobs" in message.body
    assert AuditEvent.objects.filter(action="alert.sent", connector="invoices").count() == 1


def test_a_healthy_connector_does_not_alert(settings, connector):
    settings.ALERT_EMAILS = ["oncall@example.com"]
    finished_jobs(connector, ["succeeded"] * 9 + ["dead"])

    assert operations.send_alerts() == []
    assert mail.outbox == []


def test_alert_webhook_is_posted(settings, connector, callback_server):
    settings.ALERT_WEBHOOK_URL = callback_server.url
    settings.ALERT_MIN_JOBS = 1
    finished_jobs(connector, ["dead"])

    operations.send_alerts()

    [(_, _, payload)] = callback_server.received
    assert payload["connector"] == "invoices"
    assert payload["dead"] == 1


def test_an_alert_that_could_not_be_delivered_is_sent_again(settings, connector, callback_server):
    settings.ALERT_WEBHOOK_URL = callback_server.url
    settings.ALERT_MIN_JOBS = 1
    finished_jobs(connector, ["dead"])
    callback_server.script([500])

    assert operations.send_alerts() == []  # the receiver failed: not counted as sent
    assert operations.send_alerts() == ["invoices"]
    assert operations.send_alerts() == []  # delivered: quiet for the rest of the window
    assert len(callback_server.received) == 2


def test_alerts_go_out_while_redis_is_down(settings, connector):
    settings.ALERT_EMAILS = ["oncall@example.com"]
    settings.ALERT_MIN_JOBS = 1
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    finished_jobs(connector, ["dead"])

    assert operations.send_alerts() == ["invoices"]
    assert len(mail.outbox) == 1


def test_retention_blanks_old_payloads_and_keeps_the_history(connector):
    connector.retention_days = 30
    connector.save()
    finished_jobs(connector, ["succeeded", "dead"], age=timedelta(days=31))
    finished_jobs(connector, ["succeeded"], age=timedelta(days=1))

    assert operations.purge_payloads() == {"invoices": 2}

    old = Job.objects.filter(payload_purged_at__isnull=False)
    assert old.count() == 2
    assert set(old.values_list("prompt", flat=True)) == {""}
    assert list(old.values_list("input_data", "result")) == [({}, None), ({}, None)]
    recent = Job.objects.get(payload_purged_at__isnull=True)
    assert recent.prompt == "Classify: redacted"
    [event] = AuditEvent.objects.filter(action="retention.purge")
    assert event.changes == {"jobs": 2, "older_than_days": 30}
    assert operations.purge_payloads() == {}  # nothing left to purge, no second event


def test_connectors_without_retention_keep_payloads(connector):
    finished_jobs(connector, ["succeeded"], age=timedelta(days=400))

    assert operations.purge_payloads() == {}
    assert Job.objects.get().prompt == "Classify: redacted"


def test_old_webhook_receipts_are_purged(make_connector, api_key):
    from connectors.models import WebhookReceipt

    key = api_key(make_connector("signed"), signed=True)[0]
    WebhookReceipt.objects.create(
        api_key=key, webhook_id="old", received_at=timezone.now() - timedelta(minutes=16)
    )
    WebhookReceipt.objects.create(api_key=key, webhook_id="fresh")

    assert operations.purge_webhook_receipts() == 1
    assert list(WebhookReceipt.objects.values_list("webhook_id", flat=True)) == ["fresh"]
