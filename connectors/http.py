"""The one outbound HTTP client factory: explicit timeouts, no redirects, no surprise destinations.

Legacy targets often live on private networks, and an AI base URL typed by an admin must not be
a way to reach internal services: destinations that resolve to private, loopback, link-local or
reserved addresses are refused unless an operator listed them in OUTBOUND_ALLOWED_NETWORKS.
"""

import contextlib
import email.utils
import ipaddress
import socket
import time
from collections.abc import Iterator

import httpx
from django.conf import settings

from connectors.errors import PipelineError

_override_transport: httpx.BaseTransport | None = None


class BlockedDestination(httpx.TransportError):
    """The destination resolves to an address the operator did not allow."""


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


class GuardedTransport(httpx.HTTPTransport):
    """Checks every resolved address of the host before connecting."""

    def __init__(self, allowed_networks: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.allowed = [ipaddress.ip_network(network, strict=False) for network in allowed_networks]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.check_destination(request.url.host, request.url.port or 443)
        return super().handle_request(request)

    def check_destination(self, host: str, port: int) -> None:
        try:
            addresses = {ipaddress.ip_address(host.strip("[]"))}
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
            except socket.gaierror as error:
                raise httpx.ConnectError(f"cannot resolve {host}: {error.strerror}") from None
            addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
        for address in addresses:
            if is_public(address) or any(address in network for network in self.allowed):
                continue
            blocked = BlockedDestination(
                f"{host} resolves to {address}, a private or reserved address; "
                "allow it in OUTBOUND_ALLOWED_NETWORKS if this destination is intended"
            )
            blocked.address = str(address)
            raise blocked


def blocked_address(url: str) -> str | None:
    """The private or reserved address a request to url would be refused for, else None; a
    host that does not resolve now is not reported (it may resolve where the worker runs)."""
    parts = httpx.URL(url)
    guard = GuardedTransport(list(settings.OUTBOUND_ALLOWED_NETWORKS))
    try:
        guard.check_destination(parts.host, parts.port or 443)
    except BlockedDestination as error:
        return error.address
    except httpx.ConnectError:
        return None
    return None


def build_client(*, timeout: float, allowed_networks: list[str] | None = None) -> httpx.Client:
    if allowed_networks is None:
        allowed_networks = list(settings.OUTBOUND_ALLOWED_NETWORKS)
    transport = _override_transport or GuardedTransport(allowed_networks)
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=False,
        transport=transport,
        headers={"User-Agent": "Interlock/0.1"},
    )


@contextlib.contextmanager
def override_transport(transport: httpx.BaseTransport) -> Iterator[None]:
    """For tests: every client built inside the block uses this transport (e.g. MockTransport)."""
    global _override_transport
    previous, _override_transport = _override_transport, transport
    try:
        yield
    finally:
        _override_transport = previous


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), 3600.0)


def classify_response(
    response: httpx.Response, *, what: str, error_class=PipelineError, secrets=()
) -> httpx.Response:
    """The response if it is a 2xx; else a transient error for 408/429/5xx, a permanent one for
    the rest.

    The message quotes the start of the body, minus `secrets`: servers echo the key they
    refused ("Incorrect API key provided: sk-…"), and the message is shown in the admin."""
    code = response.status_code
    if 200 <= code < 300:
        return response
    body = scrub(" ".join(response.text[:200].split()), secrets)
    message = f"{what} answered HTTP {code}" + (f": {body}" if body else "")
    if 300 <= code < 400:
        raise error_class(
            f"{what} answered HTTP {code} (redirects are not followed)", permanent=True
        )
    if code in (408, 429) or code >= 500:
        raise error_class(message, permanent=False, retry_after=retry_after_seconds(response))
    raise error_class(message, permanent=True)


def scrub(text: str, secrets) -> str:
    """`text` without any of `secrets` (servers echo the key they refused)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def describe_transport_error(error: httpx.HTTPError) -> str:
    if isinstance(error, BlockedDestination):
        return str(error)
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect: {error}"
    return f"{type(error).__name__}: {error}"


def transport_failure(error: httpx.HTTPError, *, what: str, error_class=PipelineError):
    """The pipeline error for a failed exchange: blocked is permanent, the rest transient."""
    return error_class(
        f"{what}: {describe_transport_error(error)}",
        permanent=isinstance(error, BlockedDestination),
    )
