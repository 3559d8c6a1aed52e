"""Job state transitions, each in one transaction with its attempt row and audit event.

    pending/queued --claim--> running --finish--> succeeded | failed (retry later) | dead
    running --finish (the review policy holds the answer)--> awaiting_review
    awaiting_review --approve (connectors.review)--> pending;  --reject--> rejected
    running (lease expired: the worker died) --recover--> failed (retry now) | dead
    dead/failed --retry (admin)--> pending;  pending/queued/failed --cancel--> cancelled
    succeeded/failed/dead/cancelled with a result --re-send write-back (admin)--> pending

A job awaiting review has no lease and is neither claimable nor due: workers, the reconciler
and retention leave it alone; only a decision (or its connector's review deadline) moves it.

Claims and finishes are conditional on the current state, so a job run twice (an RQ job
enqueued twice, a worker presumed dead that was only slow) is recorded once.

Lock order, everywhere a transaction takes more than one lock (intake, claim, finish, recover,
the admin's retry and cancel, key rotation): job rows first, the audit chain head last
(`audit.record*` at the end of the transaction, never between row locks). Workers and the
reconciler lock job rows only (`of=("self",)`), never the connector: intake holds the chain head
when its commit checks the new rows' foreign key, which takes a share lock on the connector row.
"""

import copy
import random
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from connectors import audit, bulk, database, exports, finish_notices, row_updates
from connectors.models import Job, JobAttempt, Provider, Review
from connectors.work import Answer, Outcome

Status = Job.Status
SYSTEM = audit.Actor.system("worker")
RECONCILER = audit.Actor.system("reconciler")


def lease_until(now):
    return now + timedelta(seconds=settings.JOB_LEASE_SECONDS)


ROW_FIELDS = ("id", "connector_id", "created_at", "enqueued_at", "next_attempt_at")


def claim(
    job_ids: list[str], worker: str = "", *, fill_to: int = 0, connector_id: int | None = None
) -> list[Job]:
    """Take the claimable jobs among job_ids: running, attempts + 1, a lease, an attempt row.

    With `fill_to`, the batch is topped up to that many with the oldest other claimable jobs of
    the same connector (`connector_id`, else that of the first job claimed): records that
    arrived one per request then share the provider's concurrency instead of running one at a
    time. Their own RQ jobs find them taken and claim what is left, if anything; nothing waits
    for a batch to fill."""
    now = timezone.now()
    with transaction.atomic():
        claimable = Job.objects.select_for_update(skip_locked=True).claimable(now)
        rows = list(claimable.filter(id__in=job_ids).values(*ROW_FIELDS))
        connector_id = rows[0]["connector_id"] if rows else connector_id
        if connector_id is not None and len(rows) < fill_to:
            rows += (
                claimable.filter(connector_id=connector_id)
                .exclude(id__in=[row["id"] for row in rows])
                .order_by("created_at")
                .values(*ROW_FIELDS)[: fill_to - len(rows)]
            )
        if not rows:
            return []
        # The statements whose answers are not read (the update, the inserts) go with the
        # next one whose answer is (bulk.pipelined_for).
        with bulk.pipelined_for(len(rows)):
            jobs, started = _start(rows, worker, now)
            audit.record_many(started)
    return jobs


def claim_more(connector_id: int, worker: str, count: int) -> list[Job]:
    """Up to `count` of the connector's oldest pending or queued jobs, claimed as `claim` does:
    a running batch refills the provider's free slots with records that arrived meanwhile.
    Failed jobs are left to their retry time and the reconciler (a batch does not retry its own
    failures)."""
    return finish_and_claim([], connector_id, worker, count)


