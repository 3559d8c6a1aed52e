"""Configuration as code: the whole setup as a JSON/YAML document, and back.

Export never contains a secret: credentials appear by name with the environment variable that
holds their value on import (`value_env`). Import is idempotent by name/slug, validated in full
before anything is written, applied in one transaction, and audited with a diff per object.
"""

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction

from connectors import audit, budget_config, intake_plans, prices, validation
from connectors.models import (
    Connector,
    Credential,
    FieldMapping,
    Provider,
    RedactionRule,
    validate_record_path,
)
from connectors.sinks import SINKS
from connectors.sources import SOURCES

VERSION = 1


class ConfigFileError(Exception):
    """The file cannot be imported; the message lists every problem with its location."""


# --- Export --------------------------------------------------------------------------------


def export_config() -> dict[str, Any]:
    return {
        "version": VERSION,
        "credentials": [export_credential(c) for c in Credential.objects.order_by("name")],
        "providers": [
            export_provider(p)
            for p in Provider.objects.select_related("credential").order_by("name")
        ],
        "redaction": [
            export_rule(rule) for rule in RedactionRule.objects.filter(connector__isnull=True)
        ],
        "connectors": [
            export_connector(c)
            for c in Connector.objects.select_related("provider").order_by("slug")
        ],
    }


