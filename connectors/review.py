"""Decisions on held answers: approve, edit and approve, reject; the failure report of a rejected
job to its sink.

A decision is a conditional update of the review row (still waiting, with the first approval the
reviewer saw), so two reviewers acting at once never both act: the second is told the job was
decided meanwhile. Lock order as in lifecycle.py: the job row first, the audit chain head last.
An approval puts the job back to `pending` with a fresh round of attempts; a worker then writes
the stored (perhaps edited) result back, as for a retry after a failed write-back, without
asking the AI again.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from connectors import audit, jobs, legacy_json, mapping, pipeline, prompts
from connectors.errors import PipelineError
from connectors.models import AuditEvent, Connector, FieldMapping, Job, Review
from connectors.work import Delivery

logger = logging.getLogger(__name__)
Status = Job.Status
Decision = Review.Decision
APPROVE, EDIT, REJECT = "approve", "edit", "reject"
DECISIONS = (APPROVE, EDIT, REJECT)


# Why a decision is refused, with the HTTP status the review API answers it with.
REFUSALS = {
    "invalid_decision": 400,
    "reason_required": 400,
    "invalid_answer": 400,
    "review_not_found": 404,
    "already_decided": 409,
    "review_changed": 409,
    "second_approver_required": 409,
}


class ReviewRefused(Exception):
    """A decision that cannot be taken; `code` as the API answers it (its status in REFUSALS),
    `field` the form field at fault."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = REFUSALS[code], code, message, field


@dataclass(frozen=True)
class Decided:
    """What a decision did: `outcome` is approved, edited, rejected, or first_approval (four
    eyes: the job waits for a second, different person)."""

    job_id: str
    outcome: str
    connector: str


def decide(
    job_id,
    actor: audit.Actor,
    decision: str,
    *,
    answer: Any = None,
    reason: str = "",
    final: bool = False,
    via: str = "",
    seen: str = "",
) -> Decided:
    """Approve, edit (with `answer`, validated against the connector's schema) or reject (with
    a `reason`). `final`: the scheduler's deadline approval, which needs no second person.
    `via` says where the decision was taken (admin, API token, deadline), for the evidence.
    `seen`: the digest of the answer the reviewer looked at (answer_digest); when it was edited
    since, nothing is decided (approving an answer one has not read is no approval)."""
    if decision not in DECISIONS:
        raise ReviewRefused("invalid_decision", "decision must be approve, edit or reject")
    reason = (reason or "").strip()
    if decision == REJECT and not reason:
        raise ReviewRefused("reason_required", "Say why it is rejected.", field="reason")
    now = timezone.now()
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(of=("self",))
            .select_related("connector")
            .filter(id=job_id)
            .first()
        )
        review = Review.objects.filter(job_id=job_id).first() if job else None
        if review is None:
            raise ReviewRefused("review_not_found", f"No held job {job_id}.")
        if not review.is_waiting or job.status != Status.AWAITING_REVIEW:
            raise already_decided(review)
        if seen and seen != answer_digest(job.output):
            raise ReviewRefused(
                "review_changed",
                f"{review.first_approved_by or 'Someone'} edited the answer since you opened "
                "it; look at it again.",
            )
        connector = job.connector
        edited = None
        if decision == EDIT:
            edited = checked_answer(connector, answer)
        context = {"via": via} if via else {}
        if decision == REJECT:
            outcome = reject(job, review, actor, reason, now, context)
        else:
            outcome = approve(job, review, actor, edited, reason, now, context, final=final)
    return Decided(str(job_id), outcome, connector.slug)


