"""The review queue in the admin: what each role may do, what the pages show and never show,
the connector form's checks of a policy, the evidence in lineage and audit log, the Preview."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from connectors import config
from connectors.models import AuditEvent, Connector, Job, Review
from tests.conftest import CANARY_SECRET, CANARY_SSN

pytestmark = pytest.mark.django_db

QUEUE = reverse("admin:connectors_review_changelist")


def review_url(job) -> str:
    return reverse("admin:connectors_review_change", args=[job.id])


def logged_in(client, user):
    client.force_login(user)
    return client


def test_the_queue_lists_waiting_answers_oldest_first_with_their_rule(
    client, role_user, make_held, make_connector
):
    now = timezone.now()
    newer = make_held(held_at=now - timedelta(minutes=5))
    older = make_held(held_at=now - timedelta(hours=3))
    other = make_connector("claims", review_policy="always")
    elsewhere = make_held(other, held_at=now - timedelta(days=2))
    decided = make_held(held_at=now - timedelta(days=3), decision="approved", decided_by="x")
    reviewer = logged_in(client, role_user("Reviewer"))

    page = reviewer.get(QUEUE).content.decode()

    positions = [page.find(str(job.id)[:8]) for job in (elsewhere, older, newer)]
    assert -1 not in positions and positions == sorted(positions)
    assert str(decided.id)[:8] not in page
    by_connector = reviewer.get(QUEUE + f"?connector__id__exact={other.id}").content.decode()
    assert str(elsewhere.id)[:8] in by_connector and str(older.id)[:8] not in by_connector
    over_an_hour = reviewer.get(QUEUE + "?age=1h").content.decode()
    assert str(older.id)[:8] in over_an_hour and str(newer.id)[:8] not in over_an_hour
    decided_page = reviewer.get(QUEUE + "?state=decided").content.decode()
    assert str(decided.id)[:8] in decided_page


def test_the_review_page_shows_the_redacted_record_and_never_a_secret(
    client, role_user, make_held, credential
):
    job = make_held()
    reviewer = logged_in(client, role_user("Reviewer"))

    page = reviewer.get(review_url(job)).content.decode()

    assert "Invoice 12345 over 3 chairs" in page and "&lt;SSN_1&gt;" in page
    assert "Held because <code>always</code>" in page
    assert 'value="approve"' in page and 'value="reject"' in page
    assert CANARY_SSN not in page and CANARY_SECRET not in page
    assert job.encrypted_tokens not in page


def test_approve_from_the_page_puts_the_job_on_its_way_once(
    client, role_user, make_held, django_capture_on_commit_callbacks
):
    job = make_held()
    reviewer = logged_in(client, role_user("Reviewer", "rita"))

    with django_capture_on_commit_callbacks(execute=True):
        response = reviewer.post(review_url(job), {"decision": "approve"})

    assert response.status_code == 302
    assert Job.objects.get().status in ("pending", "queued")
    event = AuditEvent.objects.get(action="review.approved")
    assert event.actor == "rita" and event.ip_address == "127.0.0.1"
    again = reviewer.post(review_url(job), {"decision": "approve"}).content.decode()
    assert AuditEvent.objects.filter(action="review.approved").count() == 1
    assert "This job was already decided by rita (approved)" in again
    assert 'id="approve-form"' not in again


def test_an_edit_that_breaks_the_schema_is_refused_beside_the_field(client, role_user, make_held):
    job = make_held()
    reviewer = logged_in(client, role_user("Reviewer"))

    page = reviewer.post(
        review_url(job), {"decision": "edit", "answer": '{"decision": "perhaps"}'}
    ).content.decode()

    assert 'id="answer-error"' in page
    assert "the answer does not match the schema: &#x27;perhaps&#x27; is not one of" in page
    assert "perhaps" in page.split('id="id_answer"')[1][:200]  # the reviewer's text is kept
    assert Job.objects.get().status == "awaiting_review"
    assert Job.objects.get().output["decision"] == "approve"
    not_json = reviewer.post(review_url(job), {"decision": "edit", "answer": "{oops"})
    assert "the answer is not valid JSON" in not_json.content.decode()


def test_a_rejection_needs_a_reason(client, role_user, make_held):
    job = make_held()
    reviewer = logged_in(client, role_user("Reviewer"))

    page = reviewer.post(review_url(job), {"decision": "reject", "reason": ""}).content.decode()
    assert 'id="reason-error"' in page and Job.objects.get().status == "awaiting_review"

    reviewer.post(review_url(job), {"decision": "reject", "reason": "wrong supplier"})
    job.refresh_from_db()
    assert job.status == "rejected"
    assert Review.objects.get().reason == "wrong supplier"


def test_a_compliance_officer_sees_the_queue_but_cannot_decide(client, role_user, make_held):
    job = make_held()
    officer = logged_in(client, role_user("Compliance officer"))

    assert officer.get(QUEUE).status_code == 200
    page = officer.get(review_url(job)).content.decode()
    assert "Invoice 12345" in page and 'value="approve"' not in page
    for decision in ("approve", "reject"):
        response = officer.post(review_url(job), {"decision": decision, "reason": "no"})
        assert response.status_code == 403
    assert Job.objects.get().status == "awaiting_review"
    assert not AuditEvent.objects.filter(action__startswith="review.").exists()


def test_a_reviewer_cannot_change_connectors_or_configure_anything(
    client, role_user, make_held, review_connector
):
    make_held()
    reviewer = logged_in(client, role_user("Reviewer"))

    change = reverse("admin:connectors_connector_change", args=[review_connector.id])
    assert reviewer.get(change).status_code == 403
    assert reviewer.post(change, {"name": "renamed"}).status_code == 403
    for page in ("connector_add", "credential_changelist", "apikey_add", "reviewertoken_add"):
        assert reviewer.get(reverse(f"admin:connectors_{page}")).status_code == 403, page
    assert Connector.objects.get().name == "Invoices"
    job_list = reviewer.get(reverse("admin:connectors_job_changelist")).content.decode()
    assert 'value="retry"' not in job_list


def test_staff_without_a_role_sees_no_queue(client, role_user, make_held):
    job = make_held()
    nobody = logged_in(client, role_user(None))

    assert nobody.get(QUEUE).status_code == 403
    assert nobody.post(review_url(job), {"decision": "approve"}).status_code in (403, 404)
    assert Job.objects.get().status == "awaiting_review"


def test_integration_admins_may_review_too(client, role_user, make_held):
    job = make_held()
    admin = logged_in(client, role_user("Integration admin"))

    admin.post(review_url(job), {"decision": "reject", "reason": "not ours"})

    assert Job.objects.get().status == "rejected"


def test_the_groups_hold_exactly_their_review_permissions(role_user):
    codes = {
        role: set(role_user(role).get_all_permissions())
        for role in ("Reviewer", "Integration admin", "Compliance officer")
    }

    assert codes["Reviewer"] == {
        "connectors.view_review",
        "connectors.change_review",
        "connectors.view_job",
    }
    assert {"connectors.change_review", "connectors.add_reviewertoken"} <= codes[
        "Integration admin"
    ]
    assert "connectors.view_review" in codes["Compliance officer"]
    assert "connectors.change_review" not in codes["Compliance officer"]


def test_four_eyes_on_the_page(client, role_user, make_held, review_connector):
    review_connector.review_four_eyes = True
    review_connector.save()
    job = make_held()
    first = role_user("Reviewer", "rita")
    second = role_user("Reviewer", "sam")

    logged_in(client, first).post(review_url(job), {"decision": "approve"})
    page = client.get(review_url(job)).content.decode()
    assert "approved once, by rita" in page
    same = client.post(review_url(job), {"decision": "approve"}).content.decode()
    assert "a second, different person must approve" in same
    assert Job.objects.get().status == "awaiting_review"

    logged_in(client, second).post(review_url(job), {"decision": "approve"})
    assert Job.objects.get().status in ("pending", "queued")


def test_a_condition_is_checked_when_the_connector_is_saved(admin_client, review_connector):
    url = reverse("admin:connectors_connector_change", args=[review_connector.id])
    form = admin_client.get(url).context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and not isinstance(value, dict | list)
    }
    data |= {
        "provider": review_connector.provider_id,
        "source_config": "{}",
        "sink_config": "{}",
        "output_schema": json.dumps(review_connector.output_schema),
        "fallback_providers": "[]",
        "phone_regions": "[]",
        "id_countries": "[]",
        "review_policy": "condition",
        "review_condition": 'decison == "reject"',
        **{
            f"{prefix}-{key}": value
            for prefix in ("mappings", "redaction_rules")
            for key, value in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"))
        },
    }

    response = admin_client.post(url, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["review_condition"] == [
        "the answer has no field 'decison' (names: decision, reason, answer, record, result)"
    ]
    assert Connector.objects.get().review_policy == "always"


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ('decision == "reject"', None),
        ('decision == "reject" or record["amount"] > 10000', None),
        ("reason == null", None),
        ("", "write the condition"),
        ("decision ==", "the condition ends too early"),
        ('decision = "x"', "syntax error"),
        ("record.amount > 3", 'read a field as record["amount"]'),
        ("confidence < 0.8", "the answer has no field 'confidence'"),
        ("reason > 3", "the answer's types rule it out"),
    ],
)
def test_review_conditions_are_checked_as_they_are_written(condition, problem):
    from django.core.exceptions import ValidationError

    from connectors import validation
    from tests.fixtures_review import REVIEW_SCHEMA

    try:
        validation.check_review("condition", condition, "json", REVIEW_SCHEMA)
    except ValidationError as error:
        assert problem is not None, error
        assert problem in error.message_dict["review_condition"][0]
    else:
        assert problem is None


def test_the_review_policy_travels_in_configuration_files(review_connector):
    review_connector.review_policy = "condition"
    review_connector.review_condition = 'decision == "reject"'
    review_connector.review_four_eyes = True
    review_connector.save()
    document = {"connectors": [config.export_connector(review_connector)]}
    assert document["connectors"][0]["review"] == {
        "policy": "condition",
        "condition": 'decision == "reject"',
        "four_eyes": True,
        "deadline_hours": 72,
        "after_deadline": "alert",
    }
    document["connectors"][0]["review"]["condition"] = "decison == 1"

    with pytest.raises(config.ConfigFileError) as refused:
        config.import_config(document, config.audit.Actor.system("test"))
    assert "connectors[0].review.condition: the answer has no field 'decison'" in str(refused.value)


def test_the_lineage_export_holds_every_decision(client, role_user, make_held):
    job = make_held()
    reviewer = logged_in(client, role_user("Reviewer", "rita"))
    reviewer.post(
        review_url(job),
        {"decision": "edit", "answer": '{"decision": "reject", "reason": "late"}', "reason": "x"},
    )

    lineage = reviewer.get(reverse("admin:connectors_job_lineage", args=[job.id])).json()

    evidence = lineage["review"]
    assert evidence["decision"] == "edited" and evidence["decided_by"] == "rita"
    assert evidence["held_answer"]["decision"] == "approve"
    [decision] = evidence["decisions"]
    assert decision["action"] == "review.edited" and decision["actor"] == "rita"
    assert decision["changes"]["answer"] == [
        {"decision": "approve", "reason": "customer <SSN_1> pays on time"},
        {"decision": "reject", "reason": "late"},
    ]
    assert "review.edited" in [event["action"] for event in lineage["audit_events"]]
    assert CANARY_SSN not in json.dumps(lineage)
    job_page = reviewer.get(reverse("admin:connectors_job_change", args=[job.id])).content
    assert b"Edited and approved by rita" in job_page


def test_the_audit_log_filters_by_reviewer(client, role_user, make_held, admin_client):
    first, second = make_held(), make_held()
    logged_in(client, role_user("Reviewer", "rita")).post(
        review_url(first), {"decision": "reject", "reason": "dup"}
    )
    logged_in(client, role_user("Reviewer", "sam")).post(
        review_url(second), {"decision": "approve"}
    )

    response = admin_client.get(
        reverse("admin:connectors_auditevent_changelist") + "?reviewer=rita"
    )

    shown = [(event.action, event.actor) for event in response.context["cl"].result_list]
    assert shown == [("review.rejected", "rita")]
    assert "?reviewer=sam" in response.content.decode()  # the filter lists each reviewer


def test_preview_says_whether_the_record_would_be_held(admin_client, review_connector):
    review_connector.review_policy = "condition"
    review_connector.review_condition = 'decision == "reject"'
    review_connector.save()
    url = reverse("admin:connectors_connector_preview", args=[review_connector.id])
    sample = json.dumps({"note": "3 chairs"})

    unknown = admin_client.post(url, {"sample": sample, "preview": "1"}).content.decode()
    held = admin_client.post(
        url, {"sample": sample, "sample_answer": '{"decision": "reject"}', "preview": "1"}
    ).content.decode()
    passed = admin_client.post(
        url, {"sample": sample, "sample_answer": '{"decision": "approve"}', "preview": "1"}
    ).content.decode()

    assert "depends on the AI&#x27;s answer" in unknown
    assert "This record would be held for review: decision == &quot;reject&quot;" in held
    assert "This record would not be held for review" in passed
    assert not Job.objects.exists()


def test_approving_an_answer_edited_since_the_page_was_opened_is_refused(
    client, role_user, make_held, review_connector
):
    from connectors import review

    review_connector.review_four_eyes = True
    review_connector.save()
    job = make_held()
    seen_before = review.answer_digest(Job.objects.get().output)
    logged_in(client, role_user("Reviewer", "rita")).post(
        review_url(job),
        {"decision": "edit", "answer": '{"decision": "reject", "reason": "dup"}'},
    )

    stale = logged_in(client, role_user("Reviewer", "sam")).post(
        review_url(job), {"decision": "approve", "seen": seen_before}
    )

    assert "rita edited the answer since you opened it" in stale.content.decode()
    assert Job.objects.get().status == "awaiting_review"
    fresh = client.get(review_url(job)).content.decode()
    digest = review.answer_digest(Job.objects.get().output)
    assert f'name="seen" value="{digest}"' in fresh
    client.post(review_url(job), {"decision": "approve", "seen": digest})
    assert Job.objects.get().status in ("pending", "queued")
    assert AuditEvent.objects.get(action="review.approved").changes == {
        "via": "admin",
        "first_approved_by": "rita",
    }
