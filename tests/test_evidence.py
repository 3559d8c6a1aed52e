"""Evidence bundles, checked by the standalone verifier the way an auditor runs it: a plain
Python process that cannot import Django or Interlock, with no database, no setting and no secret,
only the bundle and the public key. Every kind of tampering is caught and named."""

import base64
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from connectors import audit, checkpoints, crypto, jobs
from connectors.exports import AUDIT_FIELDS
from connectors.models import AuditChainHead, AuditCheckpoint, AuditEvent, Job
from connectors.work import Submission
from tests.conftest import CANARY_SECRET, CANARY_SSN
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[1]
VERIFIER = ROOT / "tools" / "verify_evidence.py"
# The verifier runs with Django and Interlock made unimportable: it provably needs neither.
ISOLATED = (
    "import runpy, sys\n"
    "for name in ('django', 'connectors', 'console', 'rest_framework', 'environ'):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "reason": {"type": "string"}},
}


@pytest.fixture
def connector(make_connector, openai_provider, callback_server):
    return make_connector(
        "invoices",
        provider=openai_provider,
        inputs=[("note", "text", True), ("customer.ssn", "ssn", False)],
        outputs=[("decision", "ai_decision"), ("reason", "ai_reason")],
        redaction=[("ssn", "tokenize")],
        prompt="Decide on: {{ text }} (customer {{ ssn }}). Answer JSON.",
        output_format="json",
        output_schema=SCHEMA,
        sink_kind="http",
        sink_config={"url": callback_server.url},
    )


def answer_from_prompt(body):
    note = body["messages"][0]["content"].split(" (")[0].removeprefix("Decide on: ")
    return json.dumps({"decision": "approve", "reason": f"looked at {note}"})


def send(connector, note, reference):
    """A record handed over by a source that names where it came from (a file row, a table
    row), the way every source submits."""
    actor = audit.Actor.system("test-source")
    submission = Submission({"note": note, "customer": {"ssn": CANARY_SSN}}, "", reference)
    [(job, created)] = jobs.submit(connector, [submission], actor)
    assert created
    return job


@pytest.fixture
def journeys(connector, openai_server):
    """Three records through the webhook, a real worker, the AI and the callback, with a signed
    checkpoint after each of the first two: invoice A and C share a source reference, B does not,
    so a bundle of A and C carries two runs of the chain and leaves B's out."""
    openai_server.responder = answer_from_prompt
    made = []
    for note, reference in (("Invoice A", "INV-1"), ("Invoice B", "INV-2"), ("Invoice C", "INV-1")):
        job = send(connector, note, reference)
        drain()
        audit.record("test.unrelated", audit.Actor.system("test"), changes={"after": note})
        made.append(job)
        if note != "Invoice C":
            checkpoints.create()
    for job in made:
        job.refresh_from_db()
    assert [job.status for job in made] == ["succeeded"] * 3
    return made


def export(tmp_path, **selection) -> dict:
    path = tmp_path / "bundle.json"
    call_command("export_evidence", output=str(path), stderr=io.StringIO(), **selection)
    return json.loads(path.read_text())


def public_keys(tmp_path) -> Path:
    out = io.StringIO()
    call_command("audit_public_key", stdout=out)
    path = tmp_path / "interlock-keys.json"
    path.write_text(out.getvalue())
    return path


def verify(tmp_path, bundle: dict, *options: str, keys: Path | None = None):
    """Run tools/verify_evidence.py as an auditor would: its own process, an empty
    environment, a folder holding only the bundle and the keys."""
    work = tmp_path / "auditor"
    work.mkdir(exist_ok=True)
    (work / "bundle.json").write_text(json.dumps(bundle))
    key_options = ["--key", str(keys or public_keys(tmp_path))] if keys is not False else []
    return subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            ISOLATED,
            str(VERIFIER),
            "bundle.json",
            *key_options,
            *options,
        ],
        cwd=work,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )


