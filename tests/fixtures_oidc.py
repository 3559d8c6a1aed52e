"""A local OpenID Connect provider: discovery, an authorize page that redirects back with a code,
a token endpoint that checks the client secret and PKCE and answers an RS256-signed ID token,
userinfo and JWKS. The signed-in person's claims are whatever the test sets in `user`."""

import base64
import hashlib
import html
import json
import secrets
import time
import urllib.parse

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures_http import _Server

CLIENT_ID = "interlock-console"
CLIENT_SECRET = "oidc-canary-secret-5b7d9e1f3a"
KEY_ID = "test-key-1"


class OIDCProvider(_Server):
    def __init__(self) -> None:
        super().__init__()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.user = {"sub": "u-1", "preferred_username": "olga", "groups": []}
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self.nonce_override: str | None = None  # an ID token for another sign-in
        self.echo_token_errors = False  # refuse every code, quoting the request (secret too)
        self.token_answer = None  # answer this instead of tokens

    def handle(self, handler, raw: bytes | None) -> None:
        url = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        routes = {
            "/.well-known/openid-configuration": self.discovery,
            "/authorize": self.authorize,
            "/approve": self.approve,
            "/token": self.token,
            "/userinfo": self.userinfo,
            "/jwks": self.jwks,
        }
        route = routes.get(url.path)
        if route is None:
            return self.send(handler, 404, b'{"error": "not_found"}')
        route(handler, query, dict(urllib.parse.parse_qsl((raw or b"").decode())))

    def discovery(self, handler, query, form) -> None:
        metadata = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        self.send(handler, 200, json.dumps(metadata).encode())

    def authorize(self, handler, query, form) -> None:
        """The provider's own page: who is signing in, and a button that goes back."""
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return self.send(handler, 400, b'{"error": "invalid_request"}')
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in query.items()
        )
        page = (
            "<!doctype html><title>Test identity provider</title><h1>Test identity provider</h1>"
            f"<p id='who'>Signing in as {html.escape(self.user['preferred_username'])}</p>"
            f"<form action='/approve' method='get'>{fields}"
            "<button id='approve' type='submit'>Continue</button></form>"
        )
        self.send(handler, 200, page.encode(), {"Content-Type": "text/html"})

    def approve(self, handler, query, form) -> None:
        code = secrets.token_urlsafe(16)
        self.codes[code] = dict(query)
        back = f"{query['redirect_uri']}?" + urllib.parse.urlencode(
            {"code": code, "state": query["state"]}
        )
        handler.send_response(302)
        handler.send_header("Location", back)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def token(self, handler, query, form) -> None:
        self.token_requests.append(form)
        started = self.codes.pop(form.get("code", ""), None)
        problem = ""
        if self.token_answer is not None:
            return self.send(handler, 200, json.dumps(self.token_answer).encode())
        if self.echo_token_errors:
            return self.send(handler, 400, json.dumps({"error": "invalid_grant", **form}).encode())
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            problem = "invalid_client"
        elif started is None or form.get("redirect_uri") != started["redirect_uri"]:
            problem = "invalid_grant"
        else:
            verifier = form.get("code_verifier", "").encode()
            digest = hashlib.sha256(verifier).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if challenge != started.get("code_challenge"):
                problem = "invalid_grant"
        if problem:
            return self.send(handler, 400, json.dumps({"error": problem}).encode())
        now = int(time.time())
        claims = {
            **self.user,
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce_override or started.get("nonce"),
        }
        id_token = jwt.encode(claims, self.private_key, "RS256", headers={"kid": KEY_ID})
        access_token = secrets.token_urlsafe(16)
        self.tokens[access_token] = dict(self.user)
        answer = {"access_token": access_token, "id_token": id_token, "token_type": "Bearer"}
        self.send(handler, 200, json.dumps(answer).encode())

    def userinfo(self, handler, query, form) -> None:
        token = handler.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return self.send(handler, 401, b'{"error": "invalid_token"}')
        self.send(handler, 200, json.dumps(self.tokens[token]).encode())

    def jwks(self, handler, query, form) -> None:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        keys = {"keys": [{**public, "kid": KEY_ID, "alg": "RS256", "use": "sig"}]}
        self.send(handler, 200, json.dumps(keys).encode())


ROLE_MAP = {
    "interlock-admins": ["integration_admin"],
    "auditors": ["compliance_officer"],
    "approvers": ["reviewer"],
}


@pytest.fixture
def oidc_provider(settings):
    """The provider, with the console's single sign-on pointed at it."""
    from connectors import sso

    provider = OIDCProvider()
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_PROVIDER_NAME = "Test IdP"
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_ROLE_MAP = ROLE_MAP
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "connectors.sso.RoleMappingBackend",
    ]
    sso.discovery.cache_clear()
    yield provider
    sso.discovery.cache_clear()
    provider.close()
