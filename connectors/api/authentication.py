"""API key authentication, with Standard Webhooks signatures when the key has a signing secret.

The signature covers the raw body, so it is checked here, before anything parses the body.
Replay protection is the (key, webhook-id) unique constraint, written with the jobs it brought.
A signature proves that a body was not tampered with and that a write is not replayed; a read has
neither, so a GET needs the key alone, and signature headers it does carry are still verified.
"""

import binascii
import ipaddress
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http.request import RawPostDataException
from django.utils import timezone
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connectors import crypto
from connectors.api import (
    key_cache,
    schema,  # noqa: F401  (registers the OpenAPI description)
)
from connectors.api.errors import ApiError
from connectors.models import ApiKey

LAST_USED_PRECISION = timedelta(seconds=60)
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
SIGNATURE_ERRORS = {
    "Missing required headers": (
        "signature_required",
        "This key requires Standard Webhooks headers: webhook-id, webhook-timestamp, "
        "webhook-signature.",
    ),
    "Message timestamp too old": (
        "timestamp_out_of_tolerance",
        "webhook-timestamp is more than 5 minutes in the past.",
    ),
    "Message timestamp too new": (
        "timestamp_out_of_tolerance",
        "webhook-timestamp is more than 5 minutes in the future.",
    ),
    "Invalid Signature Headers": ("invalid_signature", "webhook-timestamp is not a number."),
}


class KeyHolder:
    """The authenticated caller: a legacy system holding an API key."""

    is_authenticated = True

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key


class ApiKeyAuthentication(BaseAuthentication):
    """The key checked against its stamp first; on a view that confirms it in its write
    transaction (`confirms_key_in_transaction`), a POST is let through on the process's copy
    of the key (`request.unconfirmed_key` says what to confirm) when that copy lets it through:
    a refusal is only ever made on a stamp read now."""

    def authenticate(self, request):
        plain = presented_key(request)
        if plain is None:
            return None
        key_hash = crypto.sha256_hex(plain)
        request.unconfirmed_key = None
        if confirms_in_transaction(request) and (cached := key_cache.cached_key(key_hash)):
            api_key, unconfirmed = cached
            try:
                checked = self.checked(api_key, request, key_hash, touching=False)
            except ApiError:
                pass  # perhaps refused on an old copy: asked again below, on the stamp
            else:
                if not needs_touch(api_key):
                    request.unconfirmed_key = unconfirmed
                    # The transaction's first answer is the reused connection's check.
                    connection.health_check_done = True
                    return checked
        return self.authenticate_now(request, key_hash)

    def authenticate_now(self, request, key_hash: str):
        """The key as its stamp says now."""
        request.unconfirmed_key = None
        api_key = key_cache.active_key(key_hash)
        if api_key is None:
            raise ApiError(
                status.HTTP_401_UNAUTHORIZED,
                "invalid_api_key",
                "The API key is unknown or revoked.",
            )
        return self.checked(api_key, request, key_hash, touching=True)

    def checked(self, api_key: ApiKey, request, key_hash: str, *, touching: bool):
        check_network(api_key, request)
        if api_key.has_signing_secret and needs_signature(request):
            request.webhook_id = verify_signature(api_key, request)
        if touching:
            touch(api_key, key_hash)
        return KeyHolder(api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="interlock"'


def presented_key(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.META.get("HTTP_X_API_KEY", "").strip() or None


def check_network(api_key: ApiKey, request) -> None:
    if not api_key.allowed_networks:
        return
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        address = None
    allowed = address is not None and any(
        address in ipaddress.ip_network(cidr, strict=False) for cidr in api_key.allowed_networks
    )
    if not allowed:
        raise ApiError(
            status.HTTP_403_FORBIDDEN,
            "network_not_allowed",
            "This API key may not be used from this address.",
        )


def needs_signature(request) -> bool:
    """Writes are signed; a read is checked only when it carries signature headers."""
    is_read = request.method in ("GET", "HEAD", "OPTIONS")
    return not is_read or any(request.headers.get(name) for name in SIGNATURE_HEADERS)


def read_body(request) -> bytes:
    """The raw body; 413 beyond INTAKE_MAX_BODY_BYTES, never reading more than one byte past it."""
    http_request = request._request
    length = http_request.META.get("CONTENT_LENGTH") or ""
    if length.isascii() and length.isdigit() and int(length) > settings.INTAKE_MAX_BODY_BYTES:
        raise body_too_large()
    if not length and http_request.META.get("wsgi.input_terminated"):
        # A chunked body has no Content-Length, so Django reads it as empty; a server that
        # decodes the chunks itself (gunicorn) says so with wsgi.input_terminated.
        if not hasattr(http_request, "unsized_body"):
            http_request.unsized_body = read_unsized(http_request.META["wsgi.input"])
        return http_request.unsized_body
    try:
        return http_request.body
    except RequestDataTooBig:
        raise body_too_large() from None
    except RawPostDataException:  # already streamed by a parser
        return b""


def read_unsized(stream) -> bytes:
    """Read `stream` to its end, or refuse it as soon as it is longer than the limit."""
    limit = settings.INTAKE_MAX_BODY_BYTES
    chunks, size = [], 0
    while size <= limit:
        try:
            chunk = stream.read(limit + 1 - size)
        except Exception as error:  # the server's own errors: gunicorn's are no OSError
            raise ApiError(
                status.HTTP_400_BAD_REQUEST,
                "invalid_body",
                f"The chunked body cannot be read: {error}",
            ) from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise body_too_large()
    return b"".join(chunks)


def body_too_large() -> ApiError:
    limit = settings.INTAKE_MAX_BODY_BYTES
    return ApiError(
        status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        "body_too_large",
        f"The request body is larger than {limit} bytes.",
        limit=limit,
    )


def verify_signature(api_key: ApiKey, request) -> str:
    headers = {name: request.headers.get(name, "") for name in SIGNATURE_HEADERS}
    webhook_id = headers["webhook-id"]
    if len(webhook_id) > 255 or not webhook_id.isprintable():
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            "invalid_webhook_id",
            "webhook-id must be at most 255 printable characters.",
        )
    body = read_body(request)
    try:
        Webhook(api_key.signing_secret()).verify(body, headers, json_parse=False)
    except WebhookVerificationError as error:
        code, detail = SIGNATURE_ERRORS.get(
            str(error), ("invalid_signature", "No signature in webhook-signature matches the body.")
        )
        raise ApiError(status.HTTP_401_UNAUTHORIZED, code, detail) from None
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ApiError(
            status.HTTP_401_UNAUTHORIZED,
            "invalid_signature",
            "webhook-signature must be space-separated 'v1,<base64>' values over a UTF-8 body.",
        ) from None
    return webhook_id


def confirms_in_transaction(request) -> bool:
    view = (getattr(request, "parser_context", None) or {}).get("view")
    return request.method == "POST" and getattr(view, "confirms_key_in_transaction", False)


def needs_touch(api_key: ApiKey) -> bool:
    last = api_key.last_used_at
    return last is None or timezone.now() - last > LAST_USED_PRECISION


def touch(api_key: ApiKey, key_hash: str) -> None:
    """Keep last-used time without a write per request."""
    if needs_touch(api_key):
        now = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
        key_cache.touched(key_hash, api_key)
