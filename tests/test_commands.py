"""Management commands: API keys shown once, key rotation, serve's settings checks."""

import base64
import io
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from connectors import crypto
from connectors.models import ApiKey, AuditEvent, Credential, Job
from tests.conftest import CANARY_SECRET

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_api_key_prints_the_key_once_and_stores_its_hash(make_connector):
    make_connector("invoices")

    output = run("create_api_key", "--connector", "invoices", "--signing-secret")

    plain = output.splitlines()[1]
    secret = output.splitlines()[3]
    api_key = ApiKey.objects.get()
    assert plain.startswith("ilk_") and api_key.prefix == plain[:12]
    assert api_key.key_hash == crypto.sha256_hex(plain)
    assert plain not in str(ApiKey.objects.values().get())
    assert secret.startswith("whsec_") and api_key.signing_secret() == secret
    assert secret not in api_key.encrypted_signing_secret
    assert AuditEvent.objects.filter(action="api_key.create", object_id=str(api_key.pk)).exists()


def test_create_api_key_for_an_unknown_connector_fails_clearly(db):
    with pytest.raises(CommandError, match="no connector with slug 'nope'"):
        run("create_api_key", "--connector", "nope")


def test_rotate_keys_re_encrypts_every_secret_under_the_new_key(
    settings, credential, make_connector, api_key
):
    connector = make_connector("invoices")
    key, _, signing_secret = api_key(connector, signed=True)
    job = Job.objects.create(
        connector=connector,
        idempotency_key="k",
        encrypted_tokens=crypto.encrypt('{"<SSN_1>": "x"}'),
    )
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]

    output = run("rotate_keys")

    assert output == (
        "Re-encrypted under the first key: 1 credentials, 1 api key signing secrets, "
        "1 job token maps.\n"
    )
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key can now be removed
    assert Credential.objects.get().reveal() == CANARY_SECRET
    assert ApiKey.objects.get(pk=key.pk).signing_secret() == signing_secret
    job.refresh_from_db()
    assert crypto.decrypt(job.encrypted_tokens) == '{"<SSN_1>": "x"}'
    assert AuditEvent.objects.filter(action="keys.rotate").count() == 1


def test_rotate_keys_without_the_old_key_changes_nothing(settings, credential):
    before = Credential.objects.get().encrypted_value
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(CommandError, match="nothing was changed"):
        run("rotate_keys")

    assert Credential.objects.get().encrypted_value == before


def production_env(**extra) -> dict:
    unwanted = ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if k not in unwanted}
    return {**env, "DEBUG": "false", **extra}


def test_production_refuses_to_start_without_its_secrets():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=production_env(),
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_check_deploy_is_clean_in_production_mode():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=production_env(
            SECRET_KEY="x" * 20 + Fernet.generate_key().decode(),
            FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            AUDIT_HMAC_KEY="a" * 40,
            REDACTION_HMAC_KEY="r" * 40,
            AUDIT_SIGNING_KEY=base64.b64encode(b"s" * 32).decode(),
            ALLOWED_HOSTS="interlock.example",
        ),
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
