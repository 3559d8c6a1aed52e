"""The sink before a job needs it: a private callback address is said on save, and a test
delivery goes through the real sink to a local receiver."""

import json

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from connectors.models import AuditEvent, Connector, Credential
from tests.conftest import CANARY_SECRET
from tests.test_kind_forms import form_post

pytestmark = pytest.mark.django_db


def signing_credential() -> Credential:
    credential = Credential(name="erp-signing", kind="hmac_secret")
    credential.set_value("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    credential.save()
    return credential


def shown_messages(response) -> list[tuple[str, str]]:
    return [(message.level_tag, message.message) for message in get_messages(response.wsgi_request)]


def test_a_loopback_callback_saves_with_a_warning_naming_the_setting(
    admin_client, demo_provider, settings
):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        form_post(demo_provider, sink_kind="http", sink_http__url="http://127.0.0.1:9/callback"),
    )

    assert response.status_code == 302
    assert Connector.objects.get().sink_config == {"url": "http://127.0.0.1:9/callback"}
    [(_, message)] = [m for m in shown_messages(response) if m[0] == "warning"]
    assert message == (
        "Private address: url 127.0.0.1 resolves to 127.0.0.1, so every delivery will be "
        "refused when jobs run. Allow it with OUTBOUND_ALLOWED_NETWORKS (e.g. 127.0.0.1/32) "
        "if it is intended."
    )


def test_an_allowed_network_saves_without_a_warning(admin_client, demo_provider, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    response = admin_client.post(
        reverse("admin:connectors_connector_add"),
        form_post(demo_provider, sink_kind="http", sink_http__url="http://127.0.0.1:9/callback"),
    )

    assert response.status_code == 302
    assert [m for m in shown_messages(response) if m[0] == "warning"] == []


def test_a_test_delivery_goes_through_the_signed_sink(
    admin_client, make_connector, callback_server
):
    signing_credential()
    connector = make_connector(
        sink_kind="http",
        sink_config={"url": callback_server.url, "signing_credential": "erp-signing"},
    )

    response = admin_client.post(
        reverse("admin:connectors_connector_test_delivery", args=[connector.pk])
    )

    assert response.status_code == 302
    [(headers, _, body)] = callback_server.received
    assert body["result"] == {
        "interlock_test": True,
        "message": "Interlock test delivery: not a job's result; safe to ignore.",
    }
    assert body["job_id"].startswith("test-") and headers["webhook-id"] == body["job_id"]
    assert callback_server.verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 0)
    assert shown_messages(response) == [
        ("success", f"Test delivery: delivered to {callback_server.url}: status 200")
    ]
    [event] = AuditEvent.objects.filter(action="connector.test_delivery")
    assert event.changes["delivered"] is True


def test_a_failed_test_delivery_says_why_and_leaks_no_secret(
    admin_client, make_connector, callback_server
):
    token = Credential(name="erp-token", kind="bearer")
    token.set_value(CANARY_SECRET)
    token.save()
    callback_server.script([401])
    connector = make_connector(
        sink_kind="http", sink_config={"url": callback_server.url, "credential": "erp-token"}
    )

    response = admin_client.post(
        reverse("admin:connectors_connector_test_delivery", args=[connector.pk]), follow=True
    )

    [(headers, _, _)] = callback_server.received
    assert headers["authorization"] == f"Bearer {CANARY_SECRET}"
    page = response.content.decode()
    assert "Test delivery: SinkError: callback answered HTTP 401" in page
    assert CANARY_SECRET not in page
    assert CANARY_SECRET not in json.dumps(list(AuditEvent.objects.values("changes")))


def test_a_blocked_address_is_the_test_deliverys_answer(admin_client, make_connector, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    connector = make_connector(sink_kind="http", sink_config={"url": "http://127.0.0.1:9/cb"})

    response = admin_client.post(
        reverse("admin:connectors_connector_test_delivery", args=[connector.pk]), follow=True
    )

    assert "a private or reserved address; allow it in OUTBOUND_ALLOWED_NETWORKS" in (
        response.content.decode()
    )


def test_a_sink_without_test_deliveries_says_so(admin_client, make_connector):
    connector = make_connector(sink_kind="none")

    response = admin_client.post(
        reverse("admin:connectors_connector_test_delivery", args=[connector.pk]), follow=True
    )

    assert "the none sink does not take test deliveries" in response.content.decode()


def test_the_list_says_signed_only_with_a_signing_credential(admin_client, make_connector):
    signing_credential()
    make_connector("signed", sink_kind="http", sink_config={"url": "https://erp.example/a"})
    Connector.objects.filter(slug="signed").update(
        sink_config={"url": "https://erp.example/a", "signing_credential": "erp-signing"}
    )
    make_connector("plain", sink_kind="http", sink_config={"url": "https://erp.example/b"})

    page = admin_client.get(reverse("admin:connectors_connector_changelist")).content.decode()

    assert page.count("HTTP callback, signed") == 1
    assert page.count("HTTP callback<") == 1