def finish_and_claim(
    results: list[tuple[Job, Outcome]], connector_id: int, worker: str, count: int
) -> list[Job]:
    """Record outcomes (as `finish_many`) and claim up to `count` more (as `claim_more`) in one
    transaction: a running batch takes the audit chain head's lock once per turn, not twice.
    Intake holds that lock for every request it stores, so each take is a wait in line."""
    now = timezone.now()
    claimable = Job.objects.filter(
        connector_id=connector_id, status__in=[Status.PENDING, Status.QUEUED]
    )
    if not results and (count <= 0 or not claimable.exists()):
        return []  # no write lock (SQLite) when there is nothing to do
    with transaction.atomic():
        with database.pipelined():  # updates only, then the claim's read
            finished = _finish(results, now)
            rows = []
            if count > 0:
                rows = list(
                    claimable.select_for_update(skip_locked=True)
                    .order_by("created_at")
                    .values(*ROW_FIELDS)[:count]
                )
        with bulk.pipelined_for(len(finished) + len(rows)):
            jobs, started = _start(rows, worker, now) if rows else ([], [])
            # After the row locks: see the lock order above.
            audit.record_many(finished + started)
        _announce_on_commit(results)
    return jobs


def _start(rows: list[dict], worker: str, now) -> tuple[list[Job], list[audit.Entry]]:
    """The claim itself, inside the caller's transaction: the jobs and the audit entries the
    caller records last."""
    ids = [row["id"] for row in rows]
    waited_ms = {
        row["id"]: max(0, int((now - waited_since(row)).total_seconds() * 1000)) for row in rows
    }
    Job.objects.filter(id__in=ids).update(
        status=Status.RUNNING,
        attempts=F("attempts") + 1,
        lease_expires_at=lease_until(now),
        started_at=now,
        next_attempt_at=None,
    )
    jobs = list(Job.objects.select_related("connector__provider__credential").filter(id__in=ids))
    for job in jobs:  # the job row gets it with the outcome (one UPDATE per job anyway)
        job.queue_wait_ms = waited_ms[job.id]
    # Their ids are not read back: an attempt is found by its job and number.
    bulk.insert(
        bulk.build(
            JobAttempt,
            {"started_at": now, "worker": worker},
            (
                {"job_id": job.id, "number": job.attempts, "queue_wait_ms": waited_ms[job.id]}
                for job in jobs
            ),
        )
    )
    started = [
        audit.entry_for(
            "job.started",
            SYSTEM,
            job,
            connector=job.connector.slug,
            changes={"attempt": job.attempts, "worker": worker},
        )
        for job in jobs
    ]
    return jobs, started


def waited_since(row: dict):
    """When the job began waiting for this attempt: its retry time, enqueue or creation."""
    return row["next_attempt_at"] or row["enqueued_at"] or row["created_at"]


def extend_leases(job_ids: list[str]) -> None:
    """Heartbeat: the worker is alive, keep its jobs."""
    now = timezone.now()
    Job.objects.filter(id__in=job_ids, status=Status.RUNNING).update(
        lease_expires_at=lease_until(now)
    )


def finish_many(results: list[tuple[Job, Outcome]]) -> int:
    """Record several outcomes in one transaction (one commit for a burst of fast answers)."""
    now = timezone.now()
    with transaction.atomic(), bulk.pipelined_for(len(results)):
        entries = _finish(results, now)
        audit.record_many(entries)
        _announce_on_commit(results)
    return len(entries)


def _announce_on_commit(results: list[tuple[Job, Outcome]]) -> None:
    """Wake the requests waiting for these jobs once their outcomes are committed."""
    if results:
        connector_ids = {job.connector_id for job, _ in results}
        transaction.on_commit(lambda: finish_notices.announce(connector_ids), robust=True)


