"""OAuth2 client credentials (RFC 6749, section 4.4) for legacy endpoints behind an
authorization server: fetch an access token, keep it in the process until shortly before it
expires, forget it when the endpoint refuses it."""

import hashlib
import threading
import time
from dataclasses import dataclass

import httpx

from connectors import http
from connectors.errors import PipelineError

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


def access_token(
    credentials: ClientCredentials, client: httpx.Client, *, error_class=PipelineError
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


def forget(credentials: ClientCredentials) -> None:
    with _lock:
        _tokens.pop(credentials.cache_key, None)


def fetch(credentials: ClientCredentials, client: httpx.Client, error_class) -> tuple[str, float]:
    form = {
        "grant_type": "client_credentials",
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
    }
    if credentials.scope:
        form["scope"] = credentials.scope
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


def refusal(response: httpx.Response, body: dict, credentials: ClientCredentials, error_class):
    """Name the OAuth error (RFC 6749, section 5.2), never echo what we sent."""
    code = response.status_code
    reason = " ".join(str(body.get(key, "")) for key in ("error", "error_description")).strip()
    message = f"token endpoint answered HTTP {code}" + (f": {reason[:200]}" if reason else "")
    message = http.scrub(message, (credentials.client_secret,))
    transient = code in (408, 429) or code >= 500
    if code in (400, 401):
        message += " (check the client id, secret and scope)"
    return error_class(
        message, permanent=not transient, retry_after=http.retry_after_seconds(response)
    )


def json_object(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
