"""Alerts when a budget reaches 80 % and 100 % of a limit: once per budget, period and threshold.

The audit event (`budget.alert_80`, `budget.alert_100`) is both the alert's record and its
mark; the e-mail and webhook go out where ALERT_EMAILS / ALERT_WEBHOOK_URL are set. Run every
minute by the scheduler.
"""

import logging

from django.conf import settings

from connectors import audit, budgets, operations
from connectors.models import AuditEvent

logger = logging.getLogger(__name__)
SYSTEM = audit.Actor.system("budgets")
THRESHOLDS = (80, 100)


def send_alerts(now=None) -> list[str]:
    """The alerts raised on this pass, as `budget-id:threshold`."""
    raised = []
    for use in budgets.current_use(now):
        for threshold in THRESHOLDS:
            if use.percent < threshold:
                continue
            action = f"budget.alert_{threshold}"
            already = AuditEvent.objects.filter(
                action=action,
                object_type="budget",
                object_id=str(use.budget.pk),
                created_at__gte=use.period_start,
            ).exists()
            if already:
                continue
            raise_alert(use, threshold, action)
            raised.append(f"{use.budget.pk}:{threshold}")
    return raised


def raise_alert(use: budgets.Use, threshold: int, action: str) -> None:
    budget = use.budget
    figures = {
        "threshold": threshold,
        "period_start": use.period_start.isoformat(),
        "tokens": use.tokens,
        "max_tokens": budget.max_tokens,
        "cost": str(use.cost),
        "max_cost": None if budget.max_cost is None else str(budget.max_cost),
        "currency": use.currency,
    }
    subject = f"Interlock: budget {budget} at {use.percent}%"
    body = (
        f"Budget {budget} has used {use.percent}% of its limit this {budget.period}: "
        f"{use.tokens} tokens, {use.cost:.4f} {use.currency}. Calls it cannot cover are not sent."
    )
    logger.warning("%s", subject)
    delivered = []
    if settings.ALERT_EMAILS and operations.send_email(subject, body):
        delivered.append("email")
    if settings.ALERT_WEBHOOK_URL and operations.post_webhook(
        {"connector": budget.connector.slug, "subject": subject, "text": body, **figures}
    ):
        delivered.append("webhook")
    audit.record(
        action,
        SYSTEM,
        budget,
        connector=budget.connector.slug,
        changes={**figures, "to": delivered},
    )