def _finish(results: list[tuple[Job, Outcome]], now) -> list[audit.Entry]:
    """The outcomes' row updates, inside the caller's transaction: the audit entries of those
    still ours (a reconciler may have given a job to another worker meanwhile)."""
    entries, closing, held = [], [], []
    transitions = [(job, outcome, *_transition(job, outcome, now)) for job, outcome in results]
    stored = _store_finished([(job, status, fields) for job, _, status, _, fields in transitions])
    for job, outcome, status, action, fields in transitions:
        if job.id not in stored:
            continue  # a reconciler gave this job to another worker meanwhile
        error = outcome.error
        closing.append((job, _attempt_data(job, outcome, now)))
        changes = {"attempt": job.attempts}
        if outcome.answer is not None and outcome.answer.provider:
            changes["provider"] = outcome.answer.provider
        if error is not None:
            changes |= {"error": error.code, "permanent": error.permanent}
        if status == Status.AWAITING_REVIEW:
            changes["rule"] = outcome.held
            held.append(_review_for(job, outcome, now))
        changes["digests"] = exports.pins(_as_stored(job, fields))
        entries.append(
            audit.entry_for(action, SYSTEM, job, connector=job.connector.slug, changes=changes)
        )
    _close_attempts(closing)
    Review.objects.bulk_create(held)
    return entries


def _review_for(job: Job, outcome: Outcome, now) -> Review:
    """The review row of a job whose answer is held, with its connector's deadline."""
    connector = job.connector
    return Review(
        job_id=job.id,
        connector_id=connector.id,
        rule=outcome.held[:500],
        held_at=now,
        deadline=now + timedelta(hours=connector.review_deadline_hours),
        held_output=outcome.answer.output if outcome.answer else None,
    )


def _as_stored(job: Job, fields: dict) -> Job:
    """The job as its row reads after the update (the sums computed in SQL left out): what its
    finishing event pins the lineage to."""
    stored = copy.copy(job)
    for name, value in fields.items():
        if not hasattr(value, "resolve_expression"):
            setattr(stored, name, value)
    return stored


def _attempt_data(job: Job, outcome: Outcome, now) -> dict:
    """How this one attempt ended, what it spent and wrote (the job row keeps the totals)."""
    error, answer, write_back = outcome.error, outcome.answer, outcome.write_back
    answer = answer or Answer()
    if outcome.held:
        ended = JobAttempt.Outcome.HELD
    else:
        ended = JobAttempt.Outcome.SUCCEEDED if error is None else JobAttempt.Outcome.FAILED
    return {
        "outcome": ended,
        "finished_at": now,
        "error_code": error.code if error else "",
        "error_message": error.message[:2000] if error else "",
        "ai_ms": answer.ms,
        "write_ms": write_back.ms if write_back else None,
        "write_outcome": _written(outcome),
        "provider_name": answer.provider,
        "model": answer.model,
        "stop_reason": answer.stop_reason,
        "tokens_in": answer.tokens_in,
        "tokens_out": answer.tokens_out,
        "cost": spent(job, answer),
    }


def spent(job: Job, answer: Answer):
    """What the answer's tokens cost at the prices of the provider that answered."""
    return answered_by(job, answer).cost(answer.tokens_in, answer.tokens_out, answer.tokens_cached)


def answered_by(job: Job, answer: Answer) -> Provider:
    """The provider whose prices the answer's tokens cost: the one that answered."""
    primary = job.connector.provider
    if not answer.provider or answer.provider == primary.name:
        return primary
    return Provider.objects.filter(name=answer.provider).first() or primary


def _close_attempts(closing: list[tuple[Job, dict]]) -> None:
    """Write a burst's attempt rows in one executemany (bench/pipeline.py)."""
    row_updates.update_each(
        JobAttempt, ("job", "number"), [((job.id, job.attempts), data) for job, data in closing]
    )


def _store_finished(updates: list[tuple[Job, str, dict]]) -> set:
    """Store each job's new status and fields if it still runs the attempt this worker claimed;
    returns the ids stored. One SELECT locks and checks the rows, then one executemany per set
    of fields writes them (an update() per job was a compiled statement and a round trip per
    outcome); the UPDATE keeps its condition all the same."""
    if not updates:
        return set()
    current = dict(
        Job.objects.select_for_update()
        .filter(id__in=[job.id for job, _, _ in updates], status=Status.RUNNING)
        .values_list("id", "attempts")
    )
    ours = [update for update in updates if current.get(update[0].id) == update[0].attempts]
    row_updates.update_each(
        Job,
        ("id", "status", "attempts"),
        [
            ((job.id, Status.RUNNING, job.attempts), {"status": status, **fields})
            for job, status, fields in ours
        ],
    )
    return {job.id for job, _, _ in ours}