def not_verified(tmp_path, bundle: dict, keys: Path | None = None) -> str:
    result = verify(tmp_path, bundle, keys=keys)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    return result.stderr.strip().removeprefix("NOT VERIFIED: ")


@pytest.fixture
def bundle(journeys, tmp_path):
    return export(tmp_path, source_reference="INV-1")


def full_events(bundle, job=None):
    return [
        event
        for event in bundle["events"]
        if "digest" not in event and (job is None or event["object_id"] == str(job.id))
    ]


def test_a_bundle_of_two_jobs_verifies_without_interlock(bundle, journeys, tmp_path):
    a, b, c = journeys

    result = verify(tmp_path, bundle)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Evidence verified: 2 job(s), 6 of their audit events in full")
    assert "Not pinned" not in result.stdout  # a finished job has every lineage field pinned
    assert [lineage["job"] for lineage in bundle["jobs"]] == [str(a.id), str(c.id)]
    # B's events are left out, and the events around A's and C's are digests only.
    sequences = [event["sequence"] for event in bundle["events"]]
    assert not set(sequences) & set(
        AuditEvent.objects.filter(object_id=str(b.id)).values_list("sequence", flat=True)
    )
    neighbours = [event for event in bundle["events"] if "digest" in event]
    assert neighbours and all(
        set(event) == {"sequence", "digest", "public_hash"} for event in neighbours
    )
    assert len(bundle["checkpoints"]) == 3  # after A, after B, and one signed for the export


def test_the_lineage_holds_the_whole_journey(bundle, journeys):
    lineage = bundle["jobs"][0]
    assert lineage["redacted_input"] == {"text": "Invoice A", "ssn": "<SSN_1>"}
    assert lineage["prompt"] == "Decide on: Invoice A (customer <SSN_1>). Answer JSON."
    assert lineage["provider"] == {"name": "gpt", "model": "gpt-test"}
    assert json.loads(lineage["ai_output"]) == {
        "decision": "approve",
        "reason": "looked at Invoice A",
    }
    assert lineage["result"] == {"ai_decision": "approve", "ai_reason": "looked at Invoice A"}
    assert lineage["write_back"]["status"] == "200"
    assert [event["action"] for event in lineage["audit_events"]] == [
        "job.created",
        "job.started",
        "job.succeeded",
    ]


def test_a_bundle_holds_no_secret_and_no_pii(bundle, settings):
    text = json.dumps(bundle)

    for secret in (
        CANARY_SECRET,
        CANARY_SSN,
        settings.AUDIT_SIGNING_KEY,
        settings.AUDIT_HMAC_KEY,
        settings.REDACTION_HMAC_KEY,
        settings.SECRET_KEY,
    ):
        assert secret not in text
    assert "encrypted_tokens" not in text and "gAAAA" not in text


def test_each_export_is_an_audit_event(bundle, journeys):
    event = AuditEvent.objects.get(action="evidence.export")
    assert event.actor == "export_evidence"
    assert event.changes["selection"] == {"source_reference": "INV-1"}
    assert event.changes["jobs"] == 2
    assert event.sequence > max(e["sequence"] for e in bundle["events"])  # not in its own bundle


def test_no_trusted_key_is_refused(bundle, tmp_path):
    result = verify(tmp_path, bundle, keys=False)

    assert result.returncode == 2
    assert "Name the public key(s) you trust with --key" in result.stderr


# --- tampering: each caught and named --------------------------------------------------


def test_an_edited_event_is_named(bundle, journeys, tmp_path):
    succeeded = next(e for e in full_events(bundle, journeys[0]) if e["action"] == "job.succeeded")
    succeeded["changes"]["provider"] = "someone-else"

    assert not_verified(tmp_path, bundle) == (
        f"event #{succeeded['sequence']}: its content does not match its public hash"
    )


