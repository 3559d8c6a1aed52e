"""A form per kind, built from the kind's `Setting`s, packed back into its JSON config field.

A model form with a kind and a JSON config (a connector's source and sink, a provider's own
settings) gets one field per setting of every kind, named `<role>_<kind>__<setting>`; the page
shows the selected kind's. On save the selected kind's fields become the config, unless the
advanced raw JSON view was chosen (a post without the panel's marker, such as a script's, also
saves the raw JSON as before). A kind's SettingError lands next to the field it names.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.core.exceptions import ValidationError

from connectors.models import Credential
from connectors.plugins import (
    BOOLEAN,
    CREDENTIAL,
    INTEGER,
    MAPPING,
    NUMBER,
    TEXT_LIST,
    URL,
    Setting,
    is_unset,
)
from connectors.validation import SETTING_CODE


@dataclass(frozen=True)
class KindGroup:
    """One kind-and-config pair of a model form."""

    role: str  # "source", "sink", "provider": the fields' prefix
    kind_field: str
    config_field: str
    kinds: tuple[str, ...]
    settings_of: Callable[[str], tuple[Setting, ...]]
    after: str | None  # the fieldset the panel follows on the page
    title: str
    tools_of: Callable[[str], str] = lambda kind: ""  # a kind's own tools (a template)

    def field_name(self, kind: str, setting: str) -> str:
        return f"{self.role}_{kind}__{setting}"

    @property
    def marker(self) -> str:
        return f"{self.role}_settings_form"

    @property
    def raw_switch(self) -> str:
        return f"{self.config_field}_raw"


def raw_switch_field() -> forms.BooleanField:
    return forms.BooleanField(
        required=False,
        label="Save the raw JSON",
        help_text="Checked: the JSON below is saved as it is and the form above is ignored.",
    )


class TextListField(forms.CharField):
    """A list of texts, one per line."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        lines = [line.strip() for line in (value or "").splitlines()]
        return [line for line in lines if line] or None


class MappingField(forms.JSONField):
    """A JSON object; an unset one shows empty, not `null`."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})

    def prepare_value(self, value):
        return "" if value is None else super().prepare_value(value)


class NumberField(forms.FloatField):
    def to_python(self, value):
        number = super().to_python(value)
        return int(number) if number is not None and number.is_integer() else number


def credential_choices(setting: Setting, current: str) -> list[tuple[str, str]]:
    """Credentials by name (never their values), those of a matching kind when it says."""
    credentials = Credential.objects.order_by("name")
    if setting.credential_kinds:
        credentials = credentials.filter(kind__in=setting.credential_kinds)
    names = list(credentials.values_list("name", flat=True))
    if current and current not in names:
        names.insert(0, current)
    return [("", "— none —"), *((name, name) for name in names)]


def default_text(setting: Setting) -> str:
    if setting.default is None:
        return "default"
    default = json.dumps(setting.default) if isinstance(setting.default, bool) else setting.default
    return f"default: {default}"


def field_for(setting: Setting, current) -> forms.Field:
    """The form field that edits one setting; every one optional (the kind's checks say what
    is missing, next to the field)."""
    options = {"required": False, "label": setting.name, "help_text": setting.help}
    if setting.type == CREDENTIAL:
        return forms.ChoiceField(choices=credential_choices(setting, current or ""), **options)
    if setting.choices:
        blank = [("", f"— {default_text(setting)} —")]
        return forms.ChoiceField(choices=blank + [(c, c) for c in setting.choices], **options)
    if setting.type == BOOLEAN:
        return forms.TypedChoiceField(
            choices=[("", f"— {default_text(setting)} —"), ("true", "yes"), ("false", "no")],
            coerce=lambda value: value == "true",
            empty_value=None,
            **options,
        )
    if setting.type == INTEGER:
        return forms.IntegerField(min_value=setting.minimum, max_value=setting.maximum, **options)
    if setting.type == NUMBER:
        return NumberField(min_value=setting.minimum, max_value=setting.maximum, **options)
    if setting.type == TEXT_LIST:
        return TextListField(**options)
    if setting.type == MAPPING:
        return MappingField(**options)
    widget, css = (forms.URLInput, "vURLField") if setting.type == URL else (forms.TextInput, "")
    return forms.CharField(widget=widget(attrs={"class": css or "vTextField"}), **options)


def initial_for(setting: Setting, value):
    if setting.type == BOOLEAN and isinstance(value, bool):
        return "true" if value else "false"
    return value


def add_fields(form: forms.BaseForm, group: KindGroup) -> None:
    """One field per setting of every kind; the saved config fills its own kind's."""
    if group.config_field not in form.fields:
        return  # a read-only page
    saved_kind = getattr(form.instance, group.kind_field, "")
    saved = getattr(form.instance, group.config_field, None) or {}
    for kind in group.kinds:
        config = saved if kind == saved_kind and isinstance(saved, dict) else {}
        for setting in group.settings_of(kind):
            current = config.get(setting.name)
            field = field_for(setting, current)
            field.initial = initial_for(setting, current)
            field.is_required_setting = setting.required
            if setting.default is not None and isinstance(field.widget, forms.widgets.Input):
                field.widget.attrs["placeholder"] = str(setting.default)  # what empty means
            form.fields[group.field_name(kind, setting.name)] = field


