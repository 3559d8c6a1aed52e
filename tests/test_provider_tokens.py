"""Providers reached with OAuth2 tokens: gemini on Vertex AI (a service account's JWT bearer
grant against a local token endpoint that verifies the assertion) and azure_openai with
Microsoft Entra ID (client credentials)."""

import json

import httpx
import pytest
from django.urls import reverse

from connectors import http
from connectors.errors import ConfigError, ProviderError
from connectors.oauth2 import ServiceAccount
from connectors.plugins import SettingError
from connectors.providers.azure_openai import AzureOpenAIProvider
from connectors.providers.base import ProviderConfig
from connectors.providers.gemini import GeminiProvider
from tests.conftest import CANARY_SECRET
from tests.fixtures_oauth import CLIENT_EMAIL, ENTRA_SCOPE, VertexServer

VERTEX = {"api": "vertex", "project": VertexServer.PROJECT, "location": VertexServer.LOCATION}


def vertex(server, credential, **settings):
    config = ProviderConfig(
        "gemini", server.base_url if server else "", "gemini-test", 5, {}, VERTEX | settings
    )
    return GeminiProvider(config, credential.reveal())


def test_vertex_gets_a_token_by_the_jwt_bearer_grant_and_reuses_it(
    vertex_server, google_token_server, service_account_credential
):
    provider = vertex(vertex_server, service_account_credential)

    first = provider.complete("Decide on invoice 42", json_schema={"type": "object"})
    provider.complete("Decide on invoice 43")

    [grant] = google_token_server.requests
    assert grant["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert set(grant) == {"grant_type", "assertion"}
    request = vertex_server.requests[0]
    assert request.path == (
        "/v1/projects/my-project/locations/us-central1/publishers/google/models/"
        "gemini-test:generateContent"
    )
    assert [r.headers["authorization"] for r in vertex_server.requests] == [
        "Bearer ya29.test-1"
    ] * 2
    assert request.body["generationConfig"]["responseMimeType"] == "application/json"
    assert (first.text, first.tokens_in) == ('{"decision": "approve"}', 4)


def test_a_refused_token_is_forgotten_and_the_call_retried_with_a_new_one(
    vertex_server, google_token_server, service_account_credential
):
    provider = vertex(vertex_server, service_account_credential)
    provider.complete("hello")
    vertex_server.tokens.issued.clear()  # the token was revoked

    with pytest.raises(ProviderError) as refused:
        provider.complete("hello")
    provider.complete("hello")

    assert (refused.value.permanent, refused.value.code) == (False, "provider_error")
    assert "retrying with a new one" in refused.value.message
    assert len(google_token_server.requests) == 2
    assert vertex_server.requests[-1].headers["authorization"] == "Bearer ya29.test-2"


def test_a_token_endpoint_refusal_is_permanent_and_never_quotes_the_key(
    vertex_server, google_token_server, service_account_credential, service_account_key
):
    pem = service_account_key[0]
    google_token_server.script([(400, {"error": "invalid_grant", "error_description": pem})])

    with pytest.raises(ProviderError) as caught:
        vertex(vertex_server, service_account_credential).complete("hello")

    assert caught.value.permanent
    assert "token endpoint answered HTTP 400: invalid_grant" in caught.value.message
    assert "check the service account, its key and its roles" in caught.value.message
    assert "PRIVATE KEY" not in caught.value.message
    assert vertex_server.requests == []


def test_test_connection_on_vertex_counts_tokens(
    vertex_server, google_token_server, service_account_credential
):
    answer = vertex(vertex_server, service_account_credential).test_connection()

    assert answer == (
        "OK: the service account got a token and model gemini-test answered in project "
        "my-project, us-central1 (3 tokens counted)"
    )
    assert vertex_server.requests[0].path.endswith("gemini-test:countTokens")


def test_without_a_base_url_the_location_names_the_host(service_account_credential):
    europe = vertex(None, service_account_credential, location="europe-west4")
    world = vertex(None, service_account_credential, location="global")

    assert europe.base_url == "https://europe-west4-aiplatform.googleapis.com"
    assert world.base_url == "https://aiplatform.googleapis.com"
    assert world.model_url.startswith("https://aiplatform.googleapis.com/v1/projects/my-project/")


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        json.dumps({"type": "authorized_user", "client_email": "a", "private_key": "b"}),
        json.dumps({"type": "service_account", "client_email": CLIENT_EMAIL}),
        json.dumps({"type": "service_account", "client_email": "a", "private_key": "garbage"}),
    ],
)
def test_a_credential_that_is_no_service_account_key_is_a_config_error(value):
    with pytest.raises(ConfigError) as caught:
        ServiceAccount.from_json(value, "scope")

    assert caught.value.permanent
    assert "garbage" not in caught.value.message