def test_an_edited_event_with_the_public_chain_recomputed_fails_at_the_signed_checkpoint(
    bundle, journeys, tmp_path
):
    """Whoever edits an event and recomputes every public hash after it (no secret needed) is
    stopped by the next signed checkpoint."""
    events = bundle["events"]
    index = next(i for i, e in enumerate(events) if e.get("action") == "job.created")
    events[index]["changes"]["source_reference"] = "INV-9"
    bundle["jobs"][0]["source"]["reference"] = "INV-9"
    previous = events[index - 1]["public_hash"] if index else audit.GENESIS_HASH
    for event in events[index:]:
        digest = event.get("digest") or audit.content_digest(content_bytes(event))
        event["public_hash"] = previous = audit.link_digest(previous, event["sequence"], digest)
    checkpoint = json.loads(bundle["checkpoints"][0]["statement"])

    assert not_verified(tmp_path, bundle) == (
        f"event #{checkpoint['sequence']}: the chain here does not match checkpoint 1 "
        f"(head #{checkpoint['sequence']})"
    )


def content_bytes(event: dict) -> bytes:
    content = {name: event[name] for name in AUDIT_FIELDS if name not in ("hash", "public_hash")}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_a_deleted_event_is_named(bundle, journeys, tmp_path):
    started = next(e for e in full_events(bundle, journeys[2]) if e["action"] == "job.started")
    bundle["events"].remove(started)

    assert not_verified(tmp_path, bundle).startswith(f"event #{started['sequence']}: missing")


def test_a_deleted_neighbour_is_named(bundle, tmp_path):
    events = bundle["events"]
    index = next(i for i, e in enumerate(events) if "digest" in e and i + 1 < len(events))
    gone = events.pop(index)

    assert not_verified(tmp_path, bundle).startswith(f"event #{gone['sequence']}: missing")


def test_two_events_moved_in_the_bundle_are_named(bundle, journeys, tmp_path):
    events = bundle["events"]
    first = events.index(full_events(bundle, journeys[0])[1])
    events[first], events[first + 1] = events[first + 1], events[first]

    assert not_verified(tmp_path, bundle) == (
        f"event #{events[first + 1]['sequence']}: it comes after #{events[first]['sequence']} "
        "in the bundle; events were re-ordered or duplicated"
    )


def test_two_events_swapped_in_time_are_named(bundle, journeys, tmp_path):
    """Claiming that B happened before A: their contents swap places, the numbering stays."""
    started, succeeded = full_events(bundle, journeys[0])[1:3]
    assert succeeded["sequence"] == started["sequence"] + 1
    for name in ("action", "changes", "created_at"):
        started[name], succeeded[name] = succeeded[name], started[name]

    assert not_verified(tmp_path, bundle) == (
        f"event #{started['sequence']}: its content does not match its public hash"
    )


def test_the_newest_events_cut_off_are_named(bundle, tmp_path):
    last = bundle["events"].pop()

    message = not_verified(tmp_path, bundle)

    assert message.startswith(f"event #{last['sequence']}: missing; the bundle's events end at")
    assert "the newest events were cut off" in message


def test_a_whole_newest_run_cut_off_is_named(bundle, journeys, tmp_path):
    """C's run removed together with the checkpoint that ends it: C's lineage gives it away."""
    c = journeys[2]
    first_of_c = min(e["sequence"] for e in full_events(bundle, c))
    bundle["events"] = [e for e in bundle["events"] if e["sequence"] < first_of_c - 1]
    bundle["checkpoints"] = bundle["checkpoints"][:1]

    assert not_verified(tmp_path, bundle) == (
        f"job {c.id}: its audit event #{first_of_c} is not in the bundle"
    )


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("ai_output", lambda lineage, other: other["ai_output"]),
        ("result", lambda lineage, other: other["result"]),
        ("prompt", lambda lineage, other: other["prompt"]),
        ("redacted_input", lambda lineage, other: other["redacted_input"]),
        ("provider", lambda lineage, other: {**lineage["provider"], "model": "gpt-5"}),
        ("write_back", lambda lineage, other: {**lineage["write_back"], "status": "500"}),
        ("validated_output", lambda lineage, other: {"decision": "reject"}),
    ],
)
def test_a_swapped_lineage_field_is_named(bundle, journeys, tmp_path, field, change):
    a, c = bundle["jobs"]
    a[field] = change(a, c)
    succeeded = next(e for e in full_events(bundle, journeys[0]) if e["action"] == "job.succeeded")

    assert not_verified(tmp_path, bundle) == (
        f"job {journeys[0].id}: its lineage's {field} does not match the digest recorded in "
        f"event #{succeeded['sequence']}"
    )


