"""Intake caches the connector's plan and the API key's row in each process, keyed by update
stamps: an edit, a revocation or a disable takes effect at once, in this process and from
another one."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from connectors import audit, config
from connectors.api import key_cache
from connectors.models import ApiKey, FieldMapping, Job, RedactionRule
from tests.conftest import post_records
from tests.test_faults import break_this_connection
from tests.worker import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def connector(make_connector):
    return make_connector("invoices")


def in_another_process(settings, code: str) -> None:
    """Run Django code in a process of its own, on this test's database."""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url(settings)},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def test_a_key_revoked_in_another_process_is_refused_at_once(client, connector, key, settings):
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202

    in_another_process(
        settings,
        "from django.utils import timezone; from connectors.models import ApiKey; "
        "ApiKey.objects.update(revoked_at=timezone.now())",
    )

    response = post_records(client, "invoices", {"text": "b"}, key=key)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
    assert Job.objects.count() == 1


def enable_in_another_process(settings, enabled: bool) -> None:
    in_another_process(
        settings,
        "from connectors.models import Connector; c = Connector.objects.get(slug='invoices'); "
        f"c.is_enabled = {enabled}; c.save()",
    )


def test_a_connector_disabled_in_another_process_refuses_at_once(client, connector, key, settings):
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202

    enable_in_another_process(settings, False)
    assert post_records(client, "invoices", {"text": "b"}, key=key).status_code == 503

    # The refusal was made on the process's copy, which says disabled: it is asked again on
    # the stamp, and the connector enabled since takes the record.
    enable_in_another_process(settings, True)
    assert post_records(client, "invoices", {"text": "c"}, key=key).status_code == 202
    assert sorted(Job.objects.values_list("input_data__text", flat=True)) == ["a", "c"]


def test_a_mapping_edited_in_another_process_applies_to_the_next_record(
    client, connector, key, settings
):
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202

    in_another_process(
        settings,
        "from connectors.models import FieldMapping; m = FieldMapping.objects.get(); "
        "m.source_path = 'note'; m.save()",
    )

    response = post_records(client, "invoices", {"text": "b"}, key=key)
    assert response.status_code == 422  # `note` is required now, and missing
    assert post_records(client, "invoices", {"note": "c"}, key=key).status_code == 202


def test_a_global_rule_added_applies_to_the_next_record_of_every_connector(client, connector, key):
    post_records(client, "invoices", {"text": "mail ann@example.com"}, key=key)
    RedactionRule.objects.create(connector=None, detector="email", action="mask", position=0)

    post_records(client, "invoices", {"text": "mail bob@example.com"}, key=key)

    first, second = Job.objects.order_by("created_at").values_list("input_data", flat=True)
    assert "ann@example.com" in first["text"]
    assert "bob@example.com" not in second["text"]


def test_a_config_import_that_replaces_the_mappings_applies_at_once(client, connector, key):
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202
    document = config.export_config()
    [item] = [c for c in document["connectors"] if c["slug"] == "invoices"]
    item["input_mapping"] = [{"from": "note", "to": "text", "required": True}]

    config.import_config(document, audit.Actor.system("test"))

    assert FieldMapping.objects.get(connector=connector, direction="input").source_path == "note"
    assert post_records(client, "invoices", {"text": "b"}, key=key).status_code == 422


def test_a_key_whose_networks_are_narrowed_is_refused_from_elsewhere_at_once(
    client, connector, key
):
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202
    api_key = ApiKey.objects.get()
    api_key.allowed_networks = ["10.0.0.0/8"]
    api_key.save()

    assert post_records(client, "invoices", {"text": "b"}, key=key).status_code == 403


def test_a_connector_disabled_by_the_admin_action_refuses_at_once(
    client, admin_client, connector, key
):
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202
    changelist = reverse("admin:connectors_connector_changelist")

    admin_client.post(changelist, {"action": "disable", "_selected_action": [str(connector.pk)]})

    assert post_records(client, "invoices", {"text": "b"}, key=key).status_code == 503


@pytest.mark.parametrize("known", [True, False], ids=["known key", "key read first"])
def test_the_key_stamp_query_is_the_connection_check(client, connector, key, monkeypatch, known):
    """Django checks a reused connection with a query of its own at the start of each request
    (CONN_HEALTH_CHECKS); the stamp's query does that job instead: the request's first, or
    (a key this process knows) the first of its transaction."""
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202
    if not known:
        key_cache._keys.clear()
    checks = []
    is_usable = connection.is_usable
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append(1) or is_usable())
    connection.health_check_done = False  # what every request of a web process starts with

    assert post_records(client, "invoices", {"text": "b"}, key=key).status_code == 202
    assert checks == []
    assert Job.objects.count() == 2


