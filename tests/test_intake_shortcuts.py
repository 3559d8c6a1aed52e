"""The single-record intake's shortcuts held equal to the general path each replaced: the query
and key checks skipped when there is nothing to check, the chain head read and written in plain
SQL, intake's writers taking turns across processes."""

import subprocess
import sys
import threading
import time

import pytest
from django.db import connection, transaction
from django.http import QueryDict

from connectors import audit, database
from connectors.api.serializers import IdempotencyKeySerializer, IntakeQuerySerializer
from connectors.api.views import intake_wait
from connectors.models import AuditChainHead, AuditEvent


def test_no_query_waits_as_the_serializer_s_default():
    query = IntakeQuerySerializer(data=QueryDict(""))

    assert query.is_valid()
    assert intake_wait(QueryDict("")) == query.validated_data["wait"] == 0
    assert intake_wait(QueryDict("wait=7")) == 7


def test_no_idempotency_key_is_what_the_serializer_accepts():
    assert IdempotencyKeySerializer(data={"key": ""}).is_valid()


@pytest.mark.django_db
def test_the_plain_head_reads_and_writes_what_the_orm_does():
    audit.record("first", audit.Actor.system())
    with transaction.atomic():
        ours = audit.locked_head()
        theirs = AuditChainHead.objects.select_for_update().get(pk=1)
        assert (ours.pk, ours.sequence, ours.hash, ours.public_hash) == (
            theirs.pk,
            theirs.sequence,
            theirs.hash,
            theirs.public_hash,
        )
        ours.sequence, ours.hash, ours.public_hash = 41, "a" * 64, "b" * 64
        audit.save_head(ours)

    stored = AuditChainHead.objects.get(pk=1)
    assert (stored.sequence, stored.hash, stored.public_hash) == (41, "a" * 64, "b" * 64)


@pytest.mark.django_db
def test_a_missing_head_is_created_on_first_append():
    AuditChainHead.objects.all().delete()

    audit.record("first", audit.Actor.system())

    assert AuditChainHead.objects.get(pk=1).sequence == AuditEvent.objects.get().sequence
    assert audit.verify().is_valid


@pytest.mark.django_db(transaction=True)
def test_an_append_waits_for_the_transaction_holding_the_head():
    audit.record("first", audit.Actor.system())
    holding, appended = threading.Event(), []

    def append():
        holding.wait()
        audit.record("second", audit.Actor.system())
        appended.append(time.monotonic())
        connection.close()

    other = threading.Thread(target=append)
    other.start()
    with transaction.atomic():
        audit.locked_head()
        holding.set()
        time.sleep(0.5)
        released = time.monotonic()
    other.join(10)

    assert appended and appended[0] >= released
    assert list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True)) == [
        "first",
        "second",
    ]
    assert audit.verify().is_valid


TRY_LOCK = """
import fcntl, os, sys
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
try:
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("held")
else:
    print("free")
"""


def lock_seen_by_another_process() -> str:
    path = f"{connection.settings_dict['NAME']}-writer.lock"
    return subprocess.run(
        [sys.executable, "-c", TRY_LOCK, path], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.django_db
def test_intake_writers_take_turns_across_processes_on_sqlite_only():
    with database.one_writer() as writer:
        if connection.vendor == "sqlite":
            assert writer.is_held and lock_seen_by_another_process() == "held"
        else:  # PostgreSQL's row lock on the chain head orders writers
            assert not writer.is_held
        writer.release()
        assert not writer.is_held
        if connection.vendor == "sqlite":
            assert lock_seen_by_another_process() == "free"
            with database.one_writer() as again:  # free for the next thread too
                assert again.is_held


@pytest.mark.django_db(transaction=True)
def test_the_writer_is_let_go_at_commit_before_later_on_commit_steps():
    seen = []
    with database.one_writer() as writer, transaction.atomic():
        transaction.on_commit(writer.release)
        transaction.on_commit(lambda: seen.append(database._sqlite_writer.locked()))

    assert seen == [False]
    assert not writer.is_held