def test_a_lineage_that_hides_an_event_is_named(bundle, journeys, tmp_path):
    hidden = bundle["jobs"][1]["audit_events"].pop()

    assert not_verified(tmp_path, bundle) == (
        f"job {journeys[2].id}: event #{hidden['sequence']} concerns it "
        "but its lineage leaves it out"
    )


def test_a_lineage_with_another_source_reference_is_named(bundle, journeys, tmp_path):
    bundle["jobs"][0]["source"]["reference"] = "INV-2"

    assert not_verified(tmp_path, bundle) == (
        f"job {journeys[0].id}: its lineage's source reference 'INV-2' is not the one recorded "
        "when it was created"
    )


def test_a_replaced_checkpoint_is_named(bundle, tmp_path):
    """A genuine checkpoint, signed with the real key, put in place of another."""
    genuine = checkpoints.document(checkpoints.create())
    bundle["checkpoints"][1] = genuine

    message = not_verified(tmp_path, bundle)

    assert message.startswith(f"checkpoint 2 (head #{genuine['sequence']}): it does not follow")
    assert "a checkpoint was removed, replaced or moved" in message


def test_a_removed_checkpoint_is_named(bundle, tmp_path):
    del bundle["checkpoints"][1]

    assert "does not follow checkpoint 1" in not_verified(tmp_path, bundle)


def forge(statement: dict, key: Ed25519PrivateKey, *, key_id: str | None = None) -> dict:
    public = key.public_key().public_bytes_raw()
    statement = {**statement, "key_id": key_id or audit.content_digest(public)[:16]}
    text = json.dumps(statement, sort_keys=True, separators=(",", ":"))
    return {
        "statement": text,
        "signature": base64.b64encode(key.sign(text.encode())).decode(),
        "public_key": base64.b64encode(public).decode(),
    }


def test_a_checkpoint_forged_with_another_key_is_named(bundle, tmp_path):
    forger = Ed25519PrivateKey.generate()
    statement = json.loads(bundle["checkpoints"][0]["statement"])
    forged = forge(statement, forger)
    bundle["checkpoints"][0] = forged
    bundle["public_keys"].append({"key_id": "forger", "public_key": forged["public_key"]})

    assert not_verified(tmp_path, bundle) == (
        f"checkpoint 1 (head #{statement['sequence']}): signed with key "
        f"{json.loads(forged['statement'])['key_id']}, which is not one of the trusted keys"
    )


def test_a_checkpoint_forged_under_the_real_key_id_is_named(bundle, tmp_path):
    statement = json.loads(bundle["checkpoints"][0]["statement"])
    bundle["checkpoints"][0] = forge(
        statement, Ed25519PrivateKey.generate(), key_id=statement["key_id"]
    )

    assert not_verified(tmp_path, bundle) == (
        f"checkpoint 1 (head #{statement['sequence']}): its signature does not verify with key "
        f"{statement['key_id']}"
    )


def test_an_edited_checkpoint_statement_is_named(bundle, tmp_path):
    statement = json.loads(bundle["checkpoints"][0]["statement"])
    statement["sequence"] += 1
    bundle["checkpoints"][0]["statement"] = json.dumps(statement, sort_keys=True)

    assert "its signature does not verify" in not_verified(tmp_path, bundle)


# --- selections, the admin, the copies kept outside ------------------------------------