def dump(document: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def load(text: str) -> dict:
    """Parse JSON or YAML (JSON is YAML, but its errors are clearer from the JSON parser)."""
    try:
        document = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigFileError(f"the file is not valid JSON or YAML: {error}") from None
    if not isinstance(document, dict):
        raise ConfigFileError("the file must hold a mapping with credentials/providers/connectors")
    return document


def env_name(credential_name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", credential_name.upper()).strip("_")


def export_credential(credential: Credential) -> dict:
    return {
        "name": credential.name,
        "kind": credential.kind,
        "value_env": env_name(credential.name),
    }


def export_provider(provider: Provider) -> dict:
    return {
        "name": provider.name,
        "kind": provider.kind,
        "base_url": provider.base_url,
        "model": provider.model,
        "credential": provider.credential.name if provider.credential else None,
        "timeout_seconds": provider.timeout_seconds,
        "max_concurrency": provider.max_concurrency,
        "requests_per_minute": provider.requests_per_minute,
        "tokens_per_minute": provider.tokens_per_minute,
        "parameters": provider.parameters,
        "settings": provider.settings,
        **prices.exported(provider),
    }


def export_rule(rule: RedactionRule) -> dict:
    exported = {"detector": rule.detector, "action": rule.action}
    for key, value in (
        ("name", rule.name),
        ("pattern", rule.pattern),
        ("field", rule.field_name),
    ):
        if value:
            exported[key] = value
    if not rule.is_enabled:
        exported["enabled"] = False
    return exported


def export_mapping(item: FieldMapping) -> dict:
    exported = {"from": item.source_path, "to": item.target_name}
    if item.transform:
        exported["transform"] = item.transform
    if item.is_required:
        exported["required"] = True
    return exported


def exported_plugin(registry, kind: str, config: dict) -> dict:
    """A source or sink as the file holds it: its kind, then its settings in declared order."""
    settings = registry.get(kind).exported(config) if kind in registry else config
    return {"kind": kind, **settings}


def export_connector(connector: Connector) -> dict:
    mappings = list(connector.mappings.all())
    return {
        "slug": connector.slug,
        "name": connector.name,
        "enabled": connector.is_enabled,
        "source": exported_plugin(SOURCES, connector.source_kind, connector.source_config),
        "provider": connector.provider.name,
        **(
            {"fallback_providers": connector.fallback_providers}
            if connector.fallback_providers
            else {}
        ),
        "input_mapping": [export_mapping(m) for m in mappings if m.direction == "input"],
        "redaction": [export_rule(rule) for rule in connector.redaction_rules.all()],
        "prompt": connector.prompt_template,
        "output": {
            "format": connector.output_format,
            "schema": connector.output_schema,
            "pii_in_answer": connector.answer_pii,
        },
        "output_mapping": [export_mapping(m) for m in mappings if m.direction == "output"],
        "sink": exported_plugin(SINKS, connector.sink_kind, connector.sink_config),
        **export_review(connector),
        "max_attempts": connector.max_attempts,
        "batch_size": connector.batch_size,
        "poll_interval_seconds": connector.poll_interval_seconds,
        "retention_days": connector.retention_days,
        **{
            key: getattr(connector, key)
            for key in ("phone_regions", "id_countries", "source_reference_field")
            if getattr(connector, key)
        },
        **({"budgets": budgets} if (budgets := budget_config.exported(connector)) else {}),
    }


def export_review(connector: Connector) -> dict:
    """The review policy; absent while it is `never`, so older files stay as they were."""
    if connector.review_policy == Connector.ReviewPolicy.NEVER:
        return {}
    review = {"policy": connector.review_policy}
    if connector.review_condition:
        review["condition"] = connector.review_condition
    review |= {
        "four_eyes": connector.review_four_eyes,
        "deadline_hours": connector.review_deadline_hours,
        "after_deadline": connector.review_deadline_action,
    }
    return {"review": review}


REVIEW_FIELDS = {
    "policy": "review_policy",
    "condition": "review_condition",
    "four_eyes": "review_four_eyes",
    "deadline_hours": "review_deadline_hours",
    "after_deadline": "review_deadline_action",
}


# --- Import --------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged"
        )


class _Problems:
    """Collects every error with its location, so one run reports them all."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, where: str, error: ValidationError | str) -> None:
        if isinstance(error, ValidationError):
            if hasattr(error, "error_dict"):
                for name, errors in error.message_dict.items():
                    self.messages.extend(f"{where}.{name}: {message}" for message in errors)
                return
            error = "; ".join(error.messages)
        self.messages.append(f"{where}: {error}")

    def raise_if_any(self) -> None:
        if self.messages:
            raise ConfigFileError("\n".join(self.messages))


def import_config(document: dict, actor: audit.Actor, environ=None) -> ImportSummary:
    """Validate the whole document, then create or update by name/slug in one transaction."""
    environ = os.environ if environ is None else environ
    problems = _Problems()
    sections = {}
    for section in ("credentials", "providers", "redaction", "connectors"):
        items = document.get(section) or []
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            problems.add(section, "must be a list of mappings")
            items = []
        sections[section] = items
    problems.raise_if_any()

    credential_names = set(Credential.objects.values_list("name", flat=True))
    credential_names |= {item.get("name") for item in sections["credentials"]}
    provider_names = set(Provider.objects.values_list("name", flat=True))
    provider_names |= {item.get("name") for item in sections["providers"]}
    for index, item in enumerate(sections["credentials"]):
        _check_credential(item, environ, problems, f"credentials[{index}]")
    for index, item in enumerate(sections["providers"]):
        _check_provider(item, credential_names, problems, f"providers[{index}]")
    for index, item in enumerate(sections["redaction"]):
        _check_rule(item, problems, f"redaction[{index}]")
    for index, item in enumerate(sections["connectors"]):
        _check_connector(item, provider_names, credential_names, problems, f"connectors[{index}]")
    problems.raise_if_any()

    summary = ImportSummary()
    with transaction.atomic():
        for item in sections["credentials"]:
            _apply_credential(item, environ, actor, summary)
        for item in sections["providers"]:
            _apply_provider(item, actor, summary)
        if "redaction" in document:
            _apply_global_rules(sections["redaction"], actor, summary)
        for item in sections["connectors"]:
            _apply_connector(item, actor, summary)
        audit.record("config.import", actor, changes={"summary": str(summary)})
    return summary


def _require(item: dict, keys: tuple[str, ...], problems: _Problems, where: str) -> bool:
    missing = [key for key in keys if not item.get(key)]
    for key in missing:
        problems.add(f"{where}.{key}", "is required")
    return not missing


# Interlock's own secrets: a configuration file (which an integration admin may upload in the
# browser) must not copy them into a credential that a provider or callback would send out.
OWN_SETTINGS = {
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEYS",
    "AUDIT_HMAC_KEY",
    "REDACTION_HMAC_KEY",
    "AUDIT_SIGNING_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "METRICS_TOKEN",
    "EMAIL_URL",
    "ALERT_WEBHOOK_URL",
}


def _check_credential(item: dict, environ, problems: _Problems, where: str) -> None:
    if "value" in item:
        problems.add(f"{where}.value", "secrets never go in the file; name a variable in value_env")
        return
    if not _require(item, ("name", "kind", "value_env"), problems, where):
        return
    variable = str(item["value_env"])
    if variable.upper() in OWN_SETTINGS or variable.upper().startswith(("DJANGO_", "INTERLOCK_")):
        problems.add(f"{where}.value_env", f"{variable} is one of Interlock's own settings")
        return
    if item["kind"] not in Credential.Kind.values:
        problems.add(f"{where}.kind", f"unknown kind {item['kind']!r}")
    exists = Credential.objects.filter(name=item["name"]).exists()
    if not exists and not environ.get(item["value_env"]):
        problems.add(f"{where}.value_env", f"environment variable {item['value_env']} is not set")


def _check_provider(item: dict, credentials: set, problems: _Problems, where: str) -> None:
    if not _require(item, ("name", "kind"), problems, where):
        return
    try:
        validation.check_provider(
            item["kind"],
            item.get("base_url", ""),
            item.get("model", ""),
            item.get("parameters", {}),
            item.get("settings") or {},
        )
    except ValidationError as error:
        problems.add(where, error)
    if item.get("credential") and item["credential"] not in credentials:
        problems.add(f"{where}.credential", f"no credential named {item['credential']!r}")
    for name, problem in prices.problems(item).items():
        problems.add(f"{where}.{name}", problem)
    for name in ("requests_per_minute", "tokens_per_minute"):
        value = item.get(name)
        if value is not None and (type(value) is not int or value < 1):
            problems.add(f"{where}.{name}", "must be a whole number of at least 1, or absent")


def _check_rule(item: dict, problems: _Problems, where: str) -> None:
    if not _require(item, ("detector", "action"), problems, where):
        return
    try:
        validation.check_redaction_rule(
            item["detector"], item["action"], item.get("pattern", ""), item.get("field", "")
        )
    except ValidationError as error:
        problems.add(where, error)


def check_source_reference_field(path) -> None:
    if not isinstance(path, str):
        raise ValidationError({"source_reference_field": "must be a path such as claim.id"})
    if path:
        try:
            validate_record_path(path)
        except ValidationError as error:
            raise ValidationError({"source_reference_field": error.messages}) from error


def _check_connector(item, providers: set, credentials: set, problems: _Problems, where) -> None:
    if not _require(item, ("slug", "provider", "prompt"), problems, where):
        return
    if item["provider"] not in providers:
        problems.add(f"{where}.provider", f"no provider named {item['provider']!r}")
    source_kind, source = plugin_section(item, "source", SOURCES)
    sink_kind, sink = plugin_section(item, "sink", SINKS)
    output = item.get("output") or {}
    checks = [
        lambda: validation.check_source(source_kind, source),
        lambda: validation.check_sink(sink_kind, sink),
        lambda: validation.check_credentials_exist(
            SOURCES, source_kind, source, "source", credentials
        ),
        lambda: validation.check_credentials_exist(SINKS, sink_kind, sink, "sink", credentials),
        lambda: validation.check_prompt(item["prompt"]),
        lambda: validation.check_output(output.get("format", "text"), output.get("schema")),
        lambda: validation.check_choice(
            output.get("pii_in_answer", Connector.AnswerPII.REDACT),
            Connector.AnswerPII,
            "output.pii_in_answer",
        ),
        lambda: validation.check_detector_options(
            item.get("phone_regions", []), item.get("id_countries", [])
        ),
        lambda: validation.check_fallback_providers(
            item.get("fallback_providers", []), item["provider"], providers
        ),
        lambda: check_review_section(item.get("review") or {}, output),
        lambda: check_source_reference_field(item.get("source_reference_field", "")),
    ]
    for check in checks:
        try:
            check()
        except ValidationError as error:
            problems.add(where, error)
    for spot, problem in budget_config.problems(item.get("budgets", []), providers):
        problems.add(f"{where}.{spot}", problem)
    for direction in ("input_mapping", "output_mapping"):
        for index, entry in enumerate(item.get(direction) or []):
            spot = f"{where}.{direction}[{index}]"
            if not isinstance(entry, dict) or not _require(entry, ("from", "to"), problems, spot):
                continue
            try:
                validation.check_mapping(entry["from"], entry["to"], entry.get("transform", ""))
            except ValidationError as error:
                problems.add(spot, error)
    for index, entry in enumerate(item.get("redaction") or []):
        _check_rule(entry, problems, f"{where}.redaction[{index}]")
    outputs = {
        entry.get("to") for entry in item.get("output_mapping") or [] if isinstance(entry, dict)
    }
    try:
        validation.check_writable_columns(sink_kind, sink, source, outputs - {None})
    except ValidationError as error:
        problems.add(f"{where}.output_mapping", error)


def check_review_section(review: dict, output: dict) -> None:
    if not isinstance(review, dict) or set(review) - set(REVIEW_FIELDS):
        known = ", ".join(REVIEW_FIELDS)
        raise ValidationError({"review": f"must be a mapping of {known}"})
    validation.check_choice(
        review.get("policy", Connector.ReviewPolicy.NEVER), Connector.ReviewPolicy, "review.policy"
    )
    validation.check_choice(
        review.get("after_deadline", Connector.DeadlineAction.ALERT),
        Connector.DeadlineAction,
        "review.after_deadline",
    )
    hours = review.get("deadline_hours", 72)
    if type(hours) is not int or not 1 <= hours <= 24 * 365:
        raise ValidationError({"review.deadline_hours": "must be a whole number from 1 to 8760"})
    try:
        validation.check_review(
            review.get("policy", "never"),
            review.get("condition", ""),
            output.get("format", "text"),
            output.get("schema"),
        )
    except ValidationError as error:
        raise ValidationError({"review.condition": error.messages}) from None


def plugin_section(item: dict, section: str, registry) -> tuple[str, dict]:
    """A connector's source or sink from the file: (kind, settings without the kind)."""
    settings = dict(item.get(section) or {})
    return settings.pop("kind", registry.default), settings


def _apply_credential(item: dict, environ, actor: audit.Actor, summary: ImportSummary) -> None:
    credential = Credential.objects.filter(name=item["name"]).first()
    value = environ.get(item["value_env"])
    label = f"credential {item['name']}"
    if credential is None:
        credential = Credential(name=item["name"], kind=item["kind"])
        credential.set_value(value)
        credential.save()
        audit.record("credential.create", actor, credential, changes={"value": audit.SECRET_MARK})
        summary.created.append(label)
        return
    changes = {}
    if credential.kind != item["kind"]:
        changes["kind"] = [credential.kind, item["kind"]]
        credential.kind = item["kind"]
    if value and value != credential.reveal():
        credential.set_value(value)
        changes["value"] = [audit.SECRET_MARK, audit.SECRET_MARK]
    _save_if_changed(credential, changes, "credential.update", actor, summary, label)


def _provider_values(item: dict) -> dict:
    credential = item.get("credential")
    return {
        "kind": item["kind"],
        "base_url": item.get("base_url", ""),
        "model": item.get("model", ""),
        "credential": Credential.objects.get(name=credential) if credential else None,
        "timeout_seconds": float(item.get("timeout_seconds", 60)),
        "max_concurrency": int(item.get("max_concurrency", 4)),
        "requests_per_minute": item.get("requests_per_minute"),
        "tokens_per_minute": item.get("tokens_per_minute"),
        "parameters": item.get("parameters") or {},
        "settings": item.get("settings") or {},
        **prices.imported(item),
    }


def _apply_provider(item: dict, actor: audit.Actor, summary: ImportSummary) -> None:
    provider = Provider.objects.filter(name=item["name"]).first()
    values = _provider_values(item)
    label = f"provider {item['name']}"
    if provider is None:
        provider = Provider.objects.create(name=item["name"], **values)
        audit.record("provider.create", actor, provider, changes=export_provider(provider))
        summary.created.append(label)
        return
    before = export_provider(provider)
    for name, value in values.items():
        setattr(provider, name, value)
    changes = audit.diff(before, export_provider(provider))
    _save_if_changed(provider, changes, "provider.update", actor, summary, label)


def _save_if_changed(obj, changes, action, actor, summary, label) -> None:
    if not changes:
        summary.unchanged.append(label)
        return
    obj.save()
    audit.record(action, actor, obj, changes=changes)
    summary.updated.append(label)


def _rule(item: dict, connector: Connector | None, position: int) -> RedactionRule:
    return RedactionRule(
        connector=connector,
        name=item.get("name", ""),
        detector=item["detector"],
        action=item["action"],
        pattern=item.get("pattern", ""),
        field_name=item.get("field", ""),
        is_enabled=item.get("enabled", True),
        position=position,
    )


def _apply_global_rules(items: list[dict], actor: audit.Actor, summary: ImportSummary) -> None:
    existing = RedactionRule.objects.filter(connector__isnull=True)
    before = [export_rule(rule) for rule in existing]
    wanted = [export_rule(_rule(item, None, position)) for position, item in enumerate(items)]
    if before == wanted:
        if wanted:
            summary.unchanged.append("global redaction rules")
        return
    existing.delete()
    RedactionRule.objects.bulk_create(
        [_rule(item, None, position) for position, item in enumerate(items)]
    )
    intake_plans.changed(None)  # bulk writes send no signal
    audit.record("redaction.update", actor, changes={"global rules": [before, wanted]})
    summary.updated.append("global redaction rules")


def _apply_connector(item: dict, actor: audit.Actor, summary: ImportSummary) -> None:
    source_kind, source = plugin_section(item, "source", SOURCES)
    sink_kind, sink = plugin_section(item, "sink", SINKS)
    output = item.get("output") or {}
    values = {
        "name": item.get("name") or item["slug"],
        "is_enabled": item.get("enabled", True),
        "source_kind": source_kind,
        "source_config": source,
        "provider": Provider.objects.get(name=item["provider"]),
        "prompt_template": item["prompt"],
        "output_format": output.get("format", "text"),
        "output_schema": output.get("schema"),
        "answer_pii": output.get("pii_in_answer", Connector.AnswerPII.REDACT),
        "sink_kind": sink_kind,
        "sink_config": sink,
        "fallback_providers": item.get("fallback_providers", []),
        "review_policy": Connector.ReviewPolicy.NEVER,
        "review_condition": "",
        "review_four_eyes": False,
    }
    values |= {REVIEW_FIELDS[key]: value for key, value in (item.get("review") or {}).items()}
    for key in (
        "max_attempts",
        "batch_size",
        "poll_interval_seconds",
        "retention_days",
        "phone_regions",
        "id_countries",
        "source_reference_field",
    ):
        if key in item:
            values[key] = item[key]
    connector = Connector.objects.filter(slug=item["slug"]).first()
    label = f"connector {item['slug']}"
    before = export_connector(connector) if connector else None
    if connector is None:
        connector = Connector(slug=item["slug"])
    for name, value in values.items():
        setattr(connector, name, value)
    connector.full_clean(exclude=["provider"], validate_unique=False)
    connector.save()
    _replace_children(connector, item)
    budget_config.replace(connector, item.get("budgets", []))
    after = export_connector(connector)
    if before is None:
        audit.record("connector.create", actor, connector, connector=connector.slug, changes=after)
        summary.created.append(label)
    elif before != after:
        changes = audit.diff(before, after)
        audit.record(
            "connector.update", actor, connector, connector=connector.slug, changes=changes
        )
        summary.updated.append(label)
    else:
        summary.unchanged.append(label)


def _replace_children(connector: Connector, item: dict) -> None:
    connector.mappings.all().delete()
    connector.redaction_rules.all().delete()
    mappings = []
    for direction in ("input", "output"):
        for position, entry in enumerate(item.get(f"{direction}_mapping") or []):
            mappings.append(
                FieldMapping(
                    connector=connector,
                    direction=direction,
                    source_path=entry["from"],
                    target_name=entry["to"],
                    transform=entry.get("transform", ""),
                    is_required=bool(entry.get("required", False)),
                    position=position,
                )
            )
    FieldMapping.objects.bulk_create(mappings)
    RedactionRule.objects.bulk_create(
        [
            _rule(entry, connector, position)
            for position, entry in enumerate(item.get("redaction") or [])
        ]
    )
    intake_plans.changed(connector.pk)  # bulk writes send no signal