@pytest.mark.parametrize(
    ("own", "setting", "message"),
    [
        ({"api": "vertex", "location": "us-central1"}, "project", "api: vertex needs project"),
        ({"api": "vertex", "project": "my-project"}, "location", "api: vertex needs location"),
        (VERTEX | {"location": "us/../x"}, "location", "api: vertex needs location"),
        ({"project": "my-project"}, "api", "project and location are for api: vertex"),
        ({"api": "palm"}, "api", "api must be one of gemini, vertex"),
    ],
)
def test_vertex_settings_are_validated(own, setting, message):
    with pytest.raises(SettingError, match=message) as refused:
        GeminiProvider.validate_provider("", "gemini-test", {}, own)

    assert refused.value.setting == setting


def test_the_credential_form_refuses_a_value_that_is_no_service_account_key(admin_client):
    from connectors.models import Credential

    form = {"name": "sa", "kind": "service_account", "value": CANARY_SECRET}
    response = admin_client.post(reverse("admin:connectors_credential_add"), form)

    errors = response.context["adminform"].form.errors
    assert list(errors) == ["value"]
    assert "not a service account key" in errors["value"][0]
    assert CANARY_SECRET not in response.content.decode()
    assert not Credential.objects.exists()


# --- Azure OpenAI with Microsoft Entra ID ----------------------------------------------------


def entra(server, token_url, *, secret=CANARY_SECRET, **settings):
    own = {"auth": "entra_id", "client_id": "interlock-app", "token_url": token_url} | settings
    base_url = server.base_url if server else "https://contoso.openai.azure.com"
    config = ProviderConfig("azure_openai", base_url, "gpt4o-test", 5, {}, own)
    return AzureOpenAIProvider(config, secret)


def test_entra_id_gets_a_client_credentials_token_for_cognitive_services(
    entra_azure_server, token_server
):
    provider = entra(entra_azure_server, token_server.url)

    provider.complete("hello")
    provider.complete("again")

    assert token_server.requests == [
        {
            "grant_type": "client_credentials",
            "client_id": "interlock-app",
            "client_secret": CANARY_SECRET,
            "scope": ENTRA_SCOPE,
        }
    ]
    headers = [request.headers for request in entra_azure_server.requests]
    assert [h["authorization"] for h in headers] == ["Bearer access-1"] * 2
    assert all("api-key" not in h for h in headers)


def test_an_entra_token_azure_refuses_is_forgotten_and_retried(entra_azure_server, token_server):
    provider = entra(entra_azure_server, token_server.url)
    provider.complete("hello")
    token_server.issued = 0  # every token issued so far is revoked

    with pytest.raises(ProviderError) as refused:
        provider.complete("hello")

    assert not refused.value.permanent
    assert "Entra ID token; retrying with a new one" in refused.value.message
    provider.complete("hello")  # a fresh token (access-1 again, as the server now counts)
    assert len(token_server.requests) == 2


def test_without_a_token_url_the_tenant_names_the_entra_endpoint():
    seen = []

    def answer(request):
        seen.append(str(request.url))
        return httpx.Response(400, json={"error": "invalid_client", "error_description": "x"})

    with http.override_transport(httpx.MockTransport(answer)):
        provider = entra(None, "", tenant_id="contoso.onmicrosoft.com")
        provider.config.settings.pop("token_url")
        with pytest.raises(ProviderError, match="check the client id, secret and scope"):
            provider.complete("hello")

    assert seen == ["https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"]


def test_an_echoed_client_secret_is_scrubbed(entra_azure_server, token_server):
    token_server.script([(401, {"error": "invalid_client", "error_description": CANARY_SECRET})])

    with pytest.raises(ProviderError) as caught:
        entra(entra_azure_server, token_server.url).complete("hello")

    assert CANARY_SECRET not in caught.value.message
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("own", "setting", "message"),
    [
        ({"auth": "entra_id", "tenant_id": "t"}, "client_id", "auth: entra_id needs client_id"),
        ({"auth": "entra_id", "client_id": "c"}, "tenant_id", "needs tenant_id"),
        ({"auth": "entra_id", "client_id": "c", "tenant_id": "a/b"}, "tenant_id", "tenant_id"),
        ({"client_id": "c"}, "auth", "are for auth: entra_id"),
    ],
)
def test_entra_settings_are_validated(own, setting, message):
    with pytest.raises(SettingError, match=message) as refused:
        AzureOpenAIProvider.validate_provider("https://contoso.openai.azure.com", "d", {}, own)

    assert refused.value.setting == setting
