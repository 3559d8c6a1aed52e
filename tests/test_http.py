"""The outbound client factory: allow-listed destinations, no redirects, error classes."""

import httpx
import pytest

from connectors import http
from connectors.errors import ProviderError


def test_refuses_a_private_address_that_is_not_allowed(openai_server):
    client = http.build_client(timeout=2, allowed_networks=[])

    with pytest.raises(http.BlockedDestination, match="OUTBOUND_ALLOWED_NETWORKS"):
        client.get(openai_server.base_url + "/models")

    assert openai_server.requests == []


def test_allows_a_private_address_in_the_allow_list(openai_server):
    client = http.build_client(timeout=2, allowed_networks=["127.0.0.0/8"])

    assert client.get(openai_server.base_url + "/models").status_code == 200


@pytest.mark.parametrize("host", ["169.254.169.254", "10.1.2.3", "[::1]", "0.0.0.0"])
def test_refuses_metadata_private_and_reserved_addresses(host):
    client = http.build_client(timeout=2, allowed_networks=["127.0.0.0/8"])

    with pytest.raises(http.BlockedDestination):
        client.get(f"http://{host}/latest/meta-data/")


def test_redirects_are_not_followed():
    transport = httpx.MockTransport(
        lambda request: httpx.Response(302, headers={"Location": "http://10.0.0.1/"})
    )
    with http.override_transport(transport):
        response = http.build_client(timeout=2).get("https://api.example/v1")

    assert response.status_code == 302
    with pytest.raises(ProviderError, match="redirects are not followed") as caught:
        http.classify_response(response, what="provider", error_class=ProviderError)
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("status", "headers", "permanent", "retry_after"),
    [
        (429, {"Retry-After": "30"}, False, 30.0),
        (429, {"Retry-After": "999999"}, False, 3600.0),
        (503, {}, False, None),
        (500, {}, False, None),
        (408, {}, False, None),
        (400, {}, True, None),
        (401, {}, True, None),
        (404, {}, True, None),
    ],
)
def test_classifies_answers(status, headers, permanent, retry_after):
    response = httpx.Response(status, headers=headers, text="nope")

    with pytest.raises(ProviderError) as caught:
        http.classify_response(response, what="provider", error_class=ProviderError)

    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)
    assert caught.value.message == f"provider answered HTTP {status}: nope"


def test_retry_after_as_an_http_date():
    response = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})

    assert http.retry_after_seconds(response) == 0.0  # in the past: retry now


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_success_passes(status):
    response = httpx.Response(status, text="error: this text is not an error")

    classified = http.classify_response(response, what="provider", error_class=ProviderError)

    assert classified is response
