"""Each process keeps its connectors' intake plans (input mappings, redaction rules), keyed by
the connector's update stamp (`Connector.updated_at`, read with the API key on every request).

Whatever changes a mapping or a rule moves the stamp after the change (signals here for model
saves and deletes; `changed()` for the bulk writes of a config import), so the next request on
every process reads the new stamp and loads the plan again: an edit takes effect at once.
A global rule moves every connector's stamp. The connector's own fields (prompt, regions) are
never cached: the plan is rebuilt around the row this request loaded.
"""

import threading
from dataclasses import replace

from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from connectors import pipeline
from connectors.models import Connector, FieldMapping, RedactionRule

_lock = threading.Lock()
_plans: dict[int, tuple[object, pipeline.IntakePlan]] = {}  # connector id: (stamp, plan)


def plan_for(connector: Connector) -> pipeline.IntakePlan:
    """The connector's intake plan, loaded once per update stamp."""
    stamp = connector.updated_at
    cached = _plans.get(connector.pk)
    if cached is not None and cached[0] == stamp:
        plan = cached[1]
        return replace(plan, connector=connector, prompt_template=connector.prompt_template)
    plan = pipeline.load_intake_plan(connector)
    with _lock:
        _plans[connector.pk] = (stamp, plan)
    return plan


def changed(connector_id: int | None) -> None:
    """Move the stamp of the connector whose mappings or rules changed (None: a global rule,
    every connector's)."""
    connectors = Connector.objects.all()
    if connector_id is not None:
        connectors = connectors.filter(pk=connector_id)
    connectors.update(updated_at=timezone.now())


def _on_change(sender, instance, **kwargs) -> None:
    if sender is FieldMapping or instance.connector_id is not None:
        changed(instance.connector_id)
    else:
        changed(None)


def connect() -> None:
    for model in (FieldMapping, RedactionRule):
        post_save.connect(_on_change, sender=model, dispatch_uid=f"intake-plan-{model.__name__}")
        post_delete.connect(_on_change, sender=model, dispatch_uid=f"intake-del-{model.__name__}")
