"""A job's journey as the job page shows it: one step per stage of the pipeline, from what the
job row, its attempt rows and its audit events already store.

Only what the job page already shows goes in (the redacted input, the prompt that was sent, the
answer, the result before token restore); never the token map, a credential or a provider's
URL credentials. Redaction and the prompt are built at intake, before the job row exists: their
time is part of the intake, not stored apart.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from connectors.models import AuditEvent, Job, JobAttempt, Provider


@dataclass
class Step:
    key: str
    title: str
    state: str  # done, failed, skipped, waiting
    summary: str
    at: datetime | None = None
    ms: int | None = None
    data: list[tuple[str, str]] = field(default_factory=list)  # (label, pretty-printed)


@dataclass
class AttemptView:
    number: int
    outcome: str
    worker: str
    started_at: datetime
    finished_at: datetime | None
    timings: list[tuple[str, int | None]]
    request: dict
    answer: dict
    write_back: dict


@dataclass
class Timeline:
    steps: list[Step]
    attempts: list[AttemptView]
    events: list[AuditEvent]


def pretty(value) -> str:
    """JSON indented for reading; text as it is."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def safe_endpoint(url: str) -> str:
    """A provider URL without credentials in it: no user:password@, no query (where some
    vendors put an API key), no fragment."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def ms_between(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


def build(job: Job) -> Timeline:
    attempts = list(job.attempt_rows.order_by("number"))
    events = list(
        AuditEvent.objects.filter(object_type="job", object_id=str(job.id)).order_by("sequence")
    )
    return Timeline(steps(job, attempts), attempt_views(job, attempts), events)


def steps(job: Job, attempts: list[JobAttempt]) -> list[Step]:
    last = attempts[-1] if attempts else None
    answered = bool(job.ai_output or job.output is not None)
    connector = job.connector
    purged = job.payload_purged_at is not None
    blank = "blanked by retention" if purged else ""
    return [
        Step(
            "intake",
            "Intake",
            "done",
            f"source reference {job.source_reference or '—'}, key {job.idempotency_key}",
            at=job.created_at,
            ms=ms_between(job.created_at, job.enqueued_at),
            data=[("where to answer", pretty(job.source_metadata))] if job.source_metadata else [],
        ),
        Step(
            "redaction",
            "Redaction",
            "done",
            ", ".join(f"{kind}: {count}" for kind, count in sorted(job.redaction_hits.items()))
            or "no rule fired",
            data=[("redacted input", blank or pretty(job.input_data))],
        ),
        Step(
            "prompt",
            "Prompt",
            "done" if job.prompt or purged else "waiting",
            f"{len(job.prompt):,} characters" if job.prompt else blank or "not built",
            data=[("prompt sent", blank or job.prompt)],
        ),
        Step(
            "ai",
            "AI call",
            "done" if answered else "failed" if job.error_code else "waiting",
            (
                f"{job.provider_name or connector.provider.name} · {job.model or '—'} · "
                f"{job.tokens_in} in / {job.tokens_out} out"
                + (f" · stop: {job.stop_reason}" if job.stop_reason else "")
            ),
            at=last.started_at if last else None,
            ms=job.ai_ms,
            data=[("raw answer", blank or job.ai_output)] if answered or purged else [],
        ),
        Step(
            "validation",
            "Validation and repair",
            validation_state(job, answered),
            (
                f"{connector.get_output_format_display()}"
                + ("; the first answer was invalid: a repair was asked" * bool(job.repair_prompt))
                + (f"; PII in the answer: {pretty(job.answer_pii)}" if job.answer_pii else "")
            ),
            data=[
                *([("repair prompt", job.repair_prompt)] if job.repair_prompt else []),
                *([("validated output", pretty(job.output))] if job.output is not None else []),
            ],
        ),
        Step(
            "restore",
            "Token restore",
            "done" if job.token_report else "skipped",
            token_summary(job.token_report),
            data=[("mapped result, before restore", pretty(job.result))]
            if job.result is not None
            else [],
        ),
        Step(
            "write_back",
            "Write-back",
            write_state(job),
            write_summary(job),
            at=job.finished_at,
            ms=job.write_ms,
            data=[("outcome", pretty(job.write_outcome))] if job.write_outcome else [],
        ),
    ]


def validation_state(job: Job, answered: bool) -> str:
    if job.output is not None:
        return "done"
    if job.error_code == "invalid_output":
        return "failed"
    return "waiting" if not answered else "skipped"


def token_summary(report: dict) -> str:
    if not report:
        return "nothing to restore (no tokens, or a sink outside our walls)"
    parts = [f"{name}: {', '.join(values)}" for name, values in sorted(report.items()) if values]
    return "; ".join(parts) or "no token in the answer"


def write_state(job: Job) -> str:
    if job.write_outcome and not job.error_code:
        return "done"
    return "failed" if job.error_code == "sink_error" else "waiting"


def write_summary(job: Job) -> str:
    outcome = job.write_outcome or {}
    if outcome:
        return f"{outcome.get('status', '')} to {outcome.get('target', '')}".strip()
    if job.status == Job.Status.AWAITING_REVIEW:
        return "held for review: nothing written yet"
    if job.error_code:
        return f"{job.get_status_display()}: {job.error_code}"
    return f"{job.connector.sink_kind}: not written yet"


def attempt_views(job: Job, attempts: list[JobAttempt]) -> list[AttemptView]:
    """Per attempt: timings, the outgoing request's metadata (the provider as configured now,
    its URL stripped of credentials) and the answer's status; never headers or keys."""
    names = {attempt.provider_name for attempt in attempts} | {job.connector.provider.name}
    providers = {provider.name: provider for provider in Provider.objects.filter(name__in=names)}
    views = []
    for attempt in attempts:
        provider = providers.get(attempt.provider_name or job.connector.provider.name)
        total = ms_between(attempt.started_at, attempt.finished_at)
        known = sum(ms or 0 for ms in (attempt.ai_ms, attempt.write_ms))
        rest = total - known if total is not None else None
        views.append(
            AttemptView(
                number=attempt.number,
                outcome=attempt.get_outcome_display(),
                worker=attempt.worker,
                started_at=attempt.started_at,
                finished_at=attempt.finished_at,
                timings=[
                    ("queue wait", attempt.queue_wait_ms),
                    ("AI call", attempt.ai_ms),
                    ("write-back", attempt.write_ms),
                    ("the rest (restore, bookkeeping)", rest),
                    ("attempt", total),
                ],
                request=request_metadata(provider, attempt, job),
                answer={
                    "outcome": attempt.outcome,
                    "stop reason": attempt.stop_reason or "—",
                    "error": f"{attempt.error_code}: {attempt.error_message}"
                    if attempt.error_code
                    else "—",
                    "tokens": f"{attempt.tokens_in} in / {attempt.tokens_out} out",
                    "cost": f"{attempt.cost:.6f} {provider.currency if provider else ''}".strip(),
                },
                write_back=attempt.write_outcome or {},
            )
        )
    return views


def request_metadata(provider: Provider | None, attempt: JobAttempt, job: Job) -> dict:
    if provider is None:
        return {"provider": attempt.provider_name or "—"}
    return {
        "provider": f"{provider.name} ({provider.kind})",
        "endpoint": safe_endpoint(provider.base_url) or "the kind's default",
        "model": attempt.model or provider.model or "—",
        "timeout": f"{provider.timeout_seconds} s",
        "prompt": f"{len(job.prompt):,} characters" + (" + a repair" if job.repair_prompt else ""),
    }
