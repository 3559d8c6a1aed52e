"""The RQ boundary: records become job rows, rows are enqueued after commit, RQ runs batches.

The database is the source of truth and Redis is transport: a job row is committed as `pending`
first and enqueued on commit. If Redis is down or the process dies in between, the reconciler
(run by the scheduler every few seconds) finds the row and enqueues it.
"""

import json
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job as RQJob
from rq.job import JobStatus

from connectors import (
    audit,
    batches,
    broker,
    bulk,
    crypto,
    exports,
    intake_plans,
    lifecycle,
    pipeline,
    wake_ups,
)
from connectors.errors import PipelineError
from connectors.models import Connector, Job
from connectors.work import Submission

logger = logging.getLogger(__name__)
Status = Job.Status
# What a job's first audit event pins (exports.pins): the rest is pinned when it finishes.
CREATED_PINS = ("redacted_input", "prompt")
RQ_JOB_TIMEOUT = 60 * 60  # a batch is bounded by provider timeouts; leases recover the rest
WAITING_RQ_STATES = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def get_queue() -> Queue:
    return Queue(settings.RQ_QUEUE_NAME, connection=broker.get_redis())


# --- Intake --------------------------------------------------------------------------------


class RecordRejected(Exception):
    """Record number `index` of a submission cannot be accepted; nothing was stored."""

    def __init__(self, index: int, error: PipelineError) -> None:
        super().__init__(error.message)
        self.index = index
        self.error = error


@dataclass(frozen=True)
class Prepared:
    """Records mapped, redacted and rendered, as job rows not yet stored (`positions`: each
    one's index in the submission; `chosen_keys`: whether any caller chose its key)."""

    connector: Connector
    submissions: list[Submission]
    positions: list[int]
    keys: list[str]
    candidates: list[Job]
    chosen_keys: bool


def submit(
    connector: Connector,
    submissions: Sequence[Submission],
    actor: audit.Actor,
    *,
    rejected: list[RecordRejected] | None = None,
) -> list[tuple[Job, bool]]:
    """Turn records into committed job rows (one transaction); enqueue the new ones on commit.

    Returns (job, created) in submission order; an idempotency key seen before returns the
    existing job with created=False. A record that cannot be accepted raises RecordRejected
    before anything is stored, unless `rejected` is given: then it is appended there and skipped
    (file and database sources report such rows instead of refusing the whole batch).
    """
    return store(prepare(connector, submissions, rejected=rejected), actor, rejected=rejected)


def prepare(
    connector: Connector,
    submissions: Sequence[Submission],
    *,
    rejected: list[RecordRejected] | None = None,
) -> Prepared:
    """Map, redact and render the records, their redaction in one batch (reads only: no write
    lock is needed yet)."""
    plan = intake_plans.plan_for(connector)
    outcomes = pipeline.prepare_many(plan, [submission.record for submission in submissions])
    prepared, accepted, positions = [], [], []
    for index, (submission, outcome) in enumerate(zip(submissions, outcomes, strict=True)):
        if isinstance(outcome, PipelineError):
            if rejected is None:
                raise RecordRejected(index, outcome) from outcome
            rejected.append(RecordRejected(index, outcome))
            continue
        prepared.append(outcome)
        accepted.append(submission)
        positions.append(index)
    keys = [s.idempotency_key or str(uuid.uuid4()) for s in accepted]
    candidates = bulk.build(
        Job,
        {"connector": connector, "provider_name": connector.provider.name},
        (
            {
                "id": uuid.uuid4(),
                "idempotency_key": key,
                "record_fingerprint": submission.fingerprint,
                "source_reference": record.source_reference or submission.source_reference[:500],
                "source_metadata": submission.source_metadata,
                "source_file_id": submission.source_file_id,
                "input_data": record.input_data,
                "redaction_hits": record.redaction_hits,
                "encrypted_tokens": crypto.encrypt(json.dumps(record.tokens))
                if record.tokens
                else "",
                "prompt": record.prompt,
            }
            for key, submission, record in zip(keys, accepted, prepared, strict=True)
        ),
    )
    chosen = any(submission.idempotency_key for submission in accepted)
    return Prepared(connector, accepted, positions, keys, candidates, chosen)


