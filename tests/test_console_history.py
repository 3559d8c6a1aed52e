"""The admin's dates carry seconds and the time zone; labels are plain words; an object's
History button shows its audit trail."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from connectors import audit
from connectors.models import AuditEvent, Connector, Job
from tests.test_admin import connector_form

pytestmark = pytest.mark.django_db


def test_the_job_page_shows_seconds_time_zones_and_plain_labels(admin_client, make_connector):
    connector = make_connector()
    job = Job.objects.create(
        connector=connector,
        idempotency_key="k",
        created_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        started_at=datetime(2026, 3, 4, 5, 6, 9, tzinfo=UTC),
        ai_output="ok",
    )

    page = admin_client.get(reverse("admin:connectors_job_change", args=[job.pk])).content.decode()

    assert "2026-03-04 05:06:07 UTC" in page
    assert "2026-03-04 05:06:09 UTC" in page
    assert "AI output" in page and "Ai output" not in page
    assert "AI call (ms)" in page and "Ai ms" not in page


def test_the_audit_log_lists_events_with_seconds_and_time_zone(admin_client, make_connector):
    connector = make_connector()
    audit.record("connector.disable", audit.Actor.system("test"), connector)
    event = AuditEvent.objects.get(action="connector.disable")
    AuditEvent.objects.filter(pk=event.pk).update(
        created_at=datetime(2026, 3, 4, 5, 6, 59, tzinfo=UTC)
    )

    page = admin_client.get(reverse("admin:connectors_auditevent_changelist")).content.decode()

    assert "2026-03-04 05:06:59 UTC" in page


def test_history_shows_the_objects_audit_trail_actions_included(admin_client, demo_provider):
    admin_client.post(reverse("admin:connectors_connector_add"), connector_form(demo_provider))
    connector = Connector.objects.get()
    other = Connector.objects.create(
        name="Other", slug="other", provider=demo_provider, prompt_template="x"
    )
    changelist = reverse("admin:connectors_connector_changelist")
    admin_client.post(
        changelist, {"action": "disable", "_selected_action": [str(connector.pk), str(other.pk)]}
    )

    history = admin_client.get(
        reverse("admin:connectors_connector_history", args=[connector.pk]), follow=True
    )

    assert history.status_code == 200
    shown = list(history.context["cl"].result_list)
    assert sorted(event.action for event in shown) == ["connector.create", "connector.update"]
    [disabled] = [event for event in shown if event.action == "connector.update"]
    assert disabled.changes == {"enabled": [True, False]}  # the Disable action, not a form save
    assert {event.object_id for event in shown} == {str(connector.pk)}


def test_history_of_a_credential_and_a_provider_is_their_audit_trail(
    admin_client, credential, demo_provider
):
    for admin_name, obj in (("credential", credential), ("provider", demo_provider)):
        audit.record(f"{admin_name}.rotate", audit.Actor.system("test"), obj)

        history = admin_client.get(
            reverse(f"admin:connectors_{admin_name}_history", args=[obj.pk]), follow=True
        )

        assert [event.action for event in history.context["cl"].result_list] == [
            f"{admin_name}.rotate"
        ]


def test_history_without_the_audit_permission_is_djangos_own(client, django_user_model, credential):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_credential"))
    client.force_login(user)

    response = client.get(reverse("admin:connectors_credential_history", args=[credential.pk]))

    assert response.status_code == 200
    assert "action_list" in response.context
