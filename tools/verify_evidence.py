#!/usr/bin/env python3
"""Verify an Interlock evidence bundle offline, with Interlock's public key and nothing else.

    python verify_evidence.py BUNDLE.json --key KEYS.json [--key ...] [--checkpoints DIR]

This file is meant to be read by the auditor who runs it: it needs Python 3.11+ and the
`cryptography` package, no Interlock, no database and no secret. It checks, and names the first
thing that does not hold:

1. Every checkpoint is signed (Ed25519) by a key you trust (--key), and names the digest of the
   checkpoint before it, so none was removed, replaced or re-ordered.
2. The audit events recompute the public hash chain: an event in full is hashed from its content,
   an event that concerns other things is carried as its content digest only. Each run of events
   starts just after a signed checkpoint (or at the chain's start) and ends on one, and the chain
   matches every checkpoint it passes.
3. Every job's lineage matches its events: the events it lists are there, unaltered, and no event
   of the job is left out; the lineage fields its events pin by digest (redacted input, prompt,
   provider and model, answer, result, write-back) hash to those digests.
4. With --checkpoints DIR (the copies Interlock delivered to a folder outside its reach), the
   bundle's checkpoints are among them: a chain rewritten after a copy was made shows.

Exit status: 0 verified, 1 a mismatch (named on stderr), 2 the bundle or a key cannot be read.

The hashes, for anyone who writes their own verifier:
- an event's content is the JSON object of its fields sequence, created_at, actor_type, actor,
  action, object_type, object_id, object_repr, connector, changes, ip_address and previous_hash,
  serialised with sorted keys, no whitespace (separators "," and ":"), non-ASCII as UTF-8;
  digest = SHA-256 of those bytes (hex);
- public_hash = SHA-256 of "<previous public_hash>:<sequence>:<digest>" (hex); before the
  first event the previous public hash is 64 zeros;
- a checkpoint's statement is signed as its exact UTF-8 bytes; its digest is their SHA-256;
- a pinned lineage field's digest is the SHA-256 of its value serialised the same way, a float
  with no fraction written as the integer; the lineage's write_back is pinned without its
  "sink" key (that names the connector's sink kind today).
"""

import argparse
import base64
import hashlib
import json
import sys
from datetime import datetime
from pathlib import Path

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - the auditor's machine
    sys.exit("verify_evidence needs the cryptography package: pip install cryptography")

BUNDLE_FORMAT = "interlock-evidence/1"
CHECKPOINT_FORMAT = "interlock-checkpoint/1"
GENESIS = "0" * 64
CONTENT_FIELDS = (
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
)
# Fields a purge of old payloads blanks (the job row, its events and the rest stay).
PURGEABLE = {"redacted_input", "prompt", "repair_prompt", "ai_output", "validated_output", "result"}


class Mismatch(Exception):
    """The first thing in the bundle that does not verify."""


