"""The bedrock kind against a local Bedrock Runtime that checks SigV4 signatures (Converse)."""

import json

import httpx
import pytest

from connectors import http
from connectors.errors import ConfigError, ProviderError
from connectors.plugins import SettingError
from connectors.providers.aws import parse_access_key, sign
from connectors.providers.base import ProviderConfig
from connectors.providers.bedrock import TOOL_NAME, BedrockProvider
from tests.conftest import CANARY_SECRET
from tests.fixtures_aws import ACCESS_KEY_ID, BedrockServer

MODEL = "anthropic.claude-test-v1:0"
SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "reason": {"type": "string"}},
}


def bedrock(server, *, model=MODEL, settings=None, parameters=None, secret=None):
    secret = f"{ACCESS_KEY_ID}:{CANARY_SECRET}" if secret is None else secret
    base_url = server.base_url if server else ""
    config = ProviderConfig("bedrock", base_url, model, 5, parameters or {}, settings or {})
    return BedrockProvider(config, secret)


def test_json_output_is_a_forced_tool_call_signed_with_sigv4(bedrock_server):
    bedrock_server.reply('{"decision": "approve", "reason": "fine"}')

    completion = bedrock(
        bedrock_server, parameters={"inferenceConfig": {"temperature": 0}}
    ).complete("Decide on invoice 42", json_schema=SCHEMA)

    [request] = bedrock_server.requests
    assert request.raw_path == "/model/anthropic.claude-test-v1%3A0/converse"
    assert request.headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/"
    )
    assert "/us-east-1/bedrock/aws4_request" in request.headers["authorization"]
    assert CANARY_SECRET not in json.dumps(request.headers)
    assert request.body == {
        "messages": [{"role": "user", "content": [{"text": "Decide on invoice 42"}]}],
        "inferenceConfig": {"temperature": 0, "maxTokens": 1024},
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": TOOL_NAME,
                        "description": "Record the answer as a JSON object that matches the "
                        "schema.",
                        "inputSchema": {"json": SCHEMA},
                    }
                }
            ],
            "toolChoice": {"tool": {"name": TOOL_NAME}},
        },
    }
    assert json.loads(completion.text) == {"decision": "approve", "reason": "fine"}
    assert (completion.tokens_in, completion.tokens_out) == (4, 4)
    assert (completion.model, completion.stop_reason) == (MODEL, "tool_use")


def test_a_text_answer_sends_no_tools_and_reads_usage(bedrock_server):
    bedrock_server.reply("Approved, the invoice is fine.")

    completion = bedrock(bedrock_server, settings={"max_tokens": 64}).complete("Say hi there")

    body = bedrock_server.requests[0].body
    assert "toolConfig" not in body
    assert body["inferenceConfig"] == {"maxTokens": 64}
    assert (completion.text, completion.stop_reason) == (
        "Approved, the invoice is fine.",
        "end_turn",
    )
    assert (completion.tokens_in, completion.tokens_out) == (3, 5)


def test_temporary_credentials_send_a_signed_session_token():
    server = BedrockServer(CANARY_SECRET, session_token="FwoGZXIvYXdzEXAMPLETOKEN")
    try:
        secret = json.dumps(
            {
                "Credentials": {
                    "AccessKeyId": ACCESS_KEY_ID,
                    "SecretAccessKey": CANARY_SECRET,
                    "SessionToken": "FwoGZXIvYXdzEXAMPLETOKEN",
                }
            }
        )
        completion = bedrock(server, secret=secret).complete("hello")
        with pytest.raises(ProviderError) as without_token:
            bedrock(server).complete("hello")
    finally:
        server.close()

    assert completion.text == '{"decision": "approve"}'
    signed = server.requests[0].headers["authorization"]
    assert "x-amz-security-token" in signed
    assert (without_token.value.permanent, without_token.value.code) == (True, "provider_error")
    assert "UnrecognizedClientException" in without_token.value.message
    assert server.problems == []