def store(
    prepared: Prepared, actor: audit.Actor, *, rejected: list[RecordRejected] | None = None
) -> list[tuple[Job, bool]]:
    """Insert the rows and their audit events in one transaction (the chain head last);
    enqueue the new ones on commit. See `submit`."""
    return _store(prepared, [actor] * len(prepared.candidates), rejected)


def store_together(items: Sequence[tuple[Prepared, audit.Actor]]) -> list[list[tuple[Job, bool]]]:
    """Several requests' records of one connector stored as `store` stores one request's: one
    insert, one audit append, RQ jobs shared up to the batch size; each event names its own
    request's actor. Returns each request's results; raises what any of them would (nothing is
    then stored: the caller stores them one by one to tell which)."""
    parts = [prepared for prepared, _ in items]
    merged = Prepared(
        connector=parts[0].connector,
        submissions=[submission for part in parts for submission in part.submissions],
        positions=list(range(sum(len(part.candidates) for part in parts))),
        keys=[key for part in parts for key in part.keys],
        candidates=[candidate for part in parts for candidate in part.candidates],
        chosen_keys=any(part.chosen_keys for part in parts),
    )
    actors = [actor for prepared, actor in items for _ in prepared.candidates]
    results = _store(merged, actors, None)
    split, start = [], 0
    for part in parts:
        split.append(results[start : start + len(part.candidates)])
        start += len(part.candidates)
    return split


def _store(
    prepared: Prepared, actors: list[audit.Actor], rejected: list[RecordRejected] | None
) -> list[tuple[Job, bool]]:
    """`store`, with each candidate's actor."""
    connector, submissions, positions = prepared.connector, prepared.submissions, prepared.positions
    keys, candidates = prepared.keys, prepared.candidates
    # Stored as queued in the RQ jobs they will be sent in on commit (no second write): if that
    # send fails they go back to pending, and if the process dies first the reconciler finds
    # them queued with no RQ job (find_stale_queued).
    now = timezone.now()
    for chunk in batched(candidates, connector.batch_size):
        rq_id = rq_job_id([str(chunk[0].id)])
        for candidate in chunk:
            candidate.status, candidate.enqueued_at, candidate.rq_job_id = Status.QUEUED, now, rq_id
    # No savepoint inside a caller's transaction: a refusal or an error here fails all of it.
    # Pipelined (a few rows): BEGIN, the insert and the chain head's locked read go in one
    # round trip, the events and the head's update in one more.
    with transaction.atomic(savepoint=False), bulk.pipelined_for(len(candidates)):
        # Only a caller's key can be seen before: new UUID keys cannot conflict.
        bulk.insert(candidates, ignore_conflicts=prepared.chosen_keys)
        if prepared.chosen_keys:
            by_key = {}
            for chunk in batched(keys, 500):
                for job in Job.objects.filter(connector=connector, idempotency_key__in=chunk):
                    job.connector = connector  # str(job) in the audit entry: no query each
                    by_key[job.idempotency_key] = job
        else:  # every key is a new UUID: every candidate was inserted, as it is
            by_key = {candidate.idempotency_key: candidate for candidate in candidates}
        # New only if this very candidate was inserted (two records of one batch may share a key).
        results = [
            (by_key[key], by_key[key].id == candidate.id)
            for key, candidate in zip(keys, candidates, strict=True)
        ]
        conflicts = reused_keys(results, submissions, positions)
        if conflicts and rejected is None:
            raise conflicts[0]
        if conflicts:
            rejected.extend(conflicts)
            refused = {positions.index(conflict.index) for conflict in conflicts}
            results = [result for n, result in enumerate(results) if n not in refused]
            actors = [actor for n, actor in enumerate(actors) if n not in refused]
        pairs = zip(results, actors, strict=True)
        created = [(job, actor) for (job, is_new), actor in pairs if is_new]
        audit.record_many(
            audit.entry_for(
                "job.created",
                actor,
                job,
                connector=connector.slug,
                changes={
                    **({"source_reference": job.source_reference} if job.source_reference else {}),
                    "digests": exports.pins(job, CREATED_PINS),
                },
            )
            for job, actor in created
        )
        created = [job for job, _ in created]
        if created:
            transaction.on_commit(lambda: enqueue_created(created), robust=True)  # 202 anyway
    return results


