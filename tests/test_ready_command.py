"""Right after an API key is created, its page shows a command that works when pasted: run here
by a POSIX shell against a live server with a real worker, unsigned and signed (Standard
Webhooks, computed by openssl in the shell), for each body type."""

import html
import os
import re
import subprocess

import pytest

from connectors.models import Job
from tests.test_intake_examples import status_in
from tests.worker import start_worker_process

pytestmark = pytest.mark.django_db(transaction=True)

READY = re.compile(r'<pre class="ready-command" data-kind="(\w+)">(.*?)</pre>', re.S)
INPUTS = (("customer.email", "email", True), ("text", "text", True), ("count", "count", False))


def create_key(admin_client, connector, *, signed: bool) -> tuple[str, str]:
    form = {"connector": str(connector.pk), "name": "erp", "allowed_networks": "[]"}
    if signed:
        form["with_signing_secret"] = "on"
    response = admin_client.post("/admin/connectors/apikey/add/", form)
    assert response.status_code == 200
    [(kind, command)] = READY.findall(response.content.decode())
    return kind, html.unescape(command)


def paste(command: str, live_server) -> bytes:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    return subprocess.run(
        ["sh", "-c", command.replace("http://testserver", live_server.url)],
        env=environment,  # nothing from this process: the command must carry the key itself
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout


@pytest.fixture
def worker(settings, redis_url):
    process = start_worker_process(settings, redis_url)
    yield process
    process.terminate()
    process.wait(10)


@pytest.mark.parametrize(
    ("accepts", "signed"),
    [(["json"], False), (["json"], True), (["xml"], True), (["csv"], True), (["form"], True)],
)
def test_the_command_shown_after_creating_a_key_works_when_pasted(
    admin_client, make_connector, live_server, worker, accepts, signed
):
    connector = make_connector(
        "invoices",
        inputs=INPUTS if accepts != ["csv"] else INPUTS[1:],
        prompt="{{ text }}",
        source_config={"accepts": accepts, "delimiter": ";"},  # the answer status_in reads
    )
    connector.mappings.filter(source_path="count").update(transform="int")
    kind, command = create_key(admin_client, connector, signed=signed)
    assert kind == accepts[0]
    assert re.match(r"export INTERLOCK_KEY='?ilk_", command)
    assert bool(re.search(r"^export INTERLOCK_SECRET='?whsec_", command, re.M)) is signed

    assert status_in(kind, paste(command, live_server)) == "succeeded"
    expected = {"text": "example text", "count": 1}
    if accepts != ["csv"]:
        expected["email"] = "example email"
    assert Job.objects.get().input_data == expected


def test_a_signed_command_with_another_secret_is_refused(admin_client, make_connector, live_server):
    connector = make_connector("invoices", prompt="{{ text }}")
    _, command = create_key(admin_client, connector, signed=True)
    forged = re.sub(r"whsec_[A-Za-z0-9+/=]+", "whsec_" + "A" * 43 + "=", command)
    assert forged != command
    answer = paste(forged.replace(" -X POST", " -sS -X POST"), live_server)
    assert b'"code":"invalid_signature"' in answer.replace(b" ", b"")
    assert not Job.objects.exists()
