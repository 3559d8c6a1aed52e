"""Evidence bundles: what an auditor needs to check some jobs with a public key, in one file.

A bundle holds the jobs' lineages (exports.job_lineage), the audit events that concern them in
full, and the stretch of the chain around them from the signed checkpoint before to the signed
checkpoint after. Events of that stretch that concern other things are carried as their content
digest only: enough to recompute the public chain, nothing of what they say. The checkpoints from
the first to the last of those stretches, and the public keys, complete it; tools/verify_evidence.py
checks it all without Interlock, a database or a secret.
"""

import bisect
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from connectors import audit, checkpoints, exports
from connectors.models import AuditCheckpoint, AuditEvent, Job

FORMAT = "interlock-evidence/1"
VERIFY_HINT = "python tools/verify_evidence.py BUNDLE --key KEYS (from manage.py audit_public_key)"


class SelectionError(ValueError):
    """The selection names no job, or more than a bundle may hold."""


@dataclass(frozen=True)
class Selection:
    """Which jobs: one job, every job of a source reference, or a connector's over a period."""

    job: str = ""
    source_reference: str = ""
    connector: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def jobs(self) -> QuerySet:
        queryset = Job.objects.all()
        if self.job:
            queryset = queryset.filter(id=self.job)
        if self.source_reference:
            queryset = queryset.filter(source_reference=self.source_reference)
        if self.connector:
            queryset = queryset.filter(connector__slug=self.connector)
        if self.since:
            queryset = queryset.filter(created_at__gte=self.since)
        if self.until:
            queryset = queryset.filter(created_at__lt=self.until)
        return queryset

    def describe(self) -> dict:
        named = {
            "job": self.job,
            "source_reference": self.source_reference,
            "connector": self.connector,
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
        }
        return {name: value for name, value in named.items() if value}


def build(jobs: QuerySet, selection: dict, actor: audit.Actor) -> dict:
    """The bundle of these jobs; its export is recorded as an audit event (after the bundle is
    frozen, so the export is not in its own bundle)."""
    limit = settings.EVIDENCE_MAX_JOBS
    chosen = list(
        jobs.select_related("connector")
        .prefetch_related("attempt_rows")
        .order_by("created_at")[: limit + 1]
    )
    if not chosen:
        raise SelectionError("no job matches this selection")
    if len(chosen) > limit:
        raise SelectionError(
            f"more than {limit:,} jobs match; narrow the selection (EVIDENCE_MAX_JOBS)"
        )
    lineages = [exports.job_lineage(job) for job in chosen]
    concerned = {event["sequence"] for lineage in lineages for event in lineage["audit_events"]}
    if not concerned:
        raise SelectionError("these jobs have no audit events to prove")
    stretches, covering = _stretches(sorted(concerned))
    bundle = {
        "format": FORMAT,
        "created_at": timezone.now().isoformat(),
        "created_by": actor.name,
        "selection": selection,
        "verify_with": VERIFY_HINT,
        "jobs": lineages,
        "events": list(_events(stretches, concerned)),
        "checkpoints": [checkpoints.document(checkpoint) for checkpoint in covering],
        "public_keys": checkpoints.public_keys(),
    }
    only = chosen[0] if len(chosen) == 1 else None
    audit.record(
        "evidence.export",
        actor,
        only,
        connector=only.connector.slug if only else selection.get("connector", ""),
        changes={
            "selection": selection,
            "jobs": len(chosen),
            "events": len(bundle["events"]),
            "checkpoints": len(covering),
        },
    )
    return bundle


def _stretches(concerned: list[int]) -> tuple[list[tuple[int, int]], list[AuditCheckpoint]]:
    """The runs of the chain to carry, each from just after a signed checkpoint (or the start)
    to a signed checkpoint, merged; and the checkpoints from the first run's start to the last
    run's end. Events newer than the newest checkpoint get one, signed now."""
    newest = max(concerned)
    if not AuditCheckpoint.objects.filter(sequence__gte=newest).exists():
        checkpoints.create()
    ordered = AuditCheckpoint.objects.order_by("id")
    before = ordered.filter(sequence__lt=concerned[0]).order_by("-id").first()
    after = ordered.filter(sequence__gte=newest).first()
    covering = list(
        ordered.filter(id__gte=before.id if before else 0, id__lte=after.id).order_by("id")
    )
    # Checkpoints are signed in order under the head's lock, so their sequences never go down.
    sequences = [checkpoint.sequence for checkpoint in covering]
    stretches: list[tuple[int, int]] = []
    for sequence in concerned:
        low_index = bisect.bisect_left(sequences, sequence) - 1
        low = sequences[low_index] if low_index >= 0 else 0
        high = sequences[bisect.bisect_left(sequences, sequence)]
        if stretches and low + 1 <= stretches[-1][1] + 1:
            stretches[-1] = (stretches[-1][0], max(stretches[-1][1], high))
        else:
            stretches.append((low + 1, high))
    return stretches, covering


def _events(stretches: list[tuple[int, int]], concerned: set[int]):
    """The events of each run: in full where they concern the jobs, else their digest only."""
    for first, last in stretches:
        events = AuditEvent.objects.filter(sequence__gte=first, sequence__lte=last).order_by(
            "sequence"
        )
        for event in events.iterator(chunk_size=2000):
            if event.sequence in concerned:
                yield next(exports.audit_rows([event]))
            else:
                yield {
                    "sequence": event.sequence,
                    "digest": audit.content_digest(audit.canonical(event)),
                    "public_hash": event.public_hash,
                }
