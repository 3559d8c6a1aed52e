"""Providers behind OAuth2 tokens: Google's token endpoint (the JWT bearer grant, RFC 7523, whose
assertion it verifies with the service account's public key), Vertex AI's generateContent and
countTokens, and Azure OpenAI with Microsoft Entra ID tokens (client credentials)."""

import base64
import json
import time
import urllib.parse
from dataclasses import replace

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fixtures_http import (
    AzureOpenAIServer,
    GeminiServer,
    Request,
    TokenServer,
    _Server,
    words,
)

CLIENT_EMAIL = "interlock@my-project.iam.gserviceaccount.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"


def _unpadded(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GoogleTokenServer(_Server):
    """oauth2.googleapis.com/token for the JWT bearer grant: checks the assertion's RS256
    signature, issuer, audience, scope and times, and issues `ya29.test-N` tokens."""

    def __init__(self, public_key) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/token"
        self.public_key = public_key
        self.requests: list[dict] = []
        self.issued: list[str] = []  # tokens still valid
        self.count = 0
        self.problems: list[str] = []

    def handle(self, handler, raw: bytes | None) -> None:
        form = dict(urllib.parse.parse_qsl((raw or b"").decode()))
        with self.lock:
            self.requests.append(form)
        step = self.next_step()
        if step is not None:  # (status, body)
            return self.send(handler, step[0], json.dumps(step[1]).encode())
        problem = self.assertion_problem(form)
        if problem:
            with self.lock:
                self.problems.append(problem)
            error = {"error": "invalid_grant", "error_description": problem}
            return self.send(handler, 400, json.dumps(error).encode())
        with self.lock:
            self.count += 1
            token = f"ya29.test-{self.count}"
            self.issued.append(token)
        answer = {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        self.send(handler, 200, json.dumps(answer).encode())

    def assertion_problem(self, form: dict) -> str:
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return "grant_type must be the JWT bearer grant"
        try:
            header, claims, signature = form.get("assertion", "").split(".")
            decoded_header = json.loads(_unpadded(header))
            decoded = json.loads(_unpadded(claims))
            self.public_key.verify(
                _unpadded(signature),
                f"{header}.{claims}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (ValueError, InvalidSignature):
            return "Invalid JWT Signature."
        now = time.time()
        if decoded_header.get("alg") != "RS256":
            return "the assertion must be RS256"
        if decoded.get("iss") != CLIENT_EMAIL or decoded.get("aud") != self.url:
            return "Invalid JWT: iss or aud"
        if decoded.get("scope") != CLOUD_PLATFORM:
            return "Invalid JWT: scope"
        if (
            not decoded["iat"] - 60 <= now <= decoded["exp"]
            or decoded["exp"] - decoded["iat"] > 3600
        ):
            return "Invalid JWT: Token must be a short-lived token (60 minutes)"
        return ""


class VertexServer(GeminiServer):
    """Vertex AI: POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent
    and :countTokens, with a bearer token the token server issued."""

    PROJECT, LOCATION = "my-project", "us-central1"

    def __init__(self, tokens: GoogleTokenServer) -> None:
        super().__init__()
        self.tokens = tokens
        self.prefix = (
            f"/v1/projects/{self.PROJECT}/locations/{self.LOCATION}/publishers/google/models/"
        )

    def as_gemini(self, request: Request) -> Request:
        """The same request on the Gemini API's path, for the checks the two forms share."""
        model, _, method = request.path.removeprefix(self.prefix).partition(":")
        method = "generateContent" if method == "countTokens" else method
        return replace(request, path=f"/v1beta/models/{model}:{method}")

    def sent_key(self, request: Request) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    def is_authorised(self, request: Request) -> bool:
        return self.sent_key(request) in self.tokens.issued

    def unauthorised(self, request: Request) -> tuple[int, object, dict]:
        message = "Request had invalid authentication credentials. Expected OAuth 2 access token."
        return 401, {"error": {"code": 401, "message": message, "status": "UNAUTHENTICATED"}}, {}

    def check(self, request: Request) -> list[str]:
        if "x-goog-api-key" in request.headers:
            return ["Vertex AI takes a bearer token, not x-goog-api-key"]
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return ["a bearer token is required"]
        if request.method != "POST" or not request.path.startswith(self.prefix):
            return ["no such endpoint"]
        if request.path.endswith(":countTokens"):
            body = request.body
            return self.body_problems(body, {"contents", "generationConfig", "instances"})
        return super().check(self.as_gemini(request))

    def route(self, request: Request, step) -> tuple[int, object, dict]:
        model = request.path.removeprefix(self.prefix).partition(":")[0]
        if model not in self.models:
            message = f"Publisher Model `{self.prefix.strip('/')}{model}` was not found"
            return 404, self.error(404, message), {}
        if request.path.endswith(":countTokens"):
            prompt = self.prompt_of(request.body)
            return 200, {"totalTokens": words(prompt), "totalBillableCharacters": len(prompt)}, {}
        return super().route(self.as_gemini(request), step)

    def prompts(self) -> list[str]:
        return [
            self.prompt_of(r.body) for r in self.requests if r.path.endswith(":generateContent")
        ]


class EntraAzureServer(AzureOpenAIServer):
    """Azure OpenAI reached with Microsoft Entra ID bearer tokens instead of an api-key."""

    def __init__(self, tokens: TokenServer) -> None:
        super().__init__()
        self.tokens = tokens

    def sent_key(self, request: Request) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    def is_authorised(self, request: Request) -> bool:
        issued = {f"access-{number}" for number in range(1, self.tokens.issued + 1)}
        return self.sent_key(request) in issued

    def check(self, request: Request) -> list[str]:
        problems = [] if "api-key" not in request.headers else ["an Entra ID call sends no api-key"]
        if not request.headers.get("authorization", "").startswith("Bearer "):
            problems.append("a bearer token is required")
        without = replace(
            request, headers={k: v for k, v in request.headers.items() if k != "authorization"}
        )
        return problems + super().check(without)


@pytest.fixture(scope="session")
def service_account_key():
    """A service account's JSON key (its RSA key made once per session) and the public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


@pytest.fixture
def google_token_server(service_account_key):
    server = GoogleTokenServer(service_account_key[1])
    yield server
    server.close()
    assert server.problems == [], "the token request was one Google would refuse"


@pytest.fixture
def vertex_server(google_token_server):
    from tests.fixtures_http import serve

    yield from serve(VertexServer(google_token_server))


@pytest.fixture
def service_account_credential(db, service_account_key, google_token_server):
    """A credential holding a service account key file whose token_uri is the local server."""
    from connectors.models import Credential

    info = {
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": "0123456789abcdef",
        "private_key": service_account_key[0],
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "token_uri": google_token_server.url,
    }
    credential = Credential(name="vertex-sa", kind=Credential.Kind.SERVICE_ACCOUNT)
    credential.set_value(json.dumps(info))
    credential.save()
    return credential


@pytest.fixture
def entra_azure_server(token_server):
    from tests.fixtures_http import serve

    yield from serve(EntraAzureServer(token_server))


@pytest.fixture(autouse=True)
def _no_cached_tokens():
    """Tokens are cached per process by token URL: a port reused by a later test's server
    must not find an earlier server's token."""
    from connectors import oauth2

    with oauth2._lock:
        oauth2._tokens.clear()
