"""The review queue in a real headless Chromium, with a real RQ worker, Redis and a local AI:
held records are approved, edited (a schema violation refused, then fixed) and rejected, each
written back once; two reviewers racing act once. Screenshots for the README."""

import json

import httpx
import pytest

from connectors.models import ApiKey, AuditEvent, Credential, Job
from tests.conftest import CANARY_SSN
from tests.test_browser import PASSWORD, browser, log_in, page, shot  # noqa: F401
from tests.test_review import SCHEMA, settle

pytestmark = pytest.mark.django_db(transaction=True)
CONDITION = 'decision == "reject" or confidence < 0.8'


@pytest.fixture
def reviewed(make_connector, openai_provider, callback_server, django_user_model):
    from django.contrib.auth.models import Group

    callback = Credential(name="erp-token", kind=Credential.Kind.BEARER)
    callback.set_value("erp-bearer-token-1234")
    callback.save()
    connector = make_connector(
        "invoices",
        provider=openai_provider,
        inputs=[("note", "text", True), ("ssn", "ssn", False)],
        outputs=[("decision", "ai_decision"), ("reason", "ai_reason")],
        redaction=[("ssn", "tokenize")],
        prompt="Decide on {{ text }} for customer {{ ssn }}. Answer JSON.",
        output_format="json",
        output_schema=SCHEMA,
        sink_kind="http",
        sink_config={"url": callback_server.url, "credential": "erp-token"},
        review_policy="condition",
        review_condition=CONDITION,
    )
    for name in ("rita", "sam"):
        user = django_user_model.objects.create_user(name, password=PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name="Reviewer"))
    return connector


def send(live_server, key: str, note: str) -> None:
    answer = httpx.post(
        f"{live_server.url}/api/v1/connectors/invoices/records/",
        headers={"Authorization": f"Bearer {key}"},
        json={"note": note, "ssn": CANARY_SSN},
    )
    assert answer.status_code == 202, answer.text


def test_a_reviewer_approves_edits_and_rejects_held_answers(
    page,  # noqa: F811
    live_server,
    reviewed,
    openai_server,
    callback_server,
):
    key = ApiKey.issue(reviewed)[1]
    replies = iter(
        [
            {"decision": "approve", "confidence": 0.62, "reason": "customer <SSN_1> is known"},
            {"decision": "reject", "confidence": 0.9, "reason": "amount above the PO"},
            {"decision": "approve", "confidence": 0.4, "reason": "unclear supplier"},
            {"decision": "approve", "confidence": 0.97, "reason": "matches the PO"},
        ]
    )
    openai_server.responder = lambda body: json.dumps(next(replies))
    for note in ("Invoice 12345: 3 chairs", "Invoice 12346: 40 desks", "Invoice 12347: 1 lamp"):
        send(live_server, key, note)
        settle()
    send(live_server, key, "Invoice 12348: 2 shelves")  # sure and approving: not held
    settle()
    assert len(callback_server.received) == 1
    held = list(Job.objects.filter(status="awaiting_review").order_by("created_at"))
    assert len(held) == 3

    log_in(page, live_server, "rita")
    page.goto(f"{live_server.url}/admin/connectors/review/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3
    assert str(held[0].id)[:8] in rows.nth(0).inner_text()  # oldest first
    assert CONDITION in page.inner_text("#result_list")
    assert CANARY_SSN not in page.content()
    shot(page, "review-queue")

    # Approve the first as it is.
    page.click(f"text={str(held[0].id)[:8]}")
    assert "Held because" in page.inner_text("#review-rule")
    assert "<SSN_1>" in page.inner_text("#review-record")
    assert CANARY_SSN not in page.content()
    shot(page, "review-page")
    page.click("#approve")
    assert "approved; it is written back now" in page.inner_text(".messagelist")

    # Edit the second: a value the schema does not allow is refused beside the field.
    page.goto(f"{live_server.url}/admin/connectors/review/{held[1].id}/change/")
    page.fill("#id_answer", json.dumps({"decision": "hold", "confidence": 1}))
    page.click("#edit")
    assert "'hold' is not one of" in page.inner_text("#answer-error")
    assert Job.objects.get(id=held[1].id).status == "awaiting_review"
    fixed = {"decision": "approve", "confidence": 1, "reason": "PO 7781 was amended"}
    page.fill("#id_answer", json.dumps(fixed))
    page.click("#edit")
    assert "edited; it is written back now" in page.inner_text(".messagelist")

    # Reject the third, with a reason.
    page.goto(f"{live_server.url}/admin/connectors/review/{held[2].id}/change/")
    page.fill("#id_reason", "unknown supplier")
    page.click("#reject")
    assert "rejected" in page.inner_text(".messagelist")
    assert page.locator("#result_list tbody tr").count() == 0  # the queue is empty

    settle()
    delivered = [payload["job_id"] for _, _, payload in callback_server.received]
    assert sorted(delivered[1:]) == sorted([str(held[0].id), str(held[1].id)])
    assert len(set(delivered)) == len(delivered) == 3  # each written back exactly once
    [edited] = [p for _, _, p in callback_server.received if p["job_id"] == str(held[1].id)]
    assert edited["result"] == {"ai_decision": "approve", "ai_reason": "PO 7781 was amended"}
    assert Job.objects.get(id=held[2].id).status == "rejected"
    actions = sorted(AuditEvent.objects.filter(actor="rita").values_list("action", flat=True))
    assert [a for a in actions if a.startswith("review.")] == [
        "review.approved",
        "review.edited",
        "review.rejected",
    ]


def test_two_reviewers_racing_in_the_browser_decide_once(
    browser,  # noqa: F811
    live_server,
    reviewed,
    openai_server,
    callback_server,
):
    key = ApiKey.issue(reviewed)[1]
    openai_server.reply(json.dumps({"decision": "reject", "confidence": 0.9}))
    send(live_server, key, "Invoice 12349: 9 chairs")
    settle()
    job = Job.objects.get(status="awaiting_review")
    pages = []
    for name in ("rita", "sam"):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        reviewer = context.new_page()
        reviewer.set_default_timeout(15_000)
        log_in(reviewer, live_server, name)
        reviewer.goto(f"{live_server.url}/admin/connectors/review/{job.id}/change/")
        pages.append(reviewer)
    pages[1].fill("#id_reason", "not ours")

    pages[0].click("#approve", no_wait_after=True)
    pages[1].click("#reject", no_wait_after=True)
    for reviewer in pages:
        reviewer.wait_for_load_state()
        reviewer.wait_for_selector(".messagelist, #review-error")
    said = [reviewer.inner_text("#content") for reviewer in pages]
    settle()

    assert sum("already decided" in text for text in said) == 1
    assert AuditEvent.objects.filter(action__startswith="review.").count() == 1
    status = Job.objects.get(id=job.id).status
    assert status in ("succeeded", "rejected")
    assert len(callback_server.received) == (1 if status == "succeeded" else 0)
    for reviewer in pages:
        reviewer.context.close()