@pytest.mark.parametrize("known", [True, False], ids=["known key", "key read first"])
def test_a_request_on_a_connection_that_went_away_is_accepted(client, connector, key, known):
    """PostgreSQL: the server side of the kept connection is gone (a database restart); the
    stamp's query fails (before anything else, or as the first of the transaction, which
    nothing can have committed then), and the request is stored on a new connection. SQLite:
    the file is locked for a second; the request waits."""
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202
    if not known:
        key_cache._keys.clear()
    break_this_connection()
    connection.health_check_done = False

    response = post_records(client, "invoices", {"text": "b"}, key=key)
    assert response.status_code == 202, response.content
    assert Job.objects.count() == 2
    assert audit.verify().is_valid


def test_intake_statements_are_prepared_once_per_connection_on_postgresql(client, connector, key):
    for n in range(8):
        assert post_records(client, "invoices", {"text": f"r{n}"}, key=key).status_code == 202
    if connection.vendor != "postgresql":
        assert "server_side_binding" not in connection.settings_dict.get("OPTIONS", {})
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    # The key's stamp, the job's insert and the chain head's lock: planned once, not per request.
    assert any("k.key_hash" in sql for sql in prepared), prepared
    assert any(sql.startswith('INSERT INTO "connectors_job"') for sql in prepared), prepared
    assert any("connectors_auditchainhead" in sql and "FOR UPDATE" in sql for sql in prepared)


# --- A known key's stamp, read inside the write transaction -----------------------------------


def stamp_reads(client, key, body) -> list[bool]:
    """Post `body`; for each read of a key's stamp, whether it ran inside a transaction."""
    reads = []

    def watch(execute, sql, params, many, context):
        if "k.key_hash" in sql:
            reads.append(connection.in_atomic_block)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        response = post_records(client, "invoices", body, key=key)
    assert response.status_code == 202, response.content
    return reads


def test_a_known_key_is_confirmed_inside_the_transaction_that_stores_the_record(
    client, connector, key
):
    # First seen: read before the transaction, and again once its last use is written.
    assert stamp_reads(client, key, {"text": "a"}) == [False, False]

    assert stamp_reads(client, key, {"text": "b"}) == [True]
    assert stamp_reads(client, key, {"text": "c"}) == [True]
    assert Job.objects.count() == 3


def test_a_refusal_on_a_copy_that_is_still_right_stands(client, connector, key):
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202

    response = post_records(client, "invoices", {"note": "no text"}, key=key)

    assert response.status_code == 422 and response.json()["code"] == "missing_field"
    assert Job.objects.count() == 1


def test_networks_widened_in_another_process_let_the_next_request_through(
    client, connector, key, settings
):
    api_key = ApiKey.objects.get()
    api_key.allowed_networks = ["10.0.0.0/8"]
    api_key.save()
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 403

    in_another_process(
        settings,
        "from connectors.models import ApiKey; ApiKey.objects.update(allowed_networks=[])",
    )

    assert post_records(client, "invoices", {"text": "b"}, key=key).status_code == 202


def test_a_limit_raised_in_another_process_applies_to_a_copy_that_refused(
    client, connector, key, settings
):
    connector.source_config = {"requests_per_minute": 1}
    connector.save()
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202
    assert post_records(client, "invoices", {"text": "b"}, key=key).status_code == 429

    in_another_process(
        settings,
        "from connectors.models import Connector; c = Connector.objects.get(slug='invoices'); "
        "c.source_config = {'requests_per_minute': 100}; c.save()",
    )

    assert post_records(client, "invoices", {"text": "c"}, key=key).status_code == 202


def test_a_key_whose_last_use_is_written_is_not_read_again_on_the_next_request(
    client, connector, key
):
    assert post_records(client, "invoices", {"text": "a"}, key=key).status_code == 202
    an_hour_ago = timezone.now() - timedelta(hours=1)
    ApiKey.objects.update(last_used_at=an_hour_ago)  # another process's write, long ago

    # The copy is out of date: the transaction finds it; the key is read again and touched.
    assert stamp_reads(client, key, {"text": "b"}) == [True, False, False]
    assert ApiKey.objects.get().last_used_at > an_hour_ago

    # The touch is in the copy's stamp: the next request is confirmed at once.
    assert stamp_reads(client, key, {"text": "c"}) == [True]
    assert Job.objects.count() == 3