def answer_digest(output: Any) -> str:
    """A short fingerprint of an answer, for "the answer I looked at" in a decision."""
    text = json.dumps(output, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def already_decided(review: Review) -> ReviewRefused:
    by = f" by {review.decided_by}" if review.decided_by else ""
    return ReviewRefused(
        "already_decided",
        f"This job was already decided{by} ({review.get_decision_display().lower()}); "
        "nothing was changed.",
    )


def claim_review(review: Review, **values) -> None:
    """The conditional update every decision makes: only if nobody acted since it was read."""
    updated = Review.objects.filter(
        job_id=review.job_id, decision=Decision.WAITING, first_approved_by=review.first_approved_by
    ).update(**values)
    if not updated:
        current = Review.objects.get(job_id=review.job_id)
        if current.is_waiting:
            raise ReviewRefused(
                "review_changed",
                f"{current.first_approved_by or 'Someone'} acted on this job meanwhile; "
                "look at it again.",
            )
        raise already_decided(current)


def reject(job: Job, review: Review, actor: audit.Actor, reason: str, now, context: dict) -> str:
    claim_review(
        review, decision=Decision.REJECTED, decided_by=actor.name, decided_at=now, reason=reason
    )
    Job.objects.filter(id=job.id, status=Status.AWAITING_REVIEW).update(
        status=Status.REJECTED,
        finished_at=now,
        encrypted_tokens="",  # the job's life ends here: nothing will be restored
        error_code="rejected",
        error_message=f"rejected by a reviewer: {reason}"[:2000],
    )
    record(job, "review.rejected", actor, {"reason": reason, **context})
    return Decision.REJECTED


def approve(job, review, actor, edited, reason: str, now, context: dict, *, final: bool) -> str:
    """Approve the answer as it is, or the edited one; with four eyes the first approval of an
    answer only records who gave it."""
    changes: dict = {"reason": reason, **context} if reason else dict(context)
    if edited is not None:
        output, result = edited
        changes |= audit.diff(
            {"answer": job.output, "result": job.result}, {"answer": output, "result": result}
        )
        Job.objects.filter(id=job.id).update(output=output, result=result)
    needs_second = job.connector.review_four_eyes and not final
    if needs_second and edited is not None:  # a new answer: its editor is its first approver
        claim_review(review, first_approved_by=actor.name, first_approved_at=now)
        record(job, "review.edited", actor, {**changes, "approvals": "1 of 2"})
        return "first_approval"
    if needs_second and not review.first_approved_by:
        claim_review(review, first_approved_by=actor.name, first_approved_at=now)
        record(job, "review.first_approval", actor, {**changes, "approvals": "1 of 2"})
        return "first_approval"
    if needs_second and review.first_approved_by == actor.name:
        raise ReviewRefused(
            "second_approver_required",
            f"{actor.name} approved this answer already; a second, different person must "
            "approve it.",
        )
    was_edited = edited is not None or job.output != review.held_output
    decision = Decision.EDITED if was_edited else Decision.APPROVED
    claim_review(review, decision=decision, decided_by=actor.name, decided_at=now, reason=reason)
    Job.objects.filter(id=job.id, status=Status.AWAITING_REVIEW).update(
        status=Status.PENDING,
        attempts_before_retry=F("attempts"),  # the write-back gets a full round of attempts
        next_attempt_at=None,
    )
    if review.first_approved_by:
        changes["first_approved_by"] = review.first_approved_by
    action = "review.edited" if edited is not None else "review.approved"
    record(job, action, actor, changes)
    job_id = str(job.id)
    transaction.on_commit(lambda: jobs.enqueue([job_id]), robust=True)
    return decision


def record(job: Job, action: str, actor: audit.Actor, changes: dict) -> None:
    """The decision's audit event, on the review (its id is the job's), after the row locks."""
    audit.record(
        action,
        actor,
        connector=job.connector.slug,
        changes=changes,
        obj=Review(job=job, connector=job.connector),
    )


def checked_answer(connector: Connector, answer: Any) -> tuple[dict, dict]:
    """An edited answer, validated as the AI's own would be, and its output-mapped result."""
    if connector.output_format == Connector.OutputFormat.JSON:
        text = answer if isinstance(answer, str) else json.dumps(answer)
    else:
        if isinstance(answer, dict):
            answer = answer.get("text")
        if not isinstance(answer, str):
            raise ReviewRefused("invalid_answer", "The answer must be text.", field="answer")
        text = answer
    try:
        output = prompts.parse_output(text, connector.output_format, connector.output_schema)
        result = mapping.map_fields(
            output, pipeline.field_specs(connector, FieldMapping.Direction.OUTPUT)
        )
    except PipelineError as error:
        raise ReviewRefused("invalid_answer", error.message, field="answer") from None
    if problem := legacy_json.unstorable([output, result]):
        raise ReviewRefused("invalid_answer", f"The answer holds {problem}.", field="answer")
    return output, result


# --- The failure report of a rejected job ---------------------------------------------------


def report_rejections(now=None) -> int:
    """Tell the legacy side about rejected jobs (a status column, a reply), as for dead ones.
    Run by the scheduler; a report is marked after it was made, so a crash repeats it rather
    than losing it (sinks' reports are conditional: db_update changes only a claimed row)."""
    now = now or timezone.now()
    pending = list(
        Review.objects.filter(
            decision=Decision.REJECTED,
            failure_reported_at__isnull=True,
            decided_at__lte=now,
        )
        .select_related("job", "connector__provider")
        .order_by("decided_at")[:200]
    )
    by_connector: dict[int, list[Review]] = {}
    for review in pending:
        by_connector.setdefault(review.connector_id, []).append(review)
    reported = 0
    for reviews in by_connector.values():
        connector = reviews[0].connector
        try:
            sink = pipeline.build_sink(connector)
        except Exception:
            logger.exception("cannot build the sink of %s to report rejections", connector.slug)
            continue
        try:
            for review in reviews:
                job = review.job
                delivery = Delivery(
                    job_id=str(job.id),
                    connector=connector.slug,
                    source_reference=job.source_reference,
                    result={},
                    attempt=job.attempts,
                    source_metadata=job.source_metadata,
                )
                try:
                    sink.report_failure(delivery, f"rejected: {review.reason}")
                except Exception:
                    logger.exception("could not report the rejection of job %s", job.id)
                    continue
                reported += Review.objects.filter(
                    job_id=job.id, failure_reported_at__isnull=True
                ).update(failure_reported_at=timezone.now())
        finally:
            sink.close()
    return reported


# --- Evidence ---------------------------------------------------------------------------------


def evidence(job: Job) -> dict | None:
    """The review of a job for its lineage: why it was held, the AI's own answer, and every
    decision with who, when, the reason and the before/after of an edit."""
    held = Review.objects.filter(job_id=job.id).first()
    if held is None:
        return None
    decisions = AuditEvent.objects.filter(
        object_type="review", object_id=str(job.id), action__startswith="review."
    ).order_by("sequence")
    return {
        "rule": held.rule,
        "held_at": held.held_at.isoformat(),
        "deadline": held.deadline.isoformat(),
        "held_answer": held.held_output,
        "decision": held.decision or "waiting",
        "decided_by": held.decided_by or None,
        "decided_at": held.decided_at.isoformat() if held.decided_at else None,
        "reason": held.reason or None,
        "first_approved_by": held.first_approved_by or None,
        "failure_reported_at": (
            held.failure_reported_at.isoformat() if held.failure_reported_at else None
        ),
        "decisions": [
            {
                "sequence": event.sequence,
                "action": event.action,
                "actor": event.actor,
                "at": event.created_at.isoformat(),
                "changes": event.changes,
            }
            for event in decisions
        ],
    }
