"""Signed checkpoints of the audit chain, the evidence an auditor checks with a public key.

A checkpoint is a small JSON statement (the head's sequence, its keyed and public hashes, the time,
the previous checkpoint's digest, the signing key's id) signed with Ed25519 (AUDIT_SIGNING_KEY,
outside the database). Each names the one before, so checkpoints chain too: one removed, replaced
or re-ordered breaks the next. Copies go to AUDIT_CHECKPOINT_DIR and/or AUDIT_CHECKPOINT_URL, so
that they live outside Interlock's reach; one that could not be delivered is sent again next pass.
The statement's bytes are stored as signed: verifiers check those bytes, never a re-serialisation.
"""

import json
import logging
import os
import tempfile
from pathlib import Path

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectors import audit, crypto, http
from connectors.models import AuditCheckpoint

logger = logging.getLogger(__name__)
FORMAT = "interlock-checkpoint/1"
PUBLISH_BATCH = 100


def create(*, only_if_moved: bool = False) -> AuditCheckpoint | None:
    """Sign the chain head now. With only_if_moved (the scheduler), nothing is signed when the
    head has not moved since the last checkpoint and that one was signed with the current key."""
    public_key = crypto.signing_public_key()
    key_id = crypto.key_id(public_key)
    with transaction.atomic():
        # The chain head's lock serialises signers with each other and with appends, so the
        # statement names a head that exists and the previous checkpoint is really the last.
        head = audit.locked_head()
        last = AuditCheckpoint.objects.order_by("-id").first()
        if only_if_moved and last and (last.sequence, last.key_id) == (head.sequence, key_id):
            return None
        signed_at = timezone.now()
        statement = {
            "format": FORMAT,
            "sequence": head.sequence,
            "hash": head.hash,
            "public_hash": head.public_hash,
            "signed_at": signed_at.isoformat(timespec="microseconds"),
            "previous_digest": last.digest if last else audit.GENESIS_HASH,
            "key_id": key_id,
        }
        text = json.dumps(statement, sort_keys=True, separators=(",", ":"))
        return AuditCheckpoint.objects.create(
            sequence=head.sequence,
            statement=text,
            signature=crypto.sign(text.encode()),
            digest=crypto.sha256_hex(text),
            previous_digest=statement["previous_digest"],
            key_id=key_id,
            public_key=public_key,
            signed_at=signed_at,
        )


def document(checkpoint: AuditCheckpoint) -> dict:
    """A checkpoint as it is exported: the signed statement and its signature, with the head's
    sequence and hashes beside them for `verify_audit --checkpoint` (verifiers read the
    statement)."""
    statement = json.loads(checkpoint.statement)
    return {
        "format": FORMAT,
        "sequence": statement["sequence"],
        "hash": statement["hash"],
        "public_hash": statement["public_hash"],
        "signed_at": statement["signed_at"],
        "statement": checkpoint.statement,
        "signature": checkpoint.signature,
        "digest": checkpoint.digest,
        "key_id": checkpoint.key_id,
        "public_key": checkpoint.public_key,
    }


def public_keys() -> list[dict]:
    """The current signing key's public half first, then every older one that signed a
    checkpoint (a rotated key stays listed, so its checkpoints stay verifiable)."""
    current = crypto.signing_public_key()
    keys = {crypto.key_id(current): current}
    for key_id, public_key in (
        AuditCheckpoint.objects.order_by("-id").values_list("key_id", "public_key").distinct()
    ):
        keys.setdefault(key_id, public_key)
    return [
        {"key_id": key_id, "algorithm": "ed25519", "public_key": public_key}
        for key_id, public_key in keys.items()
    ]


def publish_pending(limit: int = PUBLISH_BATCH) -> int:
    """Send the checkpoints not yet delivered, oldest first, to the folder and URL the operator
    named; stop at the first failure (tried again next pass). Returns how many were sent."""
    folder, url = settings.AUDIT_CHECKPOINT_DIR, settings.AUDIT_CHECKPOINT_URL
    if not folder and not url:
        return 0
    sent = 0
    for checkpoint in AuditCheckpoint.objects.filter(published_at__isnull=True).order_by("id")[
        :limit
    ]:
        body = document(checkpoint)
        try:
            if folder:
                write_file(Path(folder), body)
            if url:
                post(url, body)
        except (OSError, httpx.HTTPError) as error:
            logger.warning("checkpoint #%s not delivered: %s", checkpoint.sequence, error)
            break
        AuditCheckpoint.objects.filter(pk=checkpoint.pk).update(published_at=timezone.now())
        sent += 1
    return sent


def file_name(body: dict) -> str:
    return f"checkpoint-{body['sequence']:012d}-{body['digest'][:16]}.json"


def write_file(folder: Path, body: dict) -> None:
    """Write atomically (a reader never sees half a file); the same checkpoint twice is one file."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(body, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, folder / file_name(body))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def post(url: str, body: dict) -> None:
    with http.build_client(timeout=10) as client:
        client.post(url, json=body).raise_for_status()


def run() -> str:
    """The scheduler's task: sign the head if it moved, deliver what is pending."""
    checkpoint = create(only_if_moved=True)
    sent = publish_pending()
    parts = [f"signed #{checkpoint.sequence}"] if checkpoint else []
    if sent:
        parts.append(f"delivered {sent}")
    return ", ".join(parts)