def _transition(job: Job, outcome: Outcome, now) -> tuple[str, str, dict]:
    """The new status, its audit action and the fields to store for one outcome."""
    error = outcome.error
    answer = outcome.answer
    fields = {
        "lease_expires_at": None,
        "queue_wait_ms": job.queue_wait_ms,
        "provider_name": (answer.provider if answer else "") or job.connector.provider.name,
        "token_report": outcome.token_report,
        "answer_pii": outcome.answer_pii,
        "write_outcome": _written(outcome),
        "write_ms": outcome.write_back.ms if outcome.write_back else None,
    }
    if answer is not None and (answer.output is not None or answer.text):
        fields |= {
            "ai_output": answer.text,
            "repair_prompt": answer.repair_prompt,
            "model": answer.model,
            "stop_reason": answer.stop_reason,
            "output": answer.output,
            "result": outcome.result,
            "tokens_in": F("tokens_in") + answer.tokens_in,
            "tokens_out": F("tokens_out") + answer.tokens_out,
            "cost": F("cost") + spent(job, answer),
            "ai_ms": answer.ms,
        }
    if outcome.held:  # the token map stays (encrypted) until the answer is written back
        fields |= {"error_code": "", "error_message": "", "error_traceback": ""}
        return Status.AWAITING_REVIEW, "job.held", fields
    if error is None:
        fields |= {
            "finished_at": now,
            "encrypted_tokens": "",
            "error_code": "",
            "error_message": "",
            "error_traceback": "",
        }
        return Status.SUCCEEDED, "job.succeeded", fields
    exhausted = error.permanent or (job.is_last_attempt and error.counts_as_attempt)
    used = job.attempts - job.attempts_before_retry
    if not error.counts_as_attempt:  # a budget's wait: the attempt is given back
        fields["attempts_before_retry"] = F("attempts_before_retry") + 1
    fields |= {
        "error_code": error.code,
        "error_message": error.message[:2000],
        "error_traceback": outcome.traceback,
        "finished_at": now if exhausted else None,
        "next_attempt_at": None if exhausted else now + retry_delay(used, error.retry_after),
    }
    if exhausted:
        return Status.DEAD, "job.dead", fields
    return Status.FAILED, "job.failed", fields


def _written(outcome: Outcome) -> dict:
    written = outcome.write_back.written if outcome.write_back else None
    if written is None:
        return {}
    return {"target": written.target, "status": written.status, "detail": written.detail}


# What a retried or re-sent job's row becomes: a fresh round, its attempts so far kept aside.
REOPENED = dict(
    status=Status.PENDING,
    attempts_before_retry=F("attempts"),
    next_attempt_at=None,
    finished_at=None,
    error_code="",
    error_message="",
    error_traceback="",
)


def retry_delay(attempts_used: int, retry_after: float | None) -> timedelta:
    """Exponential backoff with jitter; never sooner than the provider's Retry-After."""
    base = min(settings.RETRY_MAX_SECONDS, settings.RETRY_BASE_SECONDS * 2 ** (attempts_used - 1))
    delay = base * random.uniform(0.5, 1.5)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return timedelta(seconds=delay)


