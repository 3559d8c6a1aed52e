"""Held jobs made directly in the database (the worker's part is tested in test_review.py), and
users in the console's roles."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from connectors import audit, crypto
from connectors.models import Job, Review
from tests.conftest import CANARY_SSN

PASSWORD = "correct-horse-battery-1"
REVIEW_SCHEMA = {
    "type": "object",
    "required": ["decision"],
    "properties": {"decision": {"enum": ["approve", "reject"]}, "reason": {"type": "string"}},
}


@pytest.fixture
def review_connector(make_connector):
    return make_connector(
        "invoices",
        inputs=[("note", "text", True), ("ssn", "ssn", False)],
        outputs=[("decision", "ai_decision"), ("reason", "ai_reason")],
        redaction=[("ssn", "tokenize")],
        prompt="Decide on {{ text }} for {{ ssn }}.",
        output_format="json",
        output_schema=REVIEW_SCHEMA,
        review_policy="always",
    )


@pytest.fixture
def make_held(review_connector):
    """A job awaiting review, as a worker leaves it; its token map holds the canary SSN."""

    def make(connector=None, *, held_at=None, **review_fields):
        connector = connector or review_connector
        now = held_at or timezone.now()
        output = {"decision": "approve", "reason": "customer <SSN_1> pays on time"}
        job = Job.objects.create(
            connector=connector,
            idempotency_key=f"held-{Job.objects.count()}",
            status=Job.Status.AWAITING_REVIEW,
            attempts=1,
            input_data={"text": "Invoice 12345 over 3 chairs", "ssn": "<SSN_1>"},
            prompt="Decide on Invoice 12345 over 3 chairs for <SSN_1>.",
            encrypted_tokens=crypto.encrypt(json.dumps({"<SSN_1>": CANARY_SSN})),
            ai_output=json.dumps(output),
            output=output,
            result={"ai_decision": "approve", "ai_reason": "customer <SSN_1> pays on time"},
            provider_name="demo",
        )
        fields = {"deadline": now + timedelta(hours=72), **review_fields}
        Review.objects.create(
            job=job, connector=connector, rule="always", held_at=now, held_output=output, **fields
        )
        audit.record("job.held", audit.Actor.system("worker"), job, connector=connector.slug)
        return job

    return make


@pytest.fixture
def role_user(django_user_model):
    """A staff user in one of the console's groups (None: in none)."""

    def make(role: str | None, username: str | None = None):
        name = username or (role or "nobody").lower().replace(" ", "-")
        user = django_user_model.objects.create_user(name, password=PASSWORD, is_staff=True)
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make
