"""Scheduled housekeeping: payload retention and failing-connector alerts."""

import logging
from datetime import timedelta

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from connectors import audit, dashboard, http
from connectors.models import AuditEvent, Connector, Job, WebhookReceipt

logger = logging.getLogger(__name__)
PURGE_CHUNK = 1000
SYSTEM = audit.Actor.system("scheduler")


def purge_payloads(now=None) -> dict[str, int]:
    """Blank the payloads of finished jobs older than their connector's retention; the job row,
    its attempts and its audit events stay, so the history remains provable."""
    now = now or timezone.now()
    purged = {}
    for connector in Connector.objects.filter(retention_days__isnull=False):
        cutoff = now - timedelta(days=connector.retention_days)
        old = Job.objects.filter(
            connector=connector,
            finished_at__lt=cutoff,
            status__in=Job.FINISHED,
            payload_purged_at__isnull=True,
        )
        count = 0
        while ids := list(old.values_list("id", flat=True)[:PURGE_CHUNK]):
            with transaction.atomic():
                # Re-checked in the update: a job retried meanwhile is no longer finished.
                count += Job.objects.filter(
                    id__in=ids, finished_at__lt=cutoff, status__in=Job.FINISHED
                ).update(
                    input_data={},
                    redaction_hits={},
                    prompt="",
                    repair_prompt="",
                    ai_output="",
                    output=None,
                    result=None,
                    token_report={},
                    encrypted_tokens="",
                    error_traceback="",
                    payload_purged_at=now,
                )
        if count:
            audit.record(
                "retention.purge",
                SYSTEM,
                connector,
                connector=connector.slug,
                changes={"jobs": count, "older_than_days": connector.retention_days},
            )
            purged[connector.slug] = count
    return purged


def purge_webhook_receipts(now=None) -> int:
    """Webhook ids older than three times the signature tolerance can go: a request that old is
    refused for its timestamp before its id is looked at."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=3 * settings.WEBHOOK_TOLERANCE_SECONDS)
    deleted, _ = WebhookReceipt.objects.filter(received_at__lt=cutoff).delete()
    return deleted


def send_alerts() -> list[str]:
    """Alert once per window per failing connector: e-mail and an optional webhook.

    The audit event of a sent alert is what marks the window (no Redis needed, so alerts go out
    while Redis is down); an alert that could not be delivered is tried again next minute."""
    if not settings.ALERT_EMAILS and not settings.ALERT_WEBHOOK_URL:
        return []
    window = timedelta(seconds=settings.ALERT_WINDOW_SECONDS)
    since = timezone.now() - window
    sent = []
    for slug, figures in dashboard.failing_connectors(
        window, settings.ALERT_ERROR_RATE, settings.ALERT_MIN_JOBS
    ):
        if AuditEvent.objects.filter(
            action="alert.sent", connector=slug, created_at__gte=since
        ).exists():
            continue  # already alerted in this window
        subject = f"Interlock: connector {slug} is failing"
        body = (
            f"{figures['dead']} of the {figures['ended']} jobs of connector {slug} that ended in "
            f"the last {window} are dead. See the admin's job list for their errors."
        )
        delivered = []
        if settings.ALERT_EMAILS and send_email(subject, body):
            delivered.append("email")
        if settings.ALERT_WEBHOOK_URL and post_webhook(
            {"connector": slug, "subject": subject, "text": body, **figures}
        ):
            delivered.append("webhook")
        if delivered:
            audit.record("alert.sent", SYSTEM, connector=slug, changes={**figures, "to": delivered})
            sent.append(slug)
    return sent


def send_email(subject: str, body: str) -> bool:
    try:
        send_mail(subject, body, None, settings.ALERT_EMAILS)
    except Exception as error:  # SMTP refused or unreachable: try again next minute
        logger.warning("alert e-mail failed: %s", type(error).__name__)
        return False
    return True


def post_webhook(payload: dict) -> bool:
    try:
        with http.build_client(timeout=10) as client:
            response = client.post(settings.ALERT_WEBHOOK_URL, json=payload)
    except httpx.HTTPError as error:
        logger.warning("alert webhook failed: %s", http.describe_transport_error(error))
        return False
    if response.status_code >= 300:
        logger.warning("alert webhook answered HTTP %s", response.status_code)
        return False
    return True