def recover_lost(now=None) -> tuple[int, list[str]]:
    """Jobs whose worker died (lease expired): retry now, or dead if that was the last attempt.
    Returns how many were recovered and the ids of those that are now dead."""
    now = now or timezone.now()
    entries, dead = [], []
    with transaction.atomic():
        lost = list(
            Job.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("connector")
            .lease_expired(now)[:500]
        )
        for job in lost:
            exhausted = job.is_last_attempt
            message = "the worker stopped before finishing (lease expired)"
            Job.objects.filter(id=job.id, status=Status.RUNNING).update(
                status=Status.DEAD if exhausted else Status.FAILED,
                lease_expires_at=None,
                next_attempt_at=None if exhausted else now,
                finished_at=now if exhausted else None,
                error_code="worker_lost",
                error_message=message,
            )
            JobAttempt.objects.filter(job=job, outcome=JobAttempt.Outcome.RUNNING).update(
                outcome=JobAttempt.Outcome.LOST,
                finished_at=now,
                error_code="worker_lost",
                error_message=message,
            )
            entries.append(
                audit.entry_for(
                    "job.dead" if exhausted else "job.lost",
                    RECONCILER,
                    job,
                    connector=job.connector.slug,
                    changes={"attempt": job.attempts},
                )
            )
            if exhausted:
                dead.append(str(job.id))
        audit.record_many(entries)
    return len(entries), dead


def retry(jobs, actor: audit.Actor) -> list[str]:
    """Give failed, dead or cancelled jobs a fresh round of attempts (from the admin)."""
    retried = []
    with transaction.atomic():
        for job in jobs:
            # A purged job has no prompt left (and no token map): retrying would send nothing
            # to the AI and write its answer back.
            updated = Job.objects.filter(
                id=job.id,
                status__in=[Status.FAILED, Status.DEAD, Status.CANCELLED],
                payload_purged_at__isnull=True,
            ).update(**REOPENED)
            if updated:
                retried.append(job)
        audit.record_many(  # after the row locks: see the lock order above
            audit.entry_for("job.retried", actor, job, connector=job.connector.slug)
            for job in retried
        )
    return [str(job.id) for job in retried]


def resend_refusal(job: Job) -> str:
    """Why the job's stored result cannot be written back again; empty when it can."""
    if job.result is None:
        return "the AI has not answered: there is no result to write back (retry it instead)"
    if job.payload_purged_at is not None:
        return "its payload was blanked by retention"
    if job.status not in (Status.SUCCEEDED, Status.FAILED, Status.DEAD, Status.CANCELLED):
        return f"it is {job.get_status_display().lower()}"
    if job.status == Status.SUCCEEDED and any((job.token_report or {}).values()):
        # The token map is deleted when a job succeeds: the result holds placeholders only.
        return "its tokenized values were restored and their map deleted when it succeeded"
    return ""


def resend_write_back(jobs, actor: audit.Actor) -> list[str]:
    """Write a job's stored result back again, without asking the AI (the legacy side lost it,
    or the write-back failed): a fresh round whose pipeline starts at the write-back."""
    resent = []
    with transaction.atomic():
        for job in jobs:
            if resend_refusal(job):
                continue
            updated = Job.objects.filter(
                id=job.id, status=job.status, result__isnull=False, payload_purged_at__isnull=True
            ).update(**REOPENED)
            if updated:
                resent.append(job)
        audit.record_many(  # after the row locks: see the lock order above
            audit.entry_for(
                "job.resend_write_back",
                actor,
                job,
                connector=job.connector.slug,
                changes={"status": job.status},
            )
            for job in resent
        )
    return [str(job.id) for job in resent]


def cancel(jobs, actor: audit.Actor) -> int:
    """Cancel jobs that are not running; a running job finishes its attempt first."""
    cancelled = []
    with transaction.atomic():
        for job in jobs:
            updated = Job.objects.filter(
                id=job.id, status__in=[Status.PENDING, Status.QUEUED, Status.FAILED]
            ).update(status=Status.CANCELLED, finished_at=timezone.now())  # tokens kept: retry
            if updated:
                cancelled.append(job)
        audit.record_many(  # after the row locks: see the lock order above
            audit.entry_for("job.cancelled", actor, job, connector=job.connector.slug)
            for job in cancelled
        )
    return len(cancelled)
