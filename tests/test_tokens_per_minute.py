"""A provider's tokens-per-minute limit, through the real worker, Redis and config files."""

import pytest

from connectors import audit, config
from connectors.models import AuditEvent, Job, Provider
from tests.conftest import post_records
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = audit.Actor(AuditEvent.ActorType.SYSTEM, "test")


def test_each_call_counts_its_worst_case_against_the_limit(
    client, make_connector, openai_provider, api_key, redis_client
):
    openai_provider.tokens_per_minute = 1_000_000
    openai_provider.save()
    connector = make_connector("invoices", provider=openai_provider)
    key = api_key(connector)[1]
    response = post_records(client, "invoices", {"text": "Invoice 42"}, key=key)
    assert response.status_code == 202, response.content

    drain()

    job = Job.objects.get()
    assert job.status == Job.Status.SUCCEEDED
    [counter] = redis_client.keys("interlock:tpm:provider:gpt:*")
    # The worst case: at least the prompt's bytes and an answer limit, more than it really used.
    assert int(redis_client.get(counter)) > len(job.prompt.encode()) + job.tokens_out


def test_the_limit_round_trips_through_a_config_file(db, openai_provider):
    openai_provider.tokens_per_minute = 90_000
    openai_provider.save()
    [exported] = [p for p in config.export_config()["providers"] if p["name"] == "gpt"]
    assert exported["tokens_per_minute"] == 90_000

    document = config.export_config()
    Provider.objects.filter(name="gpt").update(tokens_per_minute=None)
    config.import_config({"providers": document["providers"]}, SYSTEM)
    assert Provider.objects.get(name="gpt").tokens_per_minute == 90_000


@pytest.mark.parametrize("value", [0, -5, "60", 1.5, True])
def test_a_bad_limit_in_a_config_file_is_named(db, value):
    document = {"providers": [{"name": "gpt", "kind": "demo", "tokens_per_minute": value}]}
    with pytest.raises(config.ConfigFileError) as refused:
        config.import_config(document, SYSTEM)
    assert "providers[0].tokens_per_minute" in str(refused.value)
    assert "whole number of at least 1" in str(refused.value)