def reused_keys(
    results: list[tuple[Job, bool]], submissions: Sequence[Submission], positions: list[int]
) -> list[RecordRejected]:
    """A key seen before must come with the same record; otherwise the caller reused a key for a
    new record (a counter reset, a collision) and answering with the old job would lose it."""
    conflicts = []
    for (job, is_new), submission, index in zip(results, submissions, positions, strict=True):
        stored, sent = job.record_fingerprint, submission.fingerprint
        if not is_new and stored and sent and stored != sent:
            error = PipelineError(
                f"idempotency key {job.idempotency_key!r} was already used for a different "
                f"record (job {job.id}); use a new key for a new record",
                code="idempotency_key_reused",
                permanent=True,
            )
            conflicts.append(RecordRejected(index, error))
    return conflicts


# --- Enqueue and run -----------------------------------------------------------------------


def enqueue(job_ids: Sequence[str]) -> int:
    """Put jobs on the RQ queue in batches of their connector's batch_size; mark them queued.

    Never raises on a Redis failure: the rows stay pending/failed and the reconciler retries.
    """
    rows = Job.objects.filter(id__in=job_ids).values_list(
        "id", "connector_id", "connector__batch_size", "attempts"
    )
    by_connector: dict[int, list[str]] = {}
    sizes, attempts = {}, {}
    for job_id, connector_id, batch_size, attempts_used in rows:
        by_connector.setdefault(connector_id, []).append(str(job_id))
        sizes[connector_id] = batch_size
        attempts[str(job_id)] = attempts_used
    chunks = [
        list(chunk)
        for connector_id, ids in by_connector.items()
        for chunk in batched(ids, sizes[connector_id])
    ]
    return len(send(chunks, attempts))


def enqueue_created(created: list[Job]) -> None:
    """The on-commit send of jobs `store` committed as queued, in the RQ jobs they name. Jobs
    that fit in one RQ job are sent only if no wake-up of their connector is pending (that RQ
    job will claim them: wake_ups). If Redis refuses, they become pending again (the reconciler
    enqueues them after the grace)."""
    chunks: dict[str, list[str]] = {}
    for job in created:
        chunks.setdefault(job.rq_job_id, []).append(str(job.id))
    armed = None
    try:
        if len(chunks) == 1:
            if not wake_ups.arm(created[0].connector_id, created[0].rq_job_id):
                return
            armed = created[0].connector_id
        get_queue().enqueue_many([rq_job_data(chunk, rq_id) for rq_id, chunk in chunks.items()])
    except RedisError as error:
        if armed is not None:
            wake_ups.disarm(armed)  # no RQ job behind it (best effort: it expires anyway)
        logger.warning(
            "Redis unavailable (%s); %d jobs wait for the reconciler",
            type(error).__name__,
            len(created),
        )
        Job.objects.filter(
            id__in=[job.id for job in created], status=Status.QUEUED, rq_job_id__in=list(chunks)
        ).update(status=Status.PENDING, enqueued_at=None, rq_job_id="")
        for job in created:
            job.status, job.enqueued_at, job.rq_job_id = Status.PENDING, None, ""


def rq_job_data(chunk: list[str], rq_id: str):
    return Queue.prepare_data(
        run_batch,
        args=(chunk,),
        job_id=rq_id,
        timeout=RQ_JOB_TIMEOUT,
        result_ttl=0,
        failure_ttl=24 * 3600,
    )


def send(chunks: list[list[str]], attempts: dict[str, int]) -> dict[str, str]:
    """One RQ job per chunk; the jobs no worker has run meanwhile become queued. Returns each
    sent job's RQ job id (nothing when Redis is down: the reconciler retries)."""
    if not chunks:
        return {}
    rq_ids = [rq_job_id(chunk) for chunk in chunks]
    queue = get_queue()
    try:
        queue.enqueue_many(
            [rq_job_data(chunk, rq_id) for chunk, rq_id in zip(chunks, rq_ids, strict=True)]
        )
    except RedisError as error:
        logger.warning(
            "Redis unavailable (%s); %d jobs wait for the reconciler",
            type(error).__name__,
            len(attempts),
        )
        return {}
    now = timezone.now()
    for chunk, rq_id in zip(chunks, rq_ids, strict=True):
        # Only jobs no worker has run meanwhile: one that already ran and failed again (its
        # attempts moved on) keeps its status and its backoff.
        by_attempts: dict[int, list[str]] = {}
        for job_id in chunk:
            by_attempts.setdefault(attempts[job_id], []).append(job_id)
        for attempts_used, ids in by_attempts.items():
            Job.objects.filter(
                id__in=ids, status__in=[Status.PENDING, Status.FAILED], attempts=attempts_used
            ).update(status=Status.QUEUED, enqueued_at=now, rq_job_id=rq_id)
    return {job_id: rq_id for chunk, rq_id in zip(chunks, rq_ids, strict=True) for job_id in chunk}


