"""The review API: a reviewer's token (never an intake key), the queue, decisions, refusals as
JSON with their codes, and nothing secret in its answers. Each documented status also has a real
request in test_api_schema.py (REVIEW_CASES below)."""

import json
import uuid

import pytest

from connectors import review
from connectors.models import AuditEvent, Job, ReviewerToken
from tests.conftest import CANARY_SECRET, CANARY_SSN

pytestmark = pytest.mark.django_db

QUEUE = "/api/v1/reviews/"
DECISION = "/api/v1/reviews/{job_id}/"


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def token(role_user):
    return ReviewerToken.issue(role_user("Reviewer", "rita"), name="ticket tool")[1]


def decide(client, token, job_id, body):
    return client.post(
        DECISION.format(job_id=job_id), json.dumps(body), "application/json", **bearer(token)
    )


def test_the_queue_lists_held_answers_oldest_first_without_secrets(
    client, token, make_held, credential
):
    first, second = make_held(), make_held()

    response = client.get(QUEUE, **bearer(token))

    assert response.status_code == 200
    reviews = response.json()["reviews"]
    assert [item["job"] for item in reviews] == [str(first.id), str(second.id)]
    assert reviews[0]["record"] == {"text": "Invoice 12345 over 3 chairs", "ssn": "<SSN_1>"}
    assert reviews[0]["rule"] == "always" and reviews[0]["four_eyes"] is False
    assert reviews[0]["answer_digest"] == review.answer_digest(first.output)
    body = response.content.decode()
    assert CANARY_SSN not in body and CANARY_SECRET not in body
    assert "encrypted" not in body
    assert client.get(QUEUE + "?connector=other", **bearer(token)).json() == {"reviews": []}


def test_a_decision_through_the_api_is_audited_with_the_token(
    client, token, make_held, django_capture_on_commit_callbacks
):
    job = make_held()

    with django_capture_on_commit_callbacks(execute=True):
        response = decide(client, token, job.id, {"decision": "approve", "reason": "fine"})

    assert response.status_code == 200
    # Answered inside the test's transaction, before the on-commit enqueue ran.
    assert response.json() == {"job": str(job.id), "outcome": "approved", "status": "pending"}
    assert Job.objects.get().status == "queued"
    event = AuditEvent.objects.get(action="review.approved")
    assert event.actor == "rita"
    assert event.changes == {"reason": "fine", "via": f"api token {token[:12]}…"}
    again = decide(client, token, job.id, {"decision": "reject", "reason": "late"})
    assert again.status_code == 409 and again.json()["code"] == "already_decided"


def test_an_edit_through_the_api_is_checked_against_the_schema(client, token, make_held):
    job = make_held()

    stale = decide(client, token, job.id, {"decision": "approve", "seen": "0" * 16})
    assert stale.status_code == 409 and stale.json()["code"] == "review_changed"
    refused = decide(client, token, job.id, {"decision": "edit", "answer": {"decision": 3}})
    accepted = decide(client, token, job.id, {"decision": "edit", "answer": {"decision": "reject"}})

    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_answer" and refused.json()["field"] == "answer"
    assert accepted.status_code == 200 and accepted.json()["outcome"] == "edited"
    assert Job.objects.get().result == {"ai_decision": "reject", "ai_reason": None}


def test_an_intake_key_cannot_review(client, make_held, review_connector, api_key):
    job = make_held()
    intake_key = api_key(review_connector)[1]

    response = decide(client, intake_key, job.id, {"decision": "approve"})

    assert response.status_code == 401
    assert response.json()["code"] == "not_a_reviewer_token"
    assert Job.objects.get().status == "awaiting_review"


def test_a_compliance_officers_token_reads_but_cannot_decide(client, role_user, make_held):
    job = make_held()
    officer_token = ReviewerToken.issue(role_user("Compliance officer"))[1]

    assert client.get(QUEUE, **bearer(officer_token)).status_code == 200
    response = decide(client, officer_token, job.id, {"decision": "approve"})

    assert response.status_code == 403 and response.json()["code"] == "not_a_reviewer"
    assert Job.objects.get().status == "awaiting_review"


