"""The output guard: PII the AI wrote that its prompt did not hold never reaches the legacy
system unnoticed; the job says what was found by type and count, never the values."""

import json

import pytest

from connectors.models import Connector, Job
from tests.conftest import post_records
from tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)

INVENTED_SSN, INVENTED_EMAIL = "078-05-1120", "someone.else@example.org"


@pytest.fixture
def make_guarded(make_connector, openai_provider, callback_server):
    def make(action):
        return make_connector(
            "guarded",
            provider=openai_provider,
            inputs=[("note", "note", True), ("email", "email", False)],
            outputs=[("reason", "ai_reason")],
            redaction=[("ssn", "mask"), ("email", "tokenize")],
            prompt="Decide on: {{ note }} (reply to {{ email }}). Answer JSON.",
            output_format="json",
            output_schema={"type": "object", "properties": {"reason": {"type": "string"}}},
            sink_kind="http",
            sink_config={"url": callback_server.url},
            answer_pii=action,
            max_attempts=3,
        )

    return make


def send(client, api_key, connector, record) -> Job:
    response = post_records(client, connector.slug, record, key=api_key(connector)[1])
    assert response.status_code == 202, response.content
    return Job.objects.get(id=response.json()["jobs"][0]["id"])


def ai_says(openai_server, reason: str) -> None:
    openai_server.reply(json.dumps({"reason": reason}))


def test_invented_pii_is_redacted_before_the_write_back_and_counted(
    client, api_key, make_guarded, openai_server, callback_server
):
    connector = make_guarded(Connector.AnswerPII.REDACT)
    ai_says(
        openai_server,
        f"customer <EMAIL_1> has SSN {INVENTED_SSN}, cc {INVENTED_EMAIL} and <EMAIL_1>",
    )
    job = send(client, api_key, connector, {"note": "refund", "email": "real@customer.example"})

    drain()

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.answer_pii == {"email": 1, "ssn": 1}
    [(_, _, delivered)] = callback_server.received
    reason = delivered["result"]["ai_reason"]
    # The customer's own address, tokenized in the prompt, comes back; the invented values don't.
    assert reason == (
        "customer real@customer.example has SSN [REDACTED SSN], cc [REDACTED EMAIL] and "
        "real@customer.example"
    )
    stored = json.dumps([job.result, job.answer_pii, job.error_message])
    assert INVENTED_SSN not in stored and INVENTED_EMAIL not in stored


def test_invented_pii_fails_the_job_for_a_person_when_the_connector_says_so(
    client, api_key, make_guarded, openai_server, callback_server
):
    connector = make_guarded(Connector.AnswerPII.FAIL)
    ai_says(openai_server, f"the card on file is 4111 1111 1111 1111, SSN {INVENTED_SSN}")
    job = send(client, api_key, connector, {"note": "refund"})

    drain()

    job.refresh_from_db()
    assert (job.status, job.error_code, job.attempts) == (Job.Status.DEAD, "pii_in_answer", 1)
    assert job.answer_pii == {"credit_card": 1, "ssn": 1}
    assert job.error_message == (
        "the AI's answer holds PII its prompt did not: credit_card: 1, ssn: 1"
    )
    assert callback_server.received == []  # nothing was written back
    assert "4111" not in job.error_message


def test_pii_the_prompt_already_held_is_the_inputs_not_the_ais(
    client, api_key, make_guarded, openai_server, callback_server
):
    connector = make_guarded(Connector.AnswerPII.FAIL)
    ai_says(openai_server, "approved, order 4711 for invoice 2024-03-12 as asked")
    job = send(client, api_key, connector, {"note": "order 4711, invoice 2024-03-12"})

    drain()

    job.refresh_from_db()
    assert (job.status, job.answer_pii) == (Job.Status.SUCCEEDED, {})
    assert len(callback_server.received) == 1


def test_the_connectors_phone_regions_decide_what_intake_finds(
    client, api_key, make_connector, openai_provider
):
    """A German number in national format (trunk 0) is a phone for a DE connector; for a
    connector that expects US numbers only, the same digits are not."""
    redaction = [("phone", "mask")]
    german = make_connector("de", redaction=redaction, phone_regions=["DE"])
    american = make_connector("us", redaction=redaction, phone_regions=["US"])
    record = {"text": "Rückruf unter 030 901820 bitte"}

    prompts = {}
    for connector in (german, american):
        response = post_records(client, connector.slug, record, key=api_key(connector)[1])
        assert response.status_code == 202, response.content
        prompts[connector.slug] = Job.objects.get(connector=connector).prompt

    assert prompts == {
        "de": "Classify: Rückruf unter [REDACTED PHONE] bitte",
        "us": "Classify: Rückruf unter 030 901820 bitte",
    }
