"""row_updates.update_each stores what Django's update() stores, value by value: the finishing
fields of every kind of outcome (sums in SQL included) and the attempt rows they close."""

from decimal import Decimal

import pytest
from django.db.models import F
from django.forms.models import model_to_dict
from django.utils import timezone

from connectors import lifecycle, row_updates
from connectors.budgets import BudgetExhausted
from connectors.errors import OutputError, ProviderError
from connectors.models import Job, JobAttempt
from connectors.work import Answer, Outcome, WriteBack, WriteOutcome

pytestmark = pytest.mark.django_db

Status = Job.Status
# Told apart by the twins, or set by the database when the row is made.
OWN_FIELDS = {"id", "idempotency_key", "created_at", "updated_at"}


@pytest.fixture
def twins(make_connector, demo_provider):
    """Two claimed jobs alike in everything but their ids."""
    demo_provider.price_per_1m_input = "1000"
    demo_provider.price_per_1m_output = "2000"
    demo_provider.save()
    connector = make_connector("twins", max_attempts=3)
    enqueued_at = timezone.now()  # the same queue wait for both
    made = [
        Job.objects.create(
            connector=connector,
            idempotency_key=f"twin-{n}",
            input_data={"text": "x"},
            prompt="Classify: x",
            tokens_in=7,
            cost=Decimal("0.25"),
            enqueued_at=enqueued_at,
        )
        for n in range(2)
    ]
    return lifecycle.claim([str(job.id) for job in made], worker="w1")


def outcome(job: Job, *, error=None, held: str = "") -> Outcome:
    return Outcome(
        job_id=str(job.id),
        answer=Answer(
            text='{"ok": "é"}',
            provider="demo",
            model="m-1",
            output={"ok": "é"},
            tokens_in=120,
            tokens_out=45,
            ms=12,
        ),
        result={"ok": "é"},
        token_report={"PERSON": {"restored": 1}},
        write_back=WriteBack(written=WriteOutcome("erp", "200", "ok"), ms=3),
        error=error,
        traceback="Traceback: x" if error else "",
        held=held,
    )


def stored(model, pk) -> dict:
    row = model_to_dict(model.objects.get(pk=pk))
    return {name: value for name, value in row.items() if name not in OWN_FIELDS}


@pytest.mark.parametrize(
    ("error", "held"),
    [
        (None, ""),
        (None, "always"),
        (ProviderError("provider answered HTTP 503"), ""),
        (ProviderError("provider answered HTTP 401", permanent=True), ""),
        (OutputError("not JSON"), ""),
        (BudgetExhausted("the day budget is spent"), ""),
    ],
)
def test_a_finish_stores_what_update_stores(twins, error, held):
    general, shortcut = twins
    now = timezone.now()
    status, _, fields = lifecycle._transition(
        general, outcome(general, error=error, held=held), now
    )
    _, _, same = lifecycle._transition(shortcut, outcome(shortcut, error=error, held=held), now)
    assert any(hasattr(value, "resolve_expression") for value in fields.values())

    Job.objects.filter(id=general.id).update(status=status, **fields)
    row_updates.update_each(Job, ("id", "status"), [((shortcut.id, Status.RUNNING), same)])
    row_updates.update_each(Job, ("id",), [((shortcut.id,), {"status": status})])

    assert stored(Job, shortcut.id) == stored(Job, general.id)
    assert stored(Job, general.id)["status"] == status


def test_closing_attempts_stores_what_update_stores(twins):
    general, shortcut = twins
    now = timezone.now()
    data = lifecycle._attempt_data(general, outcome(general), now)

    JobAttempt.objects.filter(job=general, number=general.attempts).update(**data)
    lifecycle._close_attempts(
        [(shortcut, lifecycle._attempt_data(shortcut, outcome(shortcut), now))]
    )

    [general_row] = JobAttempt.objects.filter(job=general).values()
    [shortcut_row] = JobAttempt.objects.filter(job=shortcut).values()
    different = {"id", "job_id"}
    assert {k: v for k, v in shortcut_row.items() if k not in different} == {
        k: v for k, v in general_row.items() if k not in different
    }
    assert shortcut_row["outcome"] == JobAttempt.Outcome.SUCCEEDED


def test_rows_whose_keys_do_not_match_are_left_alone(twins):
    first, second = twins
    add_five = {"tokens_in": F("tokens_in") + 5}

    row_updates.update_each(
        Job, ("id", "attempts"), [((first.id, 2), add_five), ((second.id, 1), add_five)]
    )

    assert Job.objects.get(id=first.id).tokens_in == 7  # claimed once: attempts is 1, not 2
    assert Job.objects.get(id=second.id).tokens_in == 12


def test_a_finish_of_several_jobs_stores_each_its_own_values(twins):
    first, second = twins
    results = [
        (first, outcome(first)),
        (second, outcome(second, error=ProviderError("provider answered HTTP 503"))),
    ]

    assert lifecycle.finish_many(results) == 2

    assert Job.objects.get(id=first.id).status == Status.SUCCEEDED
    failed = Job.objects.get(id=second.id)
    assert (failed.status, failed.error_code, failed.tokens_in) == (
        Status.FAILED,
        "provider_error",
        127,
    )
