"""OAuth2 access tokens: client credentials (RFC 6749, section 4.4; legacy endpoints behind an
authorization server, Microsoft Entra ID) and the JWT bearer grant with a service account's
private key (RFC 7523; Google Vertex AI). Fetch a token, keep it in the process until shortly
before it expires, forget it when the endpoint refuses it."""

import base64
import functools
import hashlib
import json
import threading
import time
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors import http
from connectors.errors import ConfigError, PipelineError

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 3600  # the most Google accepts

REFRESH_EARLY_SECONDS = 30
DEFAULT_LIFETIME_SECONDS = 300  # when the server does not say (expires_in is optional)

_tokens: dict[tuple, tuple[str, float]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ClientCredentials:
    token_url: str
    client_id: str
    client_secret: str
    scope: str = ""

    def __repr__(self) -> str:  # never the secret, even in a traceback
        return f"ClientCredentials({self.token_url!r}, {self.client_id!r})"

    @property
    def cache_key(self) -> tuple:
        secret = hashlib.sha256(self.client_secret.encode()).hexdigest()
        return (self.token_url, self.client_id, self.scope, secret)


@dataclass(frozen=True)
class ServiceAccount:
    """A service account's key (Google's JSON key file): who it is, its RSA key, where to ask."""

    client_email: str
    private_key: str
    token_url: str
    scope: str
    private_key_id: str = ""

    def __repr__(self) -> str:  # never the key, even in a traceback
        return f"ServiceAccount({self.client_email!r})"

    @property
    def cache_key(self) -> tuple:
        secret = hashlib.sha256(self.private_key.encode()).hexdigest()
        return (self.token_url, self.client_email, self.scope, secret)

    @property
    def client_secret(self) -> str:  # what a refusal is scrubbed of
        return self.private_key

    @classmethod
    def from_json(cls, value: str | None, scope: str) -> "ServiceAccount":
        """The key file's fields; ConfigError (quoting none of it) if it is not one."""
        try:
            info = json.loads(value or "")
        except ValueError:
            info = None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ConfigError(
                "the credential is not a service account key: store the JSON key file "
                '(type "service_account") as it was downloaded'
            )
        missing = [key for key in ("client_email", "private_key") if not info.get(key)]
        if missing:
            raise ConfigError(f"the service account key has no {', '.join(missing)}")
        account = cls(
            client_email=str(info["client_email"]),
            private_key=str(info["private_key"]),
            token_url=str(info.get("token_uri") or "https://oauth2.googleapis.com/token"),
            scope=scope,
            private_key_id=str(info.get("private_key_id") or ""),
        )
        account.signing_key()  # a key that cannot sign is refused now, not at the first call
        return account

    def signing_key(self) -> rsa.RSAPrivateKey:
        return signing_key(self.private_key)

    def assertion(self, now: float) -> str:
        """The signed JWT (RS256) that asks for a token: RFC 7523, section 2.1."""
        header = {"alg": "RS256", "typ": "JWT"}
        if self.private_key_id:
            header["kid"] = self.private_key_id
        claims = {
            "iss": self.client_email,
            "scope": self.scope,
            "aud": self.token_url,
            "iat": int(now),
            "exp": int(now) + ASSERTION_LIFETIME_SECONDS,
        }
        signing_input = f"{_b64(header)}.{_b64(claims)}".encode()
        signature = self.signing_key().sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return signing_input.decode() + "." + _b64url(signature)


@functools.lru_cache(maxsize=16)
def signing_key(pem: str) -> rsa.RSAPrivateKey:
    """The RSA key of a PEM text, loaded once per process (loading checks it: milliseconds)."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError("the service account's private_key is not a PEM key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("the service account's private_key is not an RSA key")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64(value: dict) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def access_token(
    credentials: "ClientCredentials | ServiceAccount",
    client: httpx.Client,
    *,
    error_class=PipelineError,
) -> str:
    with _lock:
        token, valid_until = _tokens.get(credentials.cache_key, ("", 0.0))
    if token and time.monotonic() < valid_until:
        return token
    token, lifetime = fetch(credentials, client, error_class)
    with _lock:
        _tokens[credentials.cache_key] = (
            token,
            time.monotonic() + max(lifetime - REFRESH_EARLY_SECONDS, 1.0),
        )
    return token


def forget(credentials: "ClientCredentials | ServiceAccount") -> None:
    with _lock:
        _tokens.pop(credentials.cache_key, None)


def grant(credentials: "ClientCredentials | ServiceAccount") -> dict[str, str]:
    """The token request's form for the credentials' grant."""
    if isinstance(credentials, ServiceAccount):
        return {"grant_type": JWT_BEARER, "assertion": credentials.assertion(time.time())}
    form = {
        "grant_type": "client_credentials",
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
    }
    if credentials.scope:
        form["scope"] = credentials.scope
    return form


def fetch(credentials, client: httpx.Client, error_class) -> tuple[str, float]:
    form = grant(credentials)
    try:
        response = client.post(
            credentials.token_url, data=form, headers={"Accept": "application/json"}
        )
    except httpx.HTTPError as error:
        raise http.transport_failure(
            error, what="token endpoint", error_class=error_class
        ) from None
    body = json_object(response)
    if response.status_code != 200:
        raise refusal(response, body, credentials, error_class)
    token, lifetime = body.get("access_token"), body.get("expires_in", DEFAULT_LIFETIME_SECONDS)
    if not isinstance(token, str) or not token:
        raise error_class("token endpoint answered without an access_token", permanent=False)
    if not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_LIFETIME_SECONDS
    return token, float(lifetime)


def refusal(response: httpx.Response, body: dict, credentials, error_class):
    """Name the OAuth error (RFC 6749, section 5.2), never echo what we sent."""
    code = response.status_code
    reason = " ".join(str(body.get(key, "")) for key in ("error", "error_description"))
    # Scrubbed before it is trimmed and shortened: either would leave most of a quoted secret.
    reason = http.scrub(reason, (credentials.client_secret,)).strip()
    message = f"token endpoint answered HTTP {code}" + (f": {reason[:200]}" if reason else "")
    transient = code in (408, 429) or code >= 500
    if code in (400, 401):
        message += (
            " (check the service account, its key and its roles)"
            if isinstance(credentials, ServiceAccount)
            else " (check the client id, secret and scope)"
        )
    return error_class(
        message, permanent=not transient, retry_after=http.retry_after_seconds(response)
    )


def json_object(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