class Unreadable(Exception):
    """A bundle, key or checkpoint file that cannot be read at all."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compact(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def integral(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral(item) for item in value]
    return value


def content_digest(event: dict) -> str:
    return sha256(compact({name: event.get(name) for name in CONTENT_FIELDS}))


def link(previous: str, sequence: int, digest: str) -> str:
    return sha256(f"{previous}:{sequence}:{digest}".encode())


def key_id(raw: bytes) -> str:
    return sha256(raw)[:16]


# --- keys -------------------------------------------------------------------------------


def load_keys(values: list[str]) -> dict[str, Ed25519PublicKey]:
    """Trusted keys by id, from files (audit_public_key's JSON, or one base64 key a line) or
    base64 values given on the command line."""
    keys = {}
    for value in values:
        path = Path(value)
        text = path.read_text() if path.is_file() else value
        try:
            parsed = json.loads(text)
        except ValueError:
            encoded = [line.strip() for line in text.splitlines() if line.strip()]
        else:
            if isinstance(parsed, dict) and isinstance(parsed.get("keys"), list):
                encoded = [str(key.get("public_key", "")) for key in parsed["keys"]]
            elif isinstance(parsed, str):
                encoded = [parsed]
            else:
                raise Unreadable(f"{value}: not a key file (expected {{'keys': [...]}})")
        for item in encoded:
            try:
                raw = base64.b64decode(item, validate=True)
                keys[key_id(raw)] = Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                raise Unreadable(f"{value}: {item[:20]!r} is not an Ed25519 public key") from None
    return keys


# --- checkpoints ------------------------------------------------------------------------


def read_checkpoint(body: dict, keys: dict, where: str) -> dict:
    """The signed statement of one checkpoint, its signature verified; with its digest."""
    if not isinstance(body, dict) or not isinstance(body.get("statement"), str):
        raise Mismatch(f"{where}: not a signed checkpoint (no statement)")
    text = body["statement"]
    try:
        statement = json.loads(text)
        sequence = int(statement["sequence"])
        kid = str(statement["key_id"])
        for name in ("hash", "public_hash", "previous_digest", "signed_at"):
            str(statement[name])
    except (ValueError, KeyError, TypeError):
        raise Mismatch(f"{where}: its statement is not a checkpoint") from None
    label = f"{where} (head #{sequence})"
    if statement.get("format") != CHECKPOINT_FORMAT:
        raise Mismatch(f"{label}: unknown format {statement.get('format')!r}")
    key = keys.get(kid)
    if key is None:
        raise Mismatch(f"{label}: signed with key {kid}, which is not one of the trusted keys")
    try:
        key.verify(base64.b64decode(body.get("signature", ""), validate=True), text.encode())
    except (InvalidSignature, ValueError):
        raise Mismatch(f"{label}: its signature does not verify with key {kid}") from None
    return {**statement, "sequence": sequence, "digest": sha256(text.encode()), "label": label}


def verify_checkpoint_chain(bodies: list, keys: dict, what: str) -> list[dict]:
    chain = []
    for number, body in enumerate(bodies, 1):
        checkpoint = read_checkpoint(body, keys, f"{what} {number}")
        if chain:
            previous = chain[-1]
            if checkpoint["previous_digest"] != previous["digest"]:
                raise Mismatch(
                    f"{checkpoint['label']}: it does not follow {previous['label']} (it names "
                    f"{checkpoint['previous_digest'][:12]}…, that one is "
                    f"{previous['digest'][:12]}…): a checkpoint was removed, replaced or moved"
                )
            if checkpoint["sequence"] < previous["sequence"]:
                raise Mismatch(f"{checkpoint['label']}: its head is older than the one before")
        chain.append(checkpoint)
    return chain


# --- the chain of events ----------------------------------------------------------------


def verify_events(events: list, chain: list[dict]) -> dict[int, dict]:
    """Recompute the public chain over the bundle's runs of events; the full events by
    sequence."""
    at = {}
    for checkpoint in chain:
        at.setdefault(checkpoint["sequence"], []).append(checkpoint)
    for position, event in enumerate(events):
        if not isinstance(event, dict) or not isinstance(event.get("sequence"), int):
            raise Mismatch(f"events[{position}]: not an audit event")
        if position and event["sequence"] <= events[position - 1]["sequence"]:
            raise Mismatch(
                f"event #{event['sequence']}: it comes after #{events[position - 1]['sequence']} "
                "in the bundle; events were re-ordered or duplicated"
            )
    full, previous_sequence, previous_hash = {}, None, None
    for event in events:
        sequence = event["sequence"]
        if previous_sequence is None or sequence != previous_sequence + 1:
            if previous_sequence is not None and previous_sequence not in at:
                raise Mismatch(
                    f"event #{previous_sequence + 1}: missing (the bundle goes from "
                    f"#{previous_sequence} to #{sequence}, and no signed checkpoint ends a run "
                    f"at #{previous_sequence})"
                )
            if sequence == 1:
                previous_hash = GENESIS
            elif sequence - 1 in at:
                previous_hash = at[sequence - 1][0]["public_hash"]
            else:
                raise Mismatch(
                    f"event #{sequence - 1}: missing (the bundle's run starts at #{sequence} and "
                    f"no signed checkpoint stands for #{sequence - 1})"
                )
        is_full = "digest" not in event
        digest = content_digest(event) if is_full else str(event["digest"])
        computed = link(previous_hash, sequence, digest)
        if computed != event.get("public_hash"):
            what = "its content" if is_full else "its digest"
            raise Mismatch(f"event #{sequence}: {what} does not match its public hash")
        for checkpoint in at.get(sequence, ()):
            if computed != checkpoint["public_hash"]:
                raise Mismatch(
                    f"event #{sequence}: the chain here does not match {checkpoint['label']}"
                )
            if is_full and event.get("hash") != checkpoint["hash"]:
                raise Mismatch(f"event #{sequence}: its keyed hash differs from the checkpoint")
        if is_full:
            before = full.get(sequence - 1)
            if before is not None and event.get("previous_hash") != before.get("hash"):
                raise Mismatch(
                    f"event #{sequence}: its previous keyed hash is not #{sequence - 1}'s"
                )
            full[sequence] = event
        previous_sequence, previous_hash = sequence, computed
    if previous_sequence is None:
        raise Mismatch("the bundle holds no audit events")
    if previous_sequence not in at:
        covering = [c for c in chain if c["sequence"] > previous_sequence]
        beyond = f" ({covering[0]['label']} covers more)" if covering else ""
        raise Mismatch(
            f"event #{previous_sequence + 1}: missing; the bundle's events end at "
            f"#{previous_sequence}, where no signed checkpoint ends them: the newest events "
            f"were cut off{beyond}"
        )
    beyond = [c for c in chain if c["sequence"] > previous_sequence]
    if beyond:
        raise Mismatch(
            f"event #{previous_sequence + 1}: missing; {beyond[0]['label']} covers events "
            f"past #{previous_sequence}, the bundle's last: the newest events were cut off"
        )
    return full


# --- lineages ---------------------------------------------------------------------------


def same(name: str, listed, recorded) -> bool:
    """A lineage's listing of an event agrees with the event (times compared as times)."""
    if name == "at" and isinstance(listed, str) and isinstance(recorded, str):
        try:
            return datetime.fromisoformat(listed) == datetime.fromisoformat(recorded)
        except ValueError:
            return False
    return listed == recorded


def lineage_value(lineage: dict, name: str):
    if name == "write_back":
        value = lineage.get("write_back")
        return {k: v for k, v in value.items() if k != "sink"} if isinstance(value, dict) else value
    return lineage.get(name)


def verify_lineage(lineage: dict, full: dict[int, dict]) -> list[str]:
    """Check one job's lineage against its events; the lineage fields no event pins."""
    if not isinstance(lineage, dict) or not lineage.get("job"):
        raise Mismatch("a lineage without a job id")
    job = str(lineage["job"])
    label = f"job {job}"
    listed = lineage.get("audit_events") or []
    mine = {
        sequence: event
        for sequence, event in full.items()
        if event.get("object_type") == "job" and event.get("object_id") == job
    }
    for item in listed:
        sequence = item.get("sequence")
        event = full.get(sequence)
        if event is None or event.get("object_id") != job:
            raise Mismatch(f"{label}: its audit event #{sequence} is not in the bundle")
        for name, event_name in (("action", "action"), ("hash", "hash"), ("at", "created_at")):
            if not same(name, item.get(name), event.get(event_name)):
                raise Mismatch(
                    f"{label}: its lineage's event #{sequence} {name} is {item.get(name)!r}, "
                    f"the event's is {event.get(event_name)!r}"
                )
    unlisted = sorted(set(mine) - {item.get("sequence") for item in listed})
    if unlisted:
        raise Mismatch(f"{label}: event #{unlisted[0]} concerns it but its lineage leaves it out")
    slug = (lineage.get("connector") or {}).get("slug")
    for sequence, event in sorted(mine.items()):
        if event.get("connector") != slug:
            raise Mismatch(
                f"{label}: event #{sequence} names connector {event.get('connector')!r}, "
                f"its lineage {slug!r}"
            )
    pins, created = {}, None
    for sequence, event in sorted(mine.items()):
        changes = event.get("changes") or {}
        if event.get("action") == "job.created":
            created = changes
        for name, digest in (changes.get("digests") or {}).items():
            pins[name] = (digest, sequence)  # the latest event that pins a field wins
    is_purged = bool((lineage.get("timestamps") or {}).get("payload_purged"))
    for name, (digest, sequence) in sorted(pins.items()):
        value = lineage_value(lineage, name)
        if sha256(compact(integral(value))) == digest:
            continue
        if is_purged and name in PURGEABLE and value in (None, "", {}, []):
            continue  # blanked by retention, which its own audit event records
        raise Mismatch(
            f"{label}: its lineage's {name} does not match the digest recorded in event #{sequence}"
        )
    if created is not None:
        reference = (lineage.get("source") or {}).get("reference") or ""
        if reference != created.get("source_reference", ""):
            raise Mismatch(
                f"{label}: its lineage's source reference {reference!r} is not the one "
                "recorded when it was created"
            )
    started = sorted(
        (event.get("changes") or {}).get("attempt")
        for event in mine.values()
        if event.get("action") == "job.started"
    )
    numbers = sorted(attempt.get("number") for attempt in lineage.get("attempts") or [])
    if started and numbers != started:
        raise Mismatch(
            f"{label}: its lineage lists attempts {numbers}, its events started {started}"
        )
    return [name for name in PINNABLE if name not in pins]


PINNABLE = (
    "redacted_input",
    "prompt",
    "repair_prompt",
    "provider",
    "ai_output",
    "validated_output",
    "result",
    "write_back",
)


# --- checkpoints kept outside Interlock -------------------------------------------------


def verify_against_copies(chain: list[dict], folder: Path, keys: dict) -> int:
    """The bundle's checkpoints must be among the copies delivered outside Interlock, up to the
    newest copy (later ones may not have been delivered yet)."""
    bodies = []
    for path in sorted(folder.glob("checkpoint-*.json")):
        try:
            bodies.append((path.name, json.loads(path.read_text())))
        except (OSError, ValueError) as error:
            raise Unreadable(f"{path}: {error}") from None
    if not bodies:
        raise Unreadable(f"{folder}: no checkpoint-*.json files")
    copies = {}
    for name, body in bodies:
        copy = read_checkpoint(body, keys, f"copy {name}")
        copies[copy["digest"]] = copy
    newest = max(copy["sequence"] for copy in copies.values())
    for checkpoint in chain:
        if checkpoint["digest"] not in copies and checkpoint["sequence"] <= newest:
            raise Mismatch(
                f"{checkpoint['label']}: not among the checkpoints kept outside Interlock "
                "(their chain differs here): the trail was rewritten after they were delivered"
            )
    return len(copies)


# --- main -------------------------------------------------------------------------------


def verify(bundle: dict, keys: dict, copies: Path | None = None) -> str:
    """A summary of what was verified; raises Mismatch naming the first failure."""
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise Unreadable(f"not an Interlock evidence bundle (format {BUNDLE_FORMAT})")
    chain = verify_checkpoint_chain(bundle.get("checkpoints") or [], keys, "checkpoint")
    if not chain:
        raise Mismatch("the bundle holds no signed checkpoint")
    full = verify_events(bundle.get("events") or [], chain)
    jobs = bundle.get("jobs") or []
    if not jobs:
        raise Mismatch("the bundle holds no job lineage")
    unpinned = {}
    for lineage in jobs:
        for name in verify_lineage(lineage, full):
            unpinned[name] = unpinned.get(name, 0) + 1
    events = bundle["events"]
    lines = [
        f"Evidence verified: {len(jobs)} job(s), {len(full)} of their audit events in full, "
        f"{len(events)} events of the chain (#{events[0]['sequence']} to #{events[-1]['sequence']}"
        f" in runs), {len(chain)} signed checkpoint(s) with key(s) "
        f"{', '.join(sorted({c['key_id'] for c in chain}))}.",
        f"Newest signed head: #{chain[-1]['sequence']} at {chain[-1]['signed_at']}.",
    ]
    if copies is not None:
        count = verify_against_copies(chain, copies, keys)
        lines.append(f"The checkpoints agree with the {count} copies in {copies}.")
    if unpinned:
        detail = ", ".join(f"{name} ({count})" for name, count in sorted(unpinned.items()))
        lines.append(f"Not pinned by any event (not verified): {detail}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="The evidence bundle (JSON).")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        help="A trusted public key: a file from `manage.py audit_public_key`, or base64. "
        "Repeat for older keys. Get it from Interlock's operator by a channel you trust.",
    )
    parser.add_argument(
        "--checkpoints", type=Path, help="A folder of checkpoint copies kept outside Interlock."
    )
    options = parser.parse_args(argv)
    if not options.key:
        print(
            "Name the public key(s) you trust with --key: the bundle carries keys too, but a "
            "forger would carry their own.",
            file=sys.stderr,
        )
        return 2
    try:
        keys = load_keys(options.key)
        bundle = json.loads(Path(options.bundle).read_text(encoding="utf-8"))
        print(verify(bundle, keys, options.checkpoints))
    except (OSError, ValueError, Unreadable) as error:
        print(f"Cannot verify: {error}", file=sys.stderr)
        return 2
    except Mismatch as error:
        print(f"NOT VERIFIED: {error}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, AttributeError) as error:
        print(
            f"NOT VERIFIED: the bundle is malformed ({type(error).__name__}: {error})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
