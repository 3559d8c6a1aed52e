"""Signed checkpoints: Ed25519 over the chain head, chained, delivered outside Interlock, with
rotated keys still verifiable; the public chain beside the keyed one."""

import base64
import hashlib
import io
import json

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.core.management import CommandError, call_command

from connectors import audit, checkpoints, crypto
from connectors.models import AuditChainHead, AuditCheckpoint, AuditEvent
from tests.test_settings import load_settings

pytestmark = pytest.mark.django_db

ACTOR = audit.Actor.system("test")


@pytest.fixture
def chain():
    for number in range(1, 4):
        audit.record("test.event", ACTOR, changes={"n": number})
    return list(AuditEvent.objects.order_by("sequence"))


def new_key() -> str:
    return base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()


def test_a_checkpoint_signs_the_head_and_names_the_one_before(chain):
    first = checkpoints.create()
    audit.record("test.event", ACTOR)
    second = checkpoints.create()

    statement = json.loads(second.statement)
    head = AuditChainHead.objects.get()
    assert statement == {
        "format": "interlock-checkpoint/1",
        "sequence": 4,
        "hash": head.hash,
        "public_hash": head.public_hash,
        "signed_at": second.signed_at.isoformat(timespec="microseconds"),
        "previous_digest": first.digest,
        "key_id": crypto.key_id(crypto.signing_public_key()),
    }
    assert json.loads(first.statement)["previous_digest"] == audit.GENESIS_HASH
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(second.public_key))
    public.verify(base64.b64decode(second.signature), second.statement.encode())  # no raise
    assert second.digest == crypto.sha256_hex(second.statement)


def test_the_scheduler_signs_only_when_the_head_moved(chain):
    assert checkpoints.run() == "signed #3"
    assert checkpoints.run() == ""
    audit.record("test.event", ACTOR)

    assert checkpoints.run() == "signed #4"
    assert list(AuditCheckpoint.objects.order_by("id").values_list("sequence", flat=True)) == [3, 4]


@pytest.mark.django_db(transaction=True)  # the scheduler closes old connections each pass
def test_the_scheduler_runs_the_checkpoint_task(chain):
    call_command("run_scheduler", "--once", stdout=io.StringIO())

    assert AuditCheckpoint.objects.get().sequence == 3


def test_the_public_chain_is_plain_sha256_over_the_keyed_content(chain):
    previous = audit.GENESIS_HASH
    for event in chain:
        digest = hashlib.sha256(audit.canonical(event)).hexdigest()
        expected = hashlib.sha256(f"{previous}:{event.sequence}:{digest}".encode()).hexdigest()
        assert event.public_hash == expected
        previous = expected
    assert AuditChainHead.objects.get().public_hash == previous


def test_verify_audit_catches_an_edited_public_hash(chain):
    AuditEvent.objects.filter(sequence=2).update(public_hash="e" * 64)

    with pytest.raises(CommandError, match="event #2: its public hash does not match the chain"):
        call_command("verify_audit", stdout=io.StringIO(), stderr=io.StringIO())


def test_the_migration_backfills_the_public_chain(chain):
    expected = [event.public_hash for event in chain]
    AuditEvent.objects.update(public_hash="")
    AuditChainHead.objects.update(public_hash=audit.GENESIS_HASH)

    audit.backfill_public_chain(AuditEvent, AuditChainHead, chunk=2)

    assert list(AuditEvent.objects.order_by("sequence").values_list("public_hash", flat=True)) == (
        expected
    )
    assert audit.verify().is_valid


def test_audit_checkpoint_writes_a_signed_file_verify_audit_reads(chain, tmp_path):
    path = tmp_path / "checkpoint.json"
    out = io.StringIO()
    call_command("audit_checkpoint", str(path), stdout=out)

    body = json.loads(path.read_text())
    assert out.getvalue().startswith(f"Checkpoint #3 signed with key {body['key_id']}")
    assert body["statement"] == AuditCheckpoint.objects.get().statement
    assert (body["sequence"], body["hash"]) == (3, chain[-1].hash)
    AuditEvent.objects.filter(sequence=3).delete()
    AuditChainHead.objects.update(sequence=2, hash=chain[1].hash, public_hash=chain[1].public_hash)
    with pytest.raises(CommandError, match="newest events were removed"):
        call_command("verify_audit", checkpoint=str(path), stdout=io.StringIO())


