"""Exports for auditors: the audit trail (CSV or JSON Lines, with the chain hashes so it can be
verified offline) and one job's lineage as a single JSON document. Both are formula-safe where a
spreadsheet could open them, and neither contains a secret or a token map."""

import csv
import io
import json
from collections.abc import Iterable, Iterator

from connectors import audit, review
from connectors.files.formats import safe_cell
from connectors.models import AuditEvent, Job

AUDIT_FIELDS = [
    "sequence",
    "created_at",
    "actor_type",
    "actor",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "connector",
    "changes",
    "ip_address",
    "previous_hash",
    "hash",
    "public_hash",
]


def audit_rows(events: Iterable[AuditEvent]) -> Iterator[dict]:
    for event in events:
        yield {
            "sequence": event.sequence,
            "created_at": event.created_at.isoformat(timespec="microseconds"),
            "actor_type": event.actor_type,
            "actor": event.actor,
            "action": event.action,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "object_repr": event.object_repr,
            "connector": event.connector,
            "changes": event.changes,
            "ip_address": event.ip_address,
            "previous_hash": event.previous_hash,
            "hash": event.hash,
            "public_hash": event.public_hash,
        }


def audit_csv(events: Iterable[AuditEvent]) -> Iterator[str]:
    """CSV lines; every text cell that a spreadsheet would run as a formula is neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(AUDIT_FIELDS)
    for row in audit_rows(events):
        writer.writerow(
            [
                safe_cell(json.dumps(value, sort_keys=True))
                if name == "changes"
                else safe_cell(value)
                if isinstance(value, str)
                else ("" if value is None else value)
                for name, value in row.items()
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def audit_jsonl(events: Iterable[AuditEvent]) -> Iterator[str]:
    for row in audit_rows(events):
        yield json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"


def lineage_content(job: Job) -> dict:
    """The lineage fields a job's audit events pin by digest (`digests` in their changes), as
    the lineage shows them; tools/verify_evidence.py checks a bundle's lineage against them.
    The lineage's `write_back` also names the connector's sink, which is not pinned."""
    return {
        "redacted_input": job.input_data,
        "prompt": job.prompt,
        "repair_prompt": job.repair_prompt or None,
        "provider": {"name": job.provider_name, "model": job.model},
        "ai_output": job.ai_output,
        "validated_output": job.output,
        "result": job.result,
        "write_back": job.write_outcome,
    }


def pins(job: Job, names: Iterable[str] | None = None) -> dict[str, str]:
    """Digests of the job's lineage fields (all, or those named), for its audit event."""
    content = lineage_content(job)
    return {
        name: audit.digest_value(content[name]) for name in (content if names is None else names)
    }


def job_lineage(job: Job) -> dict:
    """Everything about one record's journey, for an auditor; never the token map."""
    connector = job.connector
    content = lineage_content(job)
    return {
        "job": str(job.id),
        "connector": {"slug": connector.slug, "name": connector.name},
        "status": job.status,
        "source": {
            "kind": connector.source_kind,
            "reference": job.source_reference,
            "idempotency_key": job.idempotency_key,
        },
        "redacted_input": content["redacted_input"],
        "redaction_hits": job.redaction_hits,
        "prompt": content["prompt"],
        "repair_prompt": content["repair_prompt"],
        "provider": content["provider"],
        "ai_output": content["ai_output"],
        "validated_output": content["validated_output"],
        "result": content["result"],
        "token_report": job.token_report,
        "review": review.evidence(job),
        "write_back": {"sink": connector.sink_kind, **content["write_back"]},
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "tokens": {"input": job.tokens_in, "output": job.tokens_out, "cost": str(job.cost)},
        "timestamps": {
            name: value.isoformat() if value else None
            for name, value in (
                ("created", job.created_at),
                ("enqueued", job.enqueued_at),
                ("started", job.started_at),
                ("finished", job.finished_at),
                ("payload_purged", job.payload_purged_at),
            )
        },
        "attempts": [
            {
                "number": attempt.number,
                "outcome": attempt.outcome,
                "worker": attempt.worker,
                "started_at": attempt.started_at.isoformat(),
                "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else None,
                "queue_wait_ms": attempt.queue_wait_ms,
                "ai_ms": attempt.ai_ms,
                "write_ms": attempt.write_ms,
                "error": attempt.error_message or None,
            }
            for attempt in job.attempt_rows.all()
        ],
        "audit_events": [
            {
                "sequence": e.sequence,
                "action": e.action,
                "at": e.created_at.isoformat(),
                "hash": e.hash,
            }
            for e in AuditEvent.objects.filter(object_id=str(job.id)).order_by("sequence")
        ],
    }
