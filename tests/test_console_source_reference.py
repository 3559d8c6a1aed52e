"""Records you can find: a connector takes each job's source reference from a record field, and
the job list finds jobs by it across connectors."""

import io
import json

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from connectors.models import Connector, Job
from tests.conftest import CANARY_SSN, post_records
from tests.test_admin import connector_form

pytestmark = pytest.mark.django_db

JOBS = reverse("admin:connectors_job_changelist")


def send(client, api_key, connector, record):
    response = post_records(client, connector.slug, record, key=api_key(connector)[1])
    assert response.status_code == 202, response.content
    return Job.objects.get(id=response.json()["jobs"][0]["id"])


def test_the_source_reference_comes_from_the_record_field(client, make_connector, api_key):
    connector = make_connector(source_reference_field="claim.id")

    found = send(client, api_key, connector, {"text": "a", "claim": {"id": "C-1001"}})
    numeric = send(client, api_key, connector, {"text": "b", "claim": {"id": 42}})
    missing = send(client, api_key, connector, {"text": "c"})

    assert found.source_reference == "C-1001"
    assert numeric.source_reference == "42"
    assert missing.source_reference == "webhook"  # the source's own


def test_a_reference_holding_pii_is_redacted_like_the_input(client, make_connector, api_key):
    connector = make_connector(source_reference_field="customer", redaction=[("ssn", "mask")])

    job = send(client, api_key, connector, {"text": "a", "customer": f"SSN {CANARY_SSN}"})

    assert CANARY_SSN not in job.source_reference
    assert job.source_reference.startswith("SSN ")


def test_the_job_list_finds_a_reference_across_connectors(
    admin_client, client, make_connector, api_key
):
    claims = make_connector("claims", source_reference_field="claim.id")
    appeals = make_connector("appeals", source_reference_field="ref")
    first = send(client, api_key, claims, {"text": "a", "claim": {"id": "C-7"}})
    second = send(client, api_key, appeals, {"text": "b", "ref": "C-7"})
    other = send(client, api_key, claims, {"text": "c", "claim": {"id": "C-70"}})

    page = admin_client.get(JOBS, {"q": "C-7"})

    assert page.status_code == 200
    shown = {job.id for job in page.context["cl"].result_list}
    assert shown == {first.id, second.id}  # exact: C-70 is another record
    assert other.id not in shown
    by_id = admin_client.get(JOBS, {"q": str(other.id)})
    assert [job.id for job in by_id.context["cl"].result_list] == [other.id]


def test_a_bad_path_is_an_error_beside_its_field(admin_client, demo_provider):
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        connector_form(demo_provider, source_reference_field="claim..id"),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["source_reference_field"]
    assert "empty part" in errors["source_reference_field"][0]
    assert Connector.objects.count() == 0


def test_config_export_and_import_round_trip_the_setting(make_connector, tmp_path):
    make_connector("claims", source_reference_field="claim.id")
    exported = io.StringIO()
    call_command("export_config", stdout=exported)
    config = yaml.safe_load(exported.getvalue())
    [item] = config["connectors"]
    assert item["source_reference_field"] == "claim.id"

    item["source_reference_field"] = "claim.number"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    call_command("import_config", str(path), stdout=io.StringIO())

    assert Connector.objects.get(slug="claims").source_reference_field == "claim.number"


def test_config_import_refuses_a_bad_path_naming_the_setting(make_connector, tmp_path):
    make_connector("claims")
    exported = io.StringIO()
    call_command("export_config", stdout=exported)
    config = yaml.safe_load(exported.getvalue())
    config["connectors"][0]["source_reference_field"] = "claim..id"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))

    with pytest.raises(Exception, match="source_reference_field") as error:
        call_command("import_config", str(path), stdout=io.StringIO())

    assert "empty part" in str(error.value)
    assert Connector.objects.get(slug="claims").source_reference_field == ""