def is_form_mode(form: forms.BaseForm, group: KindGroup) -> bool:
    return bool(form.data.get(group.marker)) and not form.cleaned_data.get(group.raw_switch)


def pack(form: forms.BaseForm, group: KindGroup) -> None:
    """In form mode, the selected kind's fields become the config; the other kinds' fields
    (hidden on the page) do not count, not even their errors."""
    if group.config_field not in form.fields or not is_form_mode(form, group):
        return
    kind = form.cleaned_data.get(group.kind_field, "")
    for other in group.kinds:
        if other == kind:
            continue
        for setting in group.settings_of(other):
            form.errors.pop(group.field_name(other, setting.name), None)
            form.cleaned_data.pop(group.field_name(other, setting.name), None)
    if kind not in group.kinds:
        return
    config = {}
    for setting in group.settings_of(kind):
        value = form.cleaned_data.get(group.field_name(kind, setting.name))
        if not is_unset(value) and value != []:
            config[setting.name] = value
    form.errors.pop(group.config_field, None)  # the raw JSON is not what is saved
    form.cleaned_data[group.config_field] = config


def add_errors(form: forms.BaseForm, groups: list[KindGroup], error: ValidationError) -> None:
    """Each message next to its field: a setting's next to that setting's field in form mode."""
    for field, errors in error.error_dict.items():
        for item in errors:
            target = field if field in form.fields else None
            group = next((g for g in groups if g.config_field == field), None)
            code = item.code or ""
            if group and code.startswith(SETTING_CODE) and is_form_mode(form, group):
                kind = form.cleaned_data.get(group.kind_field, "")
                name = group.field_name(kind, code.removeprefix(SETTING_CODE))
                target = name if name in form.fields else target
            form.add_error(target, item.messages)


@dataclass
class KindPanel:
    """What the page shows of one kind: its bound fields, whether it is the selected one."""

    kind: str
    fields: list
    is_selected: bool
    tools_template: str
    errors: list  # the config's errors that name no setting (a table the database lacks)


def panels(form: forms.BaseForm, group: KindGroup) -> list[KindPanel]:
    if group.config_field not in form.fields:
        return []
    selected = form[group.kind_field].value()
    errors = form.errors.get(group.config_field, []) if form.is_bound else []
    return [
        KindPanel(
            kind=kind,
            fields=[form[group.field_name(kind, s.name)] for s in group.settings_of(kind)],
            is_selected=kind == selected,
            tools_template=group.tools_of(kind),
            errors=errors if kind == selected else [],
        )
        for kind in group.kinds
    ]
