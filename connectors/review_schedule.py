"""What the scheduler does for held answers: the connectors' deadline actions, an alert when held
answers are past their deadline, batched notices of new arrivals, and the queue's figures for the
dashboard and /metrics. Notices and alerts name connectors, counts and ages, never a value of a
record or an answer (they go to mailboxes and chat rooms outside the console)."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Min, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from connectors import audit, operations, review
from connectors.models import Connector, Review

SCHEDULER = audit.Actor.system("scheduler")
Action = Connector.DeadlineAction


@dataclass(frozen=True)
class QueueRow:
    """One connector's queue: how many wait, since when, how many are past their deadline."""

    slug: str
    name: str
    waiting: int
    oldest_held_at: datetime
    overdue: int

    def oldest_age_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.oldest_held_at).total_seconds())


def queue_rows(now: datetime | None = None) -> list[QueueRow]:
    now = now or timezone.now()
    rows = (
        Review.objects.filter(decision=Review.Decision.WAITING)
        .values("connector__slug", "connector__name")
        .annotate(
            waiting=Count("job_id"),
            oldest=Min("held_at"),
            overdue=Count("job_id", filter=Q(deadline__lt=now)),
        )
        .order_by("connector__slug")
    )
    return [
        QueueRow(
            row["connector__slug"],
            row["connector__name"],
            row["waiting"],
            row["oldest"],
            row["overdue"],
        )
        for row in rows
    ]


def apply_deadlines(now: datetime | None = None) -> dict[str, int]:
    """Reject or approve what waited past its connector's deadline (as the connector says), and
    alert on-call about what is to stay waiting."""
    now = now or timezone.now()
    counts = {"rejected": 0, "approved": 0}
    overdue = (
        Review.objects.filter(decision=Review.Decision.WAITING, deadline__lte=now)
        .exclude(connector__review_deadline_action=Action.ALERT)
        .select_related("connector")
        .order_by("deadline")[:500]
    )
    for held in overdue:
        connector = held.connector
        reason = f"the review deadline ({connector.review_deadline_hours} h) passed"
        decision = "reject" if connector.review_deadline_action == Action.REJECT else "approve"
        try:
            review.decide(
                held.job_id, SCHEDULER, decision, reason=reason, final=True, via="deadline"
            )
        except review.ReviewRefused:
            continue  # a reviewer decided it meanwhile
        counts["rejected" if decision == "reject" else "approved"] += 1
    counts["alerted"] = alert_overdue(now)
    return counts


def alert_overdue(now: datetime) -> int:
    """One alert per connector for held answers newly past their deadline (each alerted once)."""
    if not channels():
        return 0
    overdue = Review.objects.filter(
        decision=Review.Decision.WAITING, deadline__lte=now, alerted_at__isnull=True
    )
    sent = 0
    for slug, count, oldest in grouped(overdue):
        subject = f"Interlock: {count} held answer(s) of connector {slug} are past their deadline"
        body = (
            f"{count} answer(s) of connector {slug} wait for review past their deadline; the "
            f"oldest was held {timesince(oldest, now)} ago. Review them at {queue_path(slug)}."
        )
        delivered = deliver(subject, body, "review.overdue", slug, count, oldest)
        if delivered:
            overdue.filter(connector__slug=slug).update(alerted_at=now)
            audit.record(
                "review.overdue_alert",
                SCHEDULER,
                connector=slug,
                changes={"overdue": count, "to": delivered},
            )
            sent += 1
    return sent


def notify_reviewers(now: datetime | None = None) -> int:
    """Tell the alert channels about answers held since the last notice, one message per
    connector (the scheduler runs this every REVIEW_NOTIFY_INTERVAL_SECONDS: that is the batch).
    A notice no channel took is tried again next time."""
    now = now or timezone.now()
    if not channels():
        return 0
    new = Review.objects.filter(decision=Review.Decision.WAITING, notified_at__isnull=True)
    sent = 0
    for slug, count, oldest in grouped(new):
        subject = f"Interlock: {count} answer(s) of connector {slug} wait for review"
        body = (
            f"{count} new answer(s) of connector {slug} were held for review; the oldest "
            f"{timesince(oldest, now)} ago. Review them at {queue_path(slug)}."
        )
        delivered = deliver(subject, body, "review.waiting", slug, count, oldest)
        if delivered:
            new.filter(connector__slug=slug, held_at__lte=now).update(notified_at=now)
            audit.record(
                "review.notified",
                SCHEDULER,
                connector=slug,
                changes={"new": count, "to": delivered},
            )
            sent += 1
    return sent


def grouped(reviews) -> list[tuple[str, int, datetime]]:
    rows = (
        reviews.values("connector__slug")
        .annotate(count=Count("job_id"), oldest=Min("held_at"))
        .order_by("connector__slug")
    )
    return [(row["connector__slug"], row["count"], row["oldest"]) for row in rows]


def queue_path(slug: str) -> str:
    """The admin's queue filtered to the connector (a path: the console's host is the
    operator's to know)."""
    connector_id = Connector.objects.filter(slug=slug).values_list("id", flat=True).first()
    return f"{reverse('admin:connectors_review_changelist')}?connector__id__exact={connector_id}"


def channels() -> bool:
    return bool(settings.ALERT_EMAILS or settings.ALERT_WEBHOOK_URL)


def deliver(subject: str, body: str, event: str, slug: str, count: int, oldest) -> list[str]:
    """Through the existing alert channels; the names of those that took it."""
    delivered = []
    if settings.ALERT_EMAILS and operations.send_email(subject, body):
        delivered.append("email")
    payload = {
        "event": event,
        "connector": slug,
        "count": count,
        "oldest_held_at": oldest.isoformat(),
        "subject": subject,
        "text": body,
        "url": queue_path(slug),
    }
    if settings.ALERT_WEBHOOK_URL and operations.post_webhook(payload):
        delivered.append("webhook")
    return delivered