def test_checkpoints_are_delivered_to_a_folder(chain, tmp_path, settings):
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "outside")
    checkpoint = checkpoints.create()

    assert checkpoints.publish_pending() == 1
    assert checkpoints.publish_pending() == 0  # delivered once

    [path] = (tmp_path / "outside").iterdir()
    assert path.name == f"checkpoint-000000000003-{checkpoint.digest[:16]}.json"
    assert json.loads(path.read_text()) == checkpoints.document(checkpoint)
    assert AuditCheckpoint.objects.get().published_at is not None


def test_a_checkpoint_not_delivered_is_sent_again(chain, settings, callback_server):
    settings.AUDIT_CHECKPOINT_URL = callback_server.url
    callback_server.script([503])
    checkpoint = checkpoints.create()

    assert checkpoints.publish_pending() == 0
    assert AuditCheckpoint.objects.get().published_at is None
    assert checkpoints.publish_pending() == 1

    assert [body for _, _, body in callback_server.received] == [
        checkpoints.document(checkpoint)
    ] * 2
    assert AuditCheckpoint.objects.get().published_at is not None


def test_a_private_address_not_allowed_is_not_posted_to(chain, settings, callback_server):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    settings.AUDIT_CHECKPOINT_URL = callback_server.url
    checkpoints.create()

    assert checkpoints.publish_pending() == 0
    assert callback_server.received == []


def test_audit_public_key_prints_the_current_key_and_the_rotated_ones(chain, settings):
    old_public = crypto.signing_public_key()
    checkpoints.create()
    settings.AUDIT_SIGNING_KEY = new_key()
    new_public = crypto.signing_public_key()
    assert new_public != old_public

    out = io.StringIO()
    call_command("audit_public_key", stdout=out)
    current = io.StringIO()
    call_command("audit_public_key", "--current", stdout=current)

    assert json.loads(out.getvalue()) == {
        "keys": [
            {"key_id": crypto.key_id(new_public), "algorithm": "ed25519", "public_key": new_public},
            {"key_id": crypto.key_id(old_public), "algorithm": "ed25519", "public_key": old_public},
        ]
    }
    assert current.getvalue() == new_public + "\n"


def test_a_new_key_signs_even_when_the_head_did_not_move(chain, settings):
    checkpoints.run()
    settings.AUDIT_SIGNING_KEY = new_key()

    assert checkpoints.run() == "signed #3"  # announces the new key at once
    keys = list(AuditCheckpoint.objects.order_by("id").values_list("key_id", flat=True))
    assert len(set(keys)) == 2


def test_no_secret_in_a_checkpoint_or_the_key_listing(chain, settings):
    body = json.dumps(checkpoints.document(checkpoints.create()))
    out = io.StringIO()
    call_command("audit_public_key", stdout=out)

    for secret in (settings.AUDIT_SIGNING_KEY, settings.AUDIT_HMAC_KEY, settings.SECRET_KEY):
        assert secret not in body and secret not in out.getvalue()


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"AUDIT_SIGNING_KEY": "not-base64!"}, "AUDIT_SIGNING_KEY must be an Ed25519 private key"),
        (
            {"AUDIT_SIGNING_KEY": base64.b64encode(b"short").decode()},
            "AUDIT_SIGNING_KEY must be an Ed25519 private key, 32 bytes in base64",
        ),
        (
            {
                "DEBUG": "false",
                "SECRET_KEY": "s" * 50,
                "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                "AUDIT_HMAC_KEY": "a" * 40,
                "REDACTION_HMAC_KEY": "r" * 40,
            },
            "AUDIT_SIGNING_KEY is not set. In production (DEBUG=false) set AUDIT_SIGNING_KEY",
        ),
    ],
)
def test_a_bad_or_missing_signing_key_stops_the_start_by_name(tmp_path, variables, message):
    result = load_settings(tmp_path, **variables)

    assert result.returncode != 0
    assert message in result.stderr


def test_development_generates_a_signing_key_once(tmp_path):
    first = load_settings(tmp_path)
    secrets = json.loads((tmp_path / "dev-secrets.json").read_text())
    second = load_settings(tmp_path)

    assert first.returncode == second.returncode == 0
    assert len(base64.b64decode(secrets["AUDIT_SIGNING_KEY"])) == 32
    assert json.loads((tmp_path / "dev-secrets.json").read_text()) == secrets
