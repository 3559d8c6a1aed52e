"""Checks shared by the admin forms and `import_config`: a connector that saves is one that runs.

Each function raises django's ValidationError keyed by the field at fault, so a form can show the
message next to the field and the importer can name it.
"""

from django.core.exceptions import ValidationError

from connectors import credentials, mapping, prompts, redaction, review_policy
from connectors.errors import ConfigError
from connectors.plugins import SettingError
from connectors.providers import PROVIDERS
from connectors.sinks import SINKS
from connectors.sources import SOURCES

SETTING_CODE = "setting:"


def check_source(kind: str, config: dict) -> dict:
    return _check_plugin(SOURCES, kind, config, "source_config")


def check_sink(kind: str, config: dict) -> dict:
    return _check_plugin(SINKS, kind, config, "sink_config")


def _check_plugin(registry, kind: str, config, field: str) -> dict:
    if kind not in registry:
        raise ValidationError({field: f"unknown {registry.what} kind {kind!r}"})
    try:
        return registry.get(kind).validate_config(config)
    except SettingError as error:
        raise setting_error(field, error.setting, str(error)) from None
    except ValueError as error:
        raise ValidationError({field: str(error)}) from None


def setting_error(field: str, setting: str, message: str) -> ValidationError:
    """An error on a config field whose code names the setting at fault, so a form per kind
    can show it beside that setting (connectors.admin.kind_forms)."""
    return ValidationError({field: ValidationError(message, code=f"{SETTING_CODE}{setting}")})


def check_provider(kind: str, base_url: str, model: str, parameters, settings=None) -> None:
    """A provider's settings are its row's fields plus the kind's own in `settings`: an error
    stands next to the field at fault (a kind's own setting, next to `settings`)."""
    if kind not in PROVIDERS:
        raise ValidationError({"kind": f"unknown provider kind {kind!r}"})
    provider = PROVIDERS.get(kind)
    own_settings = {} if settings is None else settings
    try:
        provider.validate_provider(base_url, model, parameters, own_settings)
    except SettingError as error:
        own = {setting.name for setting in provider.kind_settings()}
        if error.setting in own:
            raise setting_error("settings", error.setting, error.message) from None
        raise ValidationError({error.setting: error.message}) from None


def check_credentials_exist(
    registry, kind: str, config: dict, field: str, known: set[str] | None = None
) -> None:
    """Credentials a config names by reference must exist (or be created by the same import)."""
    if kind not in registry or not isinstance(config, dict):
        return  # check_source/check_sink report it
    missing = credentials.missing(registry.get(kind), config, known)
    if missing:
        key, name = next(iter(missing.items()))
        raise setting_error(field, key, f"{key}: no credential named {name!r}")


def check_source_on_save(kind: str, config: dict) -> None:
    """Sources whose names must exist (a table and its columns) are checked against reality."""
    source_class = SOURCES.get(kind) if kind in SOURCES else None
    if source_class is None or not source_class.is_checked_on_save:
        return
    try:
        config = source_class.validate_config(config)
    except ValueError:
        return  # check_source reports it
    try:
        secrets = credentials.secrets_for(source_class, config, mark_used=False)
        source_class(None, config, secrets).check_on_save()
    except ConfigError as error:
        raise ValidationError({"source_config": error.message}) from None
    except ValueError as error:
        raise ValidationError({"source_config": str(error)}) from None


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


def check_output_support(output_format: str, schema, provider_kinds) -> None:
    """A JSON-with-schema connector needs providers that can be asked for one."""
    if output_format != "json" or schema is None:
        return
    for kind in provider_kinds:
        if kind in PROVIDERS and not PROVIDERS.get(kind).has_json_schema_output:
            raise ValidationError(
                {
                    "output_format": f"a {kind} provider cannot answer JSON against a schema: "
                    "use output format text, or another provider"
                }
            )


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


def check_writable_columns(
    sink_kind: str, sink_config: dict, source_config: dict, outputs: set[str]
) -> None:
    """The sink may refuse output mappings it must not write (the columns it manages)."""
    if sink_kind not in SINKS:
        return
    sink = SINKS.get(sink_kind)
    try:
        config = sink.effective_config(sink_config or {}, source_config or {})
        sink.check_outputs(config, outputs)
    except ValueError as error:
        raise ValidationError(str(error)) from None


ID_COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL")  # connectors/detectors/national_ids


def check_detector_options(phone_regions, id_countries) -> None:
    """A connector's phone regions (ISO codes libphonenumber knows) and ID countries."""
    import phonenumbers

    for field, value, known in (
        ("phone_regions", phone_regions, phonenumbers.SUPPORTED_REGIONS),
        ("id_countries", id_countries, ID_COUNTRIES),
    ):
        if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
            raise ValidationError({field: 'must be a list of country codes, e.g. ["DE", "FR"]'})
        unknown = [code for code in value if code not in known]
        if unknown:
            hint = "ISO 3166 codes, e.g. DE" if field == "phone_regions" else ", ".join(known)
            raise ValidationError({field: f"unknown {unknown[0]!r} ({hint})"})


def check_choice(value, choices, field: str) -> None:
    if value not in choices.values:
        known = ", ".join(choices.values)
        raise ValidationError({field: f"{value!r} is not one of {known}"})


def check_fallback_providers(fallbacks, primary: str, known) -> None:
    """A connector's fallbacks: a list of other providers' names, each once."""
    field = "fallback_providers"
    if not isinstance(fallbacks, list) or not all(isinstance(name, str) for name in fallbacks):
        raise ValidationError({field: 'must be a list of provider names, e.g. ["backup"]'})
    for name in fallbacks:
        if name not in known:
            raise ValidationError({field: f"no provider named {name!r}"})
        if name == primary:
            raise ValidationError({field: f"{name!r} is the connector's own provider"})
    if len(set(fallbacks)) != len(fallbacks):
        raise ValidationError({field: "names a provider twice"})


TEXT_ANSWER = {"type": "object", "properties": {"text": {"type": "string"}}}


def check_review(policy: str, condition: str, output_format: str, schema) -> None:
    """A review condition that parses and reads only names the answer can have."""
    answer_schema = schema if output_format == "json" else TEXT_ANSWER
    try:
        review_policy.check(policy, condition or "", answer_schema)
    except ValueError as error:
        raise ValidationError({"review_condition": str(error)}) from None