def test_a_wrong_secret_fails_the_signature_check_permanently_and_names_it(bedrock_server):
    with pytest.raises(ProviderError) as caught:
        bedrock(bedrock_server, secret=f"{ACCESS_KEY_ID}:wrong-secret-key").complete("hello")

    error = caught.value
    assert (error.code, error.permanent) == ("provider_error", True)
    assert "HTTP 403 InvalidSignatureException" in error.message
    assert "check the secret access key" in error.message
    assert "wrong-secret-key" not in error.message


def test_the_server_refuses_a_signature_over_other_bytes(bedrock_server):
    """The test server's check is real: a signature over one body does not pass for another."""
    url = f"{bedrock_server.base_url}/model/{MODEL.replace(':', '%3A')}/converse"
    body = {"messages": [{"role": "user", "content": [{"text": "a"}]}]}
    headers = sign(
        parse_access_key(f"{ACCESS_KEY_ID}:{CANARY_SECRET}"),
        "bedrock",
        "us-east-1",
        "POST",
        url,
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    other = json.dumps({"messages": [{"role": "user", "content": [{"text": "b"}]}]}).encode()

    genuine = httpx.post(url, content=json.dumps(body).encode(), headers=headers)
    tampered = httpx.post(url, content=other, headers=headers)

    assert genuine.status_code == 200
    assert tampered.status_code == 403
    assert tampered.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException")


def test_a_max_tokens_stop_is_a_truncated_answer(bedrock_server):
    bedrock_server.reply("one two three four five six")

    with pytest.raises(ProviderError) as caught:
        bedrock(bedrock_server, settings={"max_tokens": 3}).complete("Decide")

    assert (caught.value.code, caught.value.permanent) == ("truncated_answer", True)
    assert "raise the provider's max_tokens setting (now 3)" in caught.value.message


@pytest.mark.parametrize("reason", ["guardrail_intervened", "content_filtered"])
def test_a_guardrail_or_filter_is_a_named_refusal(bedrock_server, reason):
    bedrock_server.script([("stop", reason)])

    with pytest.raises(ProviderError) as caught:
        bedrock(bedrock_server).complete("Decide", json_schema=SCHEMA)

    assert (caught.value.code, caught.value.permanent) == ("content_refused", True)
    assert reason in caught.value.message


@pytest.mark.parametrize(
    ("step", "code", "permanent", "message"),
    [
        (("status", 429), "provider_error", False, "HTTP 429 ThrottlingException"),
        (("status", 503), "provider_error", False, "ServiceUnavailableException"),
        (("status", 500), "provider_error", False, "InternalServerException"),
        (("status", 408), "provider_error", False, "ModelTimeoutException"),
        (("status", 424), "provider_error", False, "ModelErrorException"),
        (("status", 429, {}, "ModelNotReadyException"), "provider_error", False, "NotReady"),
        (("status", 400), "provider_error", True, "HTTP 400 ValidationException"),
        (("status", 403), "provider_error", True, "AccessDeniedException"),
        (("status", 404), "model_not_found", True, "ResourceNotFoundException"),
        (
            ("error", 400, "ValidationException", "Input is too long for requested model."),
            "context_too_long",
            True,
            "Input is too long",
        ),
        (
            ("error", 400, "ServiceQuotaExceededException", "quota"),
            "provider_error",
            True,
            "ServiceQuotaExceededException",
        ),
        (("malformed",), "provider_error", False, "malformed"),
    ],
)
def test_errors_are_classified_by_their_aws_type(bedrock_server, step, code, permanent, message):
    bedrock_server.script([step])

    with pytest.raises(ProviderError) as caught:
        bedrock(bedrock_server).complete("hello")

    assert (caught.value.code, caught.value.permanent) == (code, permanent)
    assert message in caught.value.message


def test_a_quoted_secret_is_scrubbed_from_the_message():
    def echo(request):
        message = f"bad key {CANARY_SECRET} and token TOKEN-CANARY-123"
        return httpx.Response(
            400, json={"message": message}, headers={"x-amzn-ErrorType": "ValidationException"}
        )

    secret = f"{ACCESS_KEY_ID}:{CANARY_SECRET}:TOKEN-CANARY-123"
    with http.override_transport(httpx.MockTransport(echo)):
        provider = bedrock(None, secret=secret)
        with pytest.raises(ProviderError) as caught:
            provider.complete("hello")

    assert CANARY_SECRET not in caught.value.message
    assert "TOKEN-CANARY-123" not in caught.value.message
    assert "bad key *** and token ***" in caught.value.message


def test_without_a_base_url_the_region_names_the_endpoint():
    seen = []

    def answer(request):
        seen.append(str(request.url))
        body = {
            "output": {"message": {"role": "assistant", "content": [{"text": "OK"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
            "metrics": {"latencyMs": 1},
        }
        return httpx.Response(200, json=body)

    with http.override_transport(httpx.MockTransport(answer)):
        bedrock(None, settings={"region": "eu-central-1"}).complete("hi")

    assert seen == [
        "https://bedrock-runtime.eu-central-1.amazonaws.com/model/"
        "anthropic.claude-test-v1%3A0/converse"
    ]


@pytest.mark.parametrize(
    "value", ["", "no-colon", "a:b:c:d", ":secret", "{}", '{"AccessKeyId": "x"}', "{not json"]
)
def test_a_credential_that_is_no_access_key_is_a_config_error_quoting_none_of_it(value):
    with pytest.raises(ConfigError) as caught:
        parse_access_key(value)

    assert caught.value.permanent
    assert "AWS access key" in caught.value.message
    assert not value or value not in caught.value.message


def test_test_connection_makes_a_tiny_converse_call_and_checks_the_model(bedrock_server):
    answer = bedrock(bedrock_server).test_connection()

    assert answer == f"OK: the key was accepted and model {MODEL} answered in us-east-1 (5 tokens)"
    assert bedrock_server.requests[0].body["inferenceConfig"] == {"maxTokens": 3}
    with pytest.raises(ProviderError) as unknown:
        bedrock(bedrock_server, model="no-such-model").test_connection()
    assert (unknown.value.code, unknown.value.permanent) == ("model_not_found", True)
    assert "no-such-model" in unknown.value.message


@pytest.mark.parametrize(
    ("parameters", "own", "setting", "message"),
    [
        ({"toolConfig": {}}, {}, "parameters", "parameters cannot set toolConfig"),
        ({"messages": []}, {}, "parameters", "parameters cannot set messages"),
        ({}, {"max_tokens": 0}, "max_tokens", "max_tokens must be at least 1"),
        ({}, {"region": "Frankfurt"}, "region", "region must be an AWS region"),
        ({}, {"region": "us-east-1/../x"}, "region", "region must be an AWS region"),
        ({}, {"api_version": "x"}, "settings", "unknown settings api_version; known:"),
    ],
)
def test_settings_are_validated(parameters, own, setting, message):
    with pytest.raises(SettingError, match=message) as refused:
        BedrockProvider.validate_provider("", MODEL, parameters, own)

    assert refused.value.setting == setting


def test_defaults_fill_in_region_and_max_tokens():
    config = BedrockProvider.validate_provider("", MODEL, {}, {})

    assert (config["region"], config["max_tokens"]) == ("us-east-1", 1024)


def test_the_credential_form_refuses_a_value_that_is_no_access_key(admin_client):
    from django.urls import reverse

    from connectors.models import Credential

    add = reverse("admin:connectors_credential_add")
    form = {"name": "aws", "kind": "aws_access_key", "value": CANARY_SECRET}
    refused = admin_client.post(add, form)
    accepted = admin_client.post(add, form | {"value": f"{ACCESS_KEY_ID}:{CANARY_SECRET}"})

    errors = refused.context["adminform"].form.errors
    assert list(errors) == ["value"]
    assert "not an AWS access key" in errors["value"][0]
    assert CANARY_SECRET not in refused.content.decode()
    assert accepted.status_code == 302
    assert Credential.objects.get().reveal() == f"{ACCESS_KEY_ID}:{CANARY_SECRET}"