def test_export_one_job_and_a_connector_period(journeys, tmp_path):
    b = journeys[1]
    one = export(tmp_path, job=str(b.id))
    assert [lineage["job"] for lineage in one["jobs"]] == [str(b.id)]
    assert verify(tmp_path, one).returncode == 0

    today = timezone.localdate()
    period = export(
        tmp_path,
        connector="invoices",
        since=str(today),
        until=str(today + timedelta(days=1)),
    )
    assert len(period["jobs"]) == 3
    assert period["selection"]["connector"] == "invoices"
    assert verify(tmp_path, period).returncode == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"job": "not-a-uuid"}, "--job 'not-a-uuid' is not a job id"),
        ({"connector": "nope"}, "no connector 'nope'"),
        ({"source_reference": "INV-404"}, "no evidence bundle: no job matches this selection"),
        ({"connector": "invoices", "since": "yesterday"}, "--from 'yesterday' is not a date"),
        (
            {"source_reference": "INV-1", "since": "2026-01-01"},
            "--from and --to go with --connector",
        ),
    ],
)
def test_export_refuses_a_bad_selection_by_name(journeys, tmp_path, options, message):
    with pytest.raises(CommandError, match=message):
        call_command("export_evidence", output=str(tmp_path / "x.json"), **options)
    assert not AuditEvent.objects.filter(action="evidence.export").exists()


def test_a_selection_over_the_limit_is_refused(journeys, tmp_path, settings):
    settings.EVIDENCE_MAX_JOBS = 2

    with pytest.raises(CommandError, match="more than 2 jobs match"):
        call_command("export_evidence", connector="invoices", output=str(tmp_path / "x.json"))


@pytest.fixture
def officer(client, django_user_model):
    user = django_user_model.objects.create_user("officer", password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance officer"))
    client.force_login(user)
    return client


def test_a_compliance_officer_downloads_a_job_bundle_from_its_page(officer, journeys, tmp_path):
    a = journeys[0]
    page = officer.get(reverse("admin:connectors_job_change", args=[a.id])).content.decode()
    url = reverse("admin:connectors_job_evidence", args=[a.id])
    assert url in page

    response = officer.get(url)

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith(f'attachment; filename="evidence-job-{a.id}')
    bundle = json.loads(response.content)
    assert [lineage["job"] for lineage in bundle["jobs"]] == [str(a.id)]
    assert verify(tmp_path, bundle).returncode == 0
    event = AuditEvent.objects.get(action="evidence.export")
    assert (event.actor_type, event.actor, event.object_id) == ("user", "officer", str(a.id))


def test_a_compliance_officer_exports_a_search_result(officer, journeys, tmp_path):
    a, _, c = journeys
    listing = reverse("admin:connectors_job_changelist") + "?q=INV-1"
    assert 'value="export_evidence"' in officer.get(listing).content.decode()

    response = officer.post(
        listing,
        {"action": "export_evidence", "select_across": "1", "_selected_action": [str(a.id)]},
    )

    assert response.status_code == 200, response.content[:300]
    bundle = json.loads(response.content)
    assert sorted(lineage["job"] for lineage in bundle["jobs"]) == sorted([str(a.id), str(c.id)])
    assert bundle["selection"]["admin_selection"] == {"q": "INV-1"}
    assert verify(tmp_path, bundle).returncode == 0


def test_a_staff_user_without_a_role_gets_no_bundle(client, django_user_model, journeys):
    user = django_user_model.objects.create_user("nobody", password="pw-123456789", is_staff=True)
    client.force_login(user)

    response = client.get(reverse("admin:connectors_job_evidence", args=[journeys[0].id]))

    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action="evidence.export").exists()