def test_a_revoked_token_or_a_user_taken_out_of_the_group_is_refused(
    client, token, make_held, django_user_model
):
    from django.utils import timezone

    job = make_held()
    rita = django_user_model.objects.get(username="rita")
    rita.groups.clear()
    assert decide(client, token, job.id, {"decision": "approve"}).status_code == 403

    ReviewerToken.objects.update(revoked_at=timezone.now())
    response = decide(client, token, job.id, {"decision": "approve"})
    assert response.status_code == 401 and response.json()["code"] == "invalid_reviewer_token"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"decision": "maybe"}, "invalid_decision"),
        ({"decision": "reject"}, "reason_required"),
        ([1, 2], "invalid_decision"),
    ],
)
def test_bad_decisions_are_clear_400s(client, token, make_held, body, code):
    job = make_held()

    response = decide(client, token, job.id, body)

    assert response.status_code == 400 and response.json()["code"] == code
    assert Job.objects.get().status == "awaiting_review"


def test_unknown_jobs_and_bad_ids_are_404(client, token):
    assert decide(client, token, uuid.uuid4(), {"decision": "approve"}).json()["code"] == (
        "review_not_found"
    )
    assert client.post("/api/v1/reviews/not-a-uuid/", **bearer(token)).status_code == 404


def test_create_reviewer_token_prints_a_token_once_for_reviewers_only(role_user, capsys):
    from django.core.management import CommandError, call_command

    role_user("Reviewer", "rita")
    role_user("Compliance officer", "olga")

    call_command("create_reviewer_token", user="rita")
    printed = capsys.readouterr().out.split()[-1]
    assert printed.startswith("ilr_")
    assert ReviewerToken.objects.get().token_hash != printed
    with pytest.raises(CommandError, match="olga may not review"):
        call_command("create_reviewer_token", user="olga")


# --- Real requests for every documented status (used by test_api_schema.py) ------------------


def held_job(make_connector, **_):
    """A held job and a reviewer's token, made the way the fixtures make them."""
    from django.contrib.auth.models import Group, User

    from tests.fixtures_review import REVIEW_SCHEMA

    connector = make_connector(
        "reviewed",
        outputs=[("decision", "ai_decision")],
        output_format="json",
        output_schema=REVIEW_SCHEMA,
        review_policy="always",
    )
    job = Job.objects.create(
        connector=connector,
        idempotency_key="held",
        status="awaiting_review",
        output={"decision": "approve"},
        result={"ai_decision": "approve"},
    )
    from django.utils import timezone

    from connectors.models import Review

    now = timezone.now()
    Review.objects.create(job=job, connector=connector, rule="always", held_at=now, deadline=now)
    user = User.objects.create_user(f"r-{uuid.uuid4().hex[:6]}", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewer"))
    return job, ReviewerToken.issue(user)[1]


def officer_token() -> str:
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(f"o-{uuid.uuid4().hex[:6]}", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance officer"))
    return ReviewerToken.issue(user)[1]


def queue_ok(client, **kwargs):
    _, token = held_job(**kwargs)
    return client.get(QUEUE, **bearer(token))


def queue_bad_limit(client, **kwargs):
    _, token = held_job(**kwargs)
    return client.get(QUEUE + "?limit=0", **bearer(token))


def queue_without_a_reviewer(client, **_):
    from django.contrib.auth.models import User

    return client.get(QUEUE, **bearer(ReviewerToken.issue(User.objects.create_user("x"))[1]))


def decision(body, *, token_of=None, job_id=None, twice=False):
    def request(client, **kwargs):
        job, token = held_job(**kwargs)
        token = token_of() if token_of else token
        url = DECISION.format(job_id=job_id or job.id)
        if twice:
            client.post(url, json.dumps(body), "application/json", **bearer(token))
        return client.post(url, json.dumps(body), "application/json", **bearer(token))

    return request


REVIEW_CASES = {
    (QUEUE, "get", 200): queue_ok,
    (QUEUE, "get", 400): queue_bad_limit,
    (QUEUE, "get", 401): lambda client, **_: client.get(QUEUE, **bearer("ilr_nope")),
    (QUEUE, "get", 403): queue_without_a_reviewer,
    (DECISION, "post", 200): decision({"decision": "approve"}),
    (DECISION, "post", 400): decision({"decision": "edit", "answer": {"decision": 1}}),
    (DECISION, "post", 401): lambda client, **_: client.post(
        DECISION.format(job_id=uuid.uuid4()), "{}", "application/json"
    ),
    (DECISION, "post", 403): decision({"decision": "approve"}, token_of=officer_token),
    (DECISION, "post", 404): decision({"decision": "approve"}, job_id=uuid.uuid4()),
    (DECISION, "post", 409): decision({"decision": "approve"}, twice=True),
}
REVIEW_REFUSALS = {(status, code) for code, status in review.REFUSALS.items()}