def batched(items: Sequence, size: int) -> list[Sequence]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def rq_job_id(chunk: Sequence[str]) -> str:
    """A new id for every enqueue: an RQ job left `started` by a dead worker must not be
    mistaken for (or overwritten by) the job that replaces it."""
    return f"interlock-{chunk[0]}-{uuid.uuid4().hex[:8]}"


def will_run(rq_job: RQJob, claim_deadline) -> bool:
    """Whether an RQ job will still claim its Interlock jobs: waiting for a worker, or started
    recently enough that its worker may be claiming now."""
    status = rq_job.get_status(refresh=False)
    if status == JobStatus.STARTED:
        return rq_job.started_at is not None and rq_job.started_at > claim_deadline
    return status in WAITING_RQ_STATES


def run_batch(job_ids: list[str]) -> None:
    """The RQ entry point: ids in, everything else from the database."""
    release_stale_connections()
    try:
        batches.run_batch(job_ids, worker=worker_name())
    finally:
        release_stale_connections()


def queue_stats() -> dict:
    """Queue depth and live workers, or the Redis error that prevents knowing them."""
    from rq import Worker

    try:
        queue = get_queue()
        return {
            "redis": "ok",
            "queue_depth": queue.count,
            "workers": Worker.count(connection=queue.connection),
        }
    except RedisError as error:
        return {"redis": f"error: {type(error).__name__}", "queue_depth": None, "workers": None}


def release_stale_connections() -> None:
    """A long-lived worker must drop broken connections; never inside a transaction (tests)."""
    if not connection.in_atomic_block:
        close_old_connections()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- Reconciler ----------------------------------------------------------------------------


def reconcile(now=None) -> dict[str, int]:
    """Enqueue what Redis lost or never got; recover jobs of dead workers. Idempotent.
    `now` lets tests move the clock past a lease instead of sleeping."""
    now = now or timezone.now()
    counts = {}
    counts["lost"], dead = lifecycle.recover_lost(now)
    if dead:
        batches.report_dead(dead)
    due = list(Job.objects.due(now).values_list("id", flat=True)[:5000])
    counts["stale_queued"] = len(stale_queued := find_stale_queued(now))
    counts["enqueued"] = enqueue([str(job_id) for job_id in due] + stale_queued)
    return counts


def find_stale_queued(now) -> list[str]:
    """Queued jobs nobody will run: their RQ job is gone (Redis flushed or restarted without
    persistence), ended without claiming them, or was started by a worker that died before its
    claim. A worker claims its jobs first thing, so a started RQ job whose jobs are still queued
    a lease later has lost its worker. Enqueueing again is safe: claims are conditional."""
    return without_rq_job(
        list(Job.objects.queued_before(now).values_list("id", "rq_job_id")[:5000]), now
    )


def without_rq_job(rows: list[tuple], now) -> list[str]:
    """Of these queued jobs (id, RQ job id), those no RQ job will claim, made pending again for
    the caller to enqueue (nothing, if Redis cannot tell)."""
    if not rows:
        return []
    rq_ids = sorted({rq_id for _, rq_id in rows if rq_id})
    claim_deadline = now - timedelta(seconds=settings.JOB_LEASE_SECONDS)
    try:
        alive = {
            rq_job.id
            for rq_job in RQJob.fetch_many(rq_ids, connection=broker.get_redis())
            if rq_job is not None and will_run(rq_job, claim_deadline)
        }
    except RedisError:
        return []
    stale = [str(job_id) for job_id, rq_id in rows if rq_id not in alive]
    Job.objects.filter(id__in=stale, status=Status.QUEUED).update(status=Status.PENDING)
    return stale
