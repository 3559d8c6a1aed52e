"""The kind forms' look-ups: a legacy database's tables and columns (SQLite, PostgreSQL and
MariaDB on loopback), a drop folder's files; refusals are 400s naming the problem."""

import os
import time

import pytest
from django.urls import reverse

from connectors.models import Credential
from tests.conftest import CANARY_SECRET
from tests.legacy_databases import create_tasks_table, drop, legacy_url  # noqa: F401

pytestmark = pytest.mark.django_db
SCHEMA = "admin:connectors_connector_database_schema"
FOLDER = "admin:connectors_connector_folder_contents"


def database_credential(url: str) -> Credential:
    credential = Credential(name="legacy-db", kind="database_url")
    credential.set_value(url)
    credential.save()
    return credential


@pytest.fixture
def tasks(legacy_url):  # noqa: F811
    table = create_tasks_table(legacy_url, 0)
    yield legacy_url, table
    drop(legacy_url, table)


def test_connect_lists_the_tables_then_a_tables_columns(admin_client, tasks):
    url, table = tasks
    database_credential(url)

    tables = admin_client.post(reverse(SCHEMA), {"credential": "legacy-db"})
    columns = admin_client.post(reverse(SCHEMA), {"credential": "legacy-db", "table": table.name})

    assert tables.status_code == 200
    assert table.name in tables.json()["tables"]
    assert columns.json() == {
        "table": table.name,
        "columns": ["id", "title", "body", "ai_status", "ai_output", "ai_error", "ai_job"],
    }


def test_a_missing_table_is_a_400_naming_it(admin_client, tmp_path):
    database_credential(f"sqlite:///{tmp_path / 'legacy.sqlite3'}")

    answer = admin_client.post(reverse(SCHEMA), {"credential": "legacy-db", "table": "nope"})

    assert answer.status_code == 400
    assert answer.json() == {"code": "not_found", "detail": "the database has no table 'nope'"}


def test_an_unreachable_database_is_a_400_without_its_password(admin_client):
    database_credential(f"postgresql://ada:{CANARY_SECRET}@127.0.0.1:9/legacy")

    answer = admin_client.post(reverse(SCHEMA), {"credential": "legacy-db"})

    assert answer.status_code == 400
    assert answer.json()["code"] == "cannot_connect"
    assert answer.json()["detail"].startswith("cannot reach the database: ")
    assert CANARY_SECRET not in answer.content.decode()


def test_connect_needs_a_credential_and_a_post(admin_client):
    unknown = admin_client.post(reverse(SCHEMA), {"credential": "nope"})
    fetched = admin_client.get(reverse(SCHEMA))

    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "no credential named 'nope': choose one first"
    assert fetched.status_code == 405


def test_a_viewer_cannot_connect(client, django_user_model, tmp_path):
    from django.contrib.auth.models import Group

    database_credential(f"sqlite:///{tmp_path / 'legacy.sqlite3'}")
    officer = django_user_model.objects.create_user("olga", password="pw", is_staff=True)
    officer.groups.add(Group.objects.get(name="Compliance officer"))
    client.force_login(officer)

    assert client.post(reverse(SCHEMA), {"credential": "legacy-db"}).status_code == 403
    assert client.post(reverse(FOLDER), {"path": str(tmp_path)}).status_code == 403


def test_the_folder_shows_its_files_newest_first(admin_client, tmp_path):
    (tmp_path / "old.csv").write_text("a,b\n1,2\n")
    (tmp_path / "new.csv").write_text("a\n")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "archive").mkdir()  # the poller's own folders are not shown
    (tmp_path / ".hidden.csv").write_text("")
    now = time.time()
    for name, age in (("old.csv", 3600), ("notes.txt", 60), ("new.csv", 0)):
        os.utime(tmp_path / name, (now - age, now - age))

    answer = admin_client.post(reverse(FOLDER), {"path": str(tmp_path), "pattern": "*.csv"})

    assert answer.status_code == 200
    body = answer.json()
    assert [(e["name"], e["size"], e["type"], e["matches"]) for e in body["entries"]] == [
        ("new.csv", 2, "file", True),
        ("notes.txt", 1, "file", False),
        ("old.csv", 8, "file", True),
    ]
    assert body["entries"][-1]["modified"] == pytest.approx(now - 3600)
    assert (body["total"], body["complete"]) == (3, True)


def test_the_folder_listing_is_bounded(admin_client, tmp_path):
    for number in range(60):
        (tmp_path / f"file-{number}.csv").write_text("")

    body = admin_client.post(reverse(FOLDER), {"path": str(tmp_path)}).json()

    assert (len(body["entries"]), body["total"]) == (50, 60)


def test_a_missing_or_relative_folder_is_a_400(admin_client, tmp_path):
    missing = admin_client.post(reverse(FOLDER), {"path": str(tmp_path / "nope")})
    relative = admin_client.post(reverse(FOLDER), {"path": "inbox"})

    assert missing.status_code == 400
    assert missing.json()["detail"] == f"cannot read {tmp_path / 'nope'}: No such file or directory"
    assert relative.json() == {"code": "invalid", "detail": "path must be an absolute folder path"}
