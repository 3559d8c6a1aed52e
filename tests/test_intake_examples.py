"""The connector page's example requests, one per accepted body type, work when pasted: each is
run by a POSIX shell against a live server, with a real worker answering `?wait=`."""

import html
import json
import os
import re
import subprocess
from urllib.parse import parse_qs
from xml.etree import ElementTree

import pytest

from connectors.api import examples
from connectors.models import Job
from tests.worker import start_worker_process

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLE = re.compile(r'<pre class="intake-example" data-kind="(\w+)">(.*?)</pre>', re.S)
TNS = "{urn:interlock:connector:invoices}"


def page_examples(admin_client, connector) -> dict[str, str]:
    page = admin_client.get(f"/admin/connectors/connector/{connector.pk}/change/")
    assert page.status_code == 200
    return {kind: html.unescape(text) for kind, text in EXAMPLE.findall(page.content.decode())}


def status_in(kind: str, output: bytes) -> str:
    """The job's status, read from the answer in the format the request was sent in."""
    if kind == "json":
        return json.loads(output)["jobs"][0]["status"]
    if kind == "soap":
        return ElementTree.fromstring(output).findtext(f".//{TNS}job/{TNS}status")
    if kind == "xml":
        return ElementTree.fromstring(output).findtext("job/status")
    if kind == "form":
        return parse_qs(output.decode())["jobs.status"][0]
    header, row = output.decode().splitlines()[:2]
    return dict(zip(header.split(";"), row.split(";"), strict=True))["status"]


def test_every_example_on_the_page_works_when_pasted(
    admin_client, make_connector, api_key, live_server, settings, redis_url
):
    connector = make_connector(
        "invoices",
        inputs=(("email", "email", True), ("text", "text", True), ("count", "count", False)),
        prompt="{{ email }}: {{ text }}",
        source_config={"accepts": ["json", "xml", "soap", "csv", "form"], "delimiter": ";"},
    )
    connector.mappings.filter(source_path="count").update(transform="int")
    key = api_key(connector)[1]
    commands = page_examples(admin_client, connector)
    assert sorted(commands) == ["csv", "form", "json", "soap", "xml"]
    assert key not in str(commands)
    worker = start_worker_process(settings, redis_url)
    try:
        outputs = {
            kind: subprocess.run(
                ["sh", "-c", command.replace("http://testserver", live_server.url)],
                env={**os.environ, "INTERLOCK_KEY": key},
                capture_output=True,
                timeout=60,
                check=True,
            ).stdout
            for kind, command in commands.items()
        }
    finally:
        worker.terminate()
        worker.wait(10)

    assert {kind: status_in(kind, output) for kind, output in outputs.items()} == {
        kind: "succeeded" for kind in commands
    }
    stored = [job.input_data for job in Job.objects.all()]
    assert stored == [{"email": "example email", "text": "example text", "count": 1}] * 5


def test_a_json_only_connector_shows_one_example_with_its_nested_record(
    admin_client, make_connector
):
    connector = make_connector(
        "invoices", inputs=(("customer.email", "email", True), ("lines[1].amount", "a", False))
    )

    commands = page_examples(admin_client, connector)

    assert list(commands) == ["json"]
    assert '-H "Authorization: Bearer $INTERLOCK_KEY"' in commands["json"]
    body = commands["json"].rpartition("--data-binary ")[2].strip("'")
    assert json.loads(body) == {
        "customer": {"email": "example email"},
        "lines": [None, {"amount": "example a"}],
    }


def test_a_sample_record_survives_paths_that_cross_each_other():
    record: dict = {}
    for path, value in [("a.b", "1"), ("a", "2"), ("a.b.c", "3"), ("l[0]", "4"), ("l[0].x", "5")]:
        examples.place(record, examples.parse_path(path), value)

    assert record == {"a": {"b": "1"}, "l": ["4"]}
