"""Checks shared by the admin forms and `import_config`: a connector that saves is one that runs.

Each function raises django's ValidationError keyed by the field at fault, so a form can show the
message next to the field and the importer can name it.
"""

from django.core.exceptions import ValidationError

from connectors import mapping, prompts, redaction
from connectors.providers import PROVIDERS
from connectors.sinks import SINKS
from connectors.sources import SOURCES


def check_source(kind: str, config: dict) -> dict:
    return _check_plugin(SOURCES, kind, config, "source_config")


def check_sink(kind: str, config: dict) -> dict:
    return _check_plugin(SINKS, kind, config, "sink_config")


def _check_plugin(registry, kind: str, config, field: str) -> dict:
    if kind not in registry:
        raise ValidationError({field: f"unknown {registry.what} kind {kind!r}"})
    if not isinstance(config, dict):
        raise ValidationError({field: "must be a JSON object"})
    try:
        return registry.get(kind).validate_config(config)
    except ValueError as error:
        raise ValidationError({field: str(error)}) from None


def check_provider(kind: str, base_url: str, model: str, parameters) -> None:
    if kind not in PROVIDERS:
        raise ValidationError({"kind": f"unknown provider kind {kind!r}"})
    if not isinstance(parameters, dict):
        raise ValidationError({"parameters": "must be a JSON object"})
    try:
        PROVIDERS.get(kind).validate_config(base_url, model, parameters)
    except ValueError as error:
        raise ValidationError({"base_url": str(error)}) from None


def check_prompt(template: str) -> None:
    try:
        prompts.validate_template(template)
    except ValueError as error:
        raise ValidationError({"prompt_template": str(error)}) from None


def check_output(output_format: str, schema) -> None:
    if output_format == "json" and schema is not None:
        try:
            prompts.validate_schema(schema)
        except ValueError as error:
            raise ValidationError({"output_schema": str(error)}) from None


def check_mapping(source_path: str, target_name: str, transform: str) -> None:
    errors = {}
    for field, check, value in (
        ("source_path", mapping.parse_path, source_path),
        ("target_name", mapping.validate_target_name, target_name),
        ("transform", mapping.parse_transforms, transform),
    ):
        try:
            check(value)
        except ValueError as error:
            errors[field] = str(error)
    if errors:
        raise ValidationError(errors)


def check_redaction_rule(detector: str, action: str, pattern: str, field_name: str) -> None:
    rule = redaction.Rule(detector=detector, action=action, pattern=pattern, field=field_name)
    try:
        redaction.validate_rule(rule)
    except ValueError as error:
        field = {"regex": "pattern", "field": "field_name"}.get(detector, "detector")
        raise ValidationError({field: str(error)}) from None


def check_sink_credentials(kind: str, config: dict) -> None:
    """Credentials a sink names by reference must exist."""
    from connectors.models import Credential

    if kind not in SINKS:
        return
    for key in SINKS.get(kind).credential_fields:
        name = config.get(key)
        if name and not Credential.objects.filter(name=name).exists():
            raise ValidationError({"sink_config": f"{key}: no credential named {name!r}"})


def check_source_reachable(kind: str, config: dict) -> None:
    """Sources whose names must exist (a table and its columns) are checked against reality."""
    from connectors.models import Credential

    source_class = SOURCES.get(kind) if kind in SOURCES else None
    if source_class is None or not getattr(source_class, "checked_on_save", False):
        return
    secrets = {}
    for key in source_class.credential_fields:
        credential = Credential.objects.filter(name=config.get(key, "")).first()
        if credential is None:
            raise ValidationError(
                {"source_config": f"{key}: no credential named {config.get(key)!r}"}
            )
        secrets[key] = credential.reveal()
    try:
        source_class(None, source_class.validate_config(config), secrets).test_connection()
    except ValueError as error:
        raise ValidationError({"source_config": str(error)}) from None


def check_writable_columns(
    sink_kind: str, sink_config: dict, source_config: dict, outputs: set[str]
) -> None:
    """A db_update sink writes only output-mapped columns, never the ones the pipeline manages.

    Without output mappings the AI's JSON would name the columns, and a prompt injection could
    rewrite the key or the status of the row."""
    if sink_kind != "db_update":
        return
    if not outputs:
        raise ValidationError(
            "The db_update sink needs output mappings: they name the columns it may write."
        )
    sink = SINKS.get(sink_kind)
    config = sink.effective_config(sink_config or {}, source_config or {})
    managed = sorted(outputs & sink(config, {}).protected_columns())
    if managed:
        raise ValidationError(
            f"Output mappings may not write {', '.join(managed)}: the pipeline manages the key, "
            "status, claim and error columns."
        )
