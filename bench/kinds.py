"""A provider kind's local test server for benchmarks: the same servers the tests use
(tests/fixtures_*.py), each speaking its vendor's wire format, answering after `latency_ms`."""

import json
import sys
import time
from dataclasses import dataclass, field

from common import ROOT, summarising_connector

SECRET = "sk-bench-0123456789abcdef"


@dataclass
class KindServer:
    kind: str
    base_url: str
    model: str
    settings: dict
    credential_kind: str
    credential_value: str
    servers: list = field(default_factory=list)

    def close(self) -> None:
        for server in self.servers:
            server.close()


def kinds() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures_http import FAKE_KINDS

    return sorted({"openai", "amazon_q", *FAKE_KINDS})


def start(name: str, latency_ms: float) -> KindServer:
    """Start the servers `name` (a kind, or a FAKE_KINDS variant such as gemini_vertex) needs."""
    sys.path.insert(0, str(ROOT))
    from tests import fixtures_aws, fixtures_http, fixtures_oauth

    answer = '{"decision": "approve"}'

    def slow(_prompt) -> str:
        time.sleep(latency_ms / 1000)
        return answer

    if name == "openai":
        server = fixtures_http.OpenAIServer()
        server.responder = slow
        return KindServer("openai", server.base_url, "gpt-test", {}, "api_key", SECRET, [server])
    if name == "amazon_q":
        server = fixtures_aws.AmazonQServer(SECRET)
        server.responder = slow
        value = f"{fixtures_aws.ACCESS_KEY_ID}:{SECRET}"
        application = fixtures_aws.AmazonQServer.APPLICATION
        return KindServer(
            "amazon_q", server.base_url, application, {}, "aws_access_key", value, [server]
        )
    fake = fixtures_http.FAKE_KINDS[name]
    settings = dict(fake.settings)
    servers: list = []
    credential_kind, value = "api_key", SECRET
    if fake.fixture == "bedrock_server":
        server = fixtures_aws.BedrockServer(SECRET)
        credential_kind, value = "aws_access_key", f"{fixtures_aws.ACCESS_KEY_ID}:{SECRET}"
    elif fake.fixture == "vertex_server":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tokens = fixtures_oauth.GoogleTokenServer(key.public_key())
        servers.append(tokens)
        server = fixtures_oauth.VertexServer(tokens)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        info = {
            "type": "service_account",
            "private_key": pem,
            "client_email": fixtures_oauth.CLIENT_EMAIL,
            "token_uri": tokens.url,
        }
        credential_kind, value = "service_account", json.dumps(info)
    elif fake.fixture == "entra_azure_server":
        tokens = fixtures_http.TokenServer()
        servers.append(tokens)
        server = fixtures_oauth.EntraAzureServer(tokens)
        settings["token_url"] = tokens.url
    else:
        server_class = {
            "anthropic_server": fixtures_http.AnthropicServer,
            "gemini_server": fixtures_http.GeminiServer,
            "cohere_server": fixtures_http.CohereServer,
            "ollama_server": fixtures_http.OllamaServer,
            "azure_openai_server": fixtures_http.AzureOpenAIServer,
        }[fake.fixture]
        server = server_class(None if fake.fixture == "ollama_server" else SECRET)
    server.responder = slow
    servers.append(server)
    return KindServer(
        fake.kind, server.base_url, fake.model, settings, credential_kind, value, servers
    )


def make_connector(slug: str, server: KindServer, *, batch_size: int, concurrency: int):
    from connectors.models import Credential, Provider

    credential = Credential(name=f"key-{slug}"[:100], kind=server.credential_kind)
    credential.set_value(server.credential_value)
    credential.save()
    provider = Provider.objects.create(
        name=f"ai-{slug}"[:100],
        kind=server.kind,
        base_url=server.base_url,
        model=server.model,
        credential=credential,
        settings=server.settings,
        max_concurrency=concurrency,
        timeout_seconds=30,
    )
    return summarising_connector(slug, provider, batch_size)
