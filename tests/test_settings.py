"""Settings read from the environment: a bad value stops startup with a message naming it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_settings(tmp_path, **variables):
    """Import the settings in a fresh interpreter (they are read at import) and print a few."""
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'console.settings'; "
        "from django.conf import settings; "
        "print(settings.JOB_LEASE_SECONDS, settings.JOB_HEARTBEAT_SECONDS, settings.DEBUG)"
    )
    env = {**os.environ, "INTERLOCK_VAR_DIR": str(tmp_path), **variables}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"JOB_LEASE_SECONDS": "thirty"},
            "JOB_LEASE_SECONDS='thirty' is not a number (seconds, e.g. 30)",
        ),
        (
            {"INTAKE_MAX_BATCH": "1000.5"},
            "INTAKE_MAX_BATCH='1000.5' is not a whole number (e.g. 1000)",
        ),
        (
            {"DEBUG": "maybe"},
            "DEBUG='maybe' is not a boolean (true/false, yes/no, on/off, 1/0)",
        ),
        ({"DEBUG": ""}, "DEBUG='' is not a boolean (true/false, yes/no, on/off, 1/0)"),
        (
            {"JOB_LEASE_SECONDS": "-5"},
            "JOB_LEASE_SECONDS='-5' must be above 0 (seconds, e.g. 30)",
        ),
        (
            {"JOB_LEASE_SECONDS": "10", "JOB_HEARTBEAT_SECONDS": "10"},
            "JOB_HEARTBEAT_SECONDS=10 must be shorter than JOB_LEASE_SECONDS=10",
        ),
        (
            {"RETRY_BASE_SECONDS": "60", "RETRY_MAX_SECONDS": "30"},
            "RETRY_BASE_SECONDS=60 must not be above RETRY_MAX_SECONDS=30",
        ),
    ],
)
def test_a_bad_value_is_refused_by_name(tmp_path, variables, message):
    result = load_settings(tmp_path, **variables)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_good_values_load(tmp_path):
    result = load_settings(
        tmp_path, JOB_LEASE_SECONDS="45", JOB_HEARTBEAT_SECONDS="7.5", DEBUG="On"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["45.0", "7.5", "True"]


def connection_age(tmp_path, **variables) -> str:
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'console.settings'; "
        "from django.conf import settings; print(settings.DATABASES['default']['CONN_MAX_AGE'])"
    )
    environment = {k: v for k, v in os.environ.items() if k != "CONN_MAX_AGE"}
    env = {**environment, "INTERLOCK_VAR_DIR": str(tmp_path), **variables}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("database_url", "variables", "age"),
    [
        ("postgres://interlock@db.internal:5432/interlock", {}, "60"),
        ("mysql://interlock@db.internal:3306/interlock", {}, "60"),
        ("postgres://interlock@db.internal:5432/interlock", {"CONN_MAX_AGE": "0"}, "0"),
        ("sqlite:////tmp/interlock.sqlite3", {}, "0"),
        ("sqlite:////tmp/interlock.sqlite3", {"CONN_MAX_AGE": "30"}, "30"),
    ],
)
def test_connections_to_a_database_server_persist_unless_told(
    tmp_path, database_url, variables, age
):
    assert connection_age(tmp_path, DATABASE_URL=database_url, **variables) == age


def database_options(tmp_path, **variables) -> str:
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'console.settings'; "
        "from django.conf import settings; "
        "print(sorted(settings.DATABASES['default'].get('OPTIONS', {}).items()))"
    )
    env = {**os.environ, "INTERLOCK_VAR_DIR": str(tmp_path), **variables}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "[('prepare_threshold', 5), ('server_side_binding', True)]"),
        ({"DATABASE_PREPARED_STATEMENTS": "false"}, "[]"),
    ],
)
def test_postgresql_prepares_repeated_statements_unless_told_not_to(tmp_path, variables, expected):
    url = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test"}
    assert database_options(tmp_path, **url, **variables) == expected