def test_the_copies_kept_outside_catch_a_rewritten_trail(journeys, tmp_path, settings):
    """Copies delivered to a folder agree with an honest bundle. An intruder with the database
    (not the signing key) then rewrites C's history after the second checkpoint: deletes the
    events and checkpoints since, rewinds the head, appends a made-up story. The new bundle is
    consistent in itself, but its checkpoint is not among the copies."""
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "copies")
    c = journeys[2]
    honest = export(tmp_path, job=str(c.id))  # signs the checkpoint that covers C
    assert checkpoints.publish_pending() == 3
    assert len(list((tmp_path / "copies").glob("checkpoint-*.json"))) == 3
    result = verify(tmp_path, honest, "--checkpoints", str(tmp_path / "copies"))
    assert result.returncode == 0, result.stderr
    assert "The checkpoints agree with the 3 copies" in result.stdout

    second = AuditCheckpoint.objects.order_by("id")[1]
    AuditEvent.objects.filter(sequence__gt=second.sequence).delete()
    AuditCheckpoint.objects.filter(id__gt=second.id).delete()
    AuditChainHead.objects.update(
        sequence=second.sequence,
        hash=json.loads(second.statement)["hash"],
        public_hash=json.loads(second.statement)["public_hash"],
    )
    audit.record(
        "job.created",
        audit.Actor.system("intruder"),
        c,
        connector="invoices",
        changes={"source_reference": "INV-1"},
    )
    rewritten = export(tmp_path, job=str(c.id))
    assert verify(tmp_path, rewritten).returncode == 0  # consistent in itself...

    result = verify(tmp_path, rewritten, "--checkpoints", str(tmp_path / "copies"))

    assert result.returncode == 1  # ...but not what was delivered outside Interlock
    assert result.stderr.strip() == (
        f"NOT VERIFIED: checkpoint 2 (head #{second.sequence + 1}): not among the checkpoints "
        "kept outside Interlock (their chain differs here): the trail was rewritten after they "
        "were delivered"
    )


def test_a_purged_job_still_verifies_with_its_payload_blank(journeys, tmp_path, settings):
    from connectors import operations

    a = journeys[0]
    a.connector.retention_days = 1
    a.connector.save()
    Job.objects.filter(id=a.id).update(finished_at=timezone.now() - timedelta(days=2))
    operations.purge_payloads()

    bundle = export(tmp_path, job=str(a.id))
    assert bundle["jobs"][0]["prompt"] == ""
    assert verify(tmp_path, bundle).returncode == 0
    bundle["jobs"][0]["prompt"] = "Decide on: something else"
    assert "its lineage's prompt does not match" in not_verified(tmp_path, bundle)


def test_a_bundle_across_a_key_rotation_verifies_with_both_keys(journeys, tmp_path, settings):
    old_keys = public_keys(tmp_path).read_text()
    settings.AUDIT_SIGNING_KEY = base64.b64encode(
        Ed25519PrivateKey.generate().private_bytes_raw()
    ).decode()
    bundle = export(tmp_path, source_reference="INV-1")  # its last checkpoint: the new key
    assert len({checkpoint["key_id"] for checkpoint in bundle["checkpoints"]}) == 2

    both = verify(tmp_path, bundle)  # audit_public_key lists the new key and the old one

    assert both.returncode == 0, both.stderr
    new_only = tmp_path / "new-key.txt"
    new_only.write_text(crypto.signing_public_key() + "\n")
    old_id = json.loads(old_keys)["keys"][0]["key_id"]
    assert not_verified(tmp_path, bundle, keys=new_only) == (
        f"checkpoint 1 (head #{bundle['checkpoints'][0]['sequence']}): signed with key "
        f"{old_id}, which is not one of the trusted keys"
    )


def test_the_admin_action_refuses_too_many_jobs_with_a_message(officer, journeys, settings):
    settings.EVIDENCE_MAX_JOBS = 1
    listing = reverse("admin:connectors_job_changelist")

    response = officer.post(
        listing,
        {"action": "export_evidence", "select_across": "1", "_selected_action": ["x"]},
        follow=True,
    )

    assert response.status_code == 200
    assert "No evidence bundle: more than 1 jobs match" in response.content.decode()
    assert not AuditEvent.objects.filter(action="evidence.export").exists()
