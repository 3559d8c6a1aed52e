from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from connectors import prices, validation
from connectors.admin import kind_forms
from connectors.admin.base import AuditedModelAdmin
from connectors.errors import PipelineError
from connectors.models import Connector, Provider
from connectors.pipeline import build_provider
from connectors.providers import PROVIDERS


def kind_settings_help() -> str:
    """Each kind's own settings with their defaults, read from the kinds' declarations."""
    lines = []
    for kind in PROVIDERS.kinds():
        own = PROVIDERS.get(kind).kind_settings()
        if own:
            described = ", ".join(
                f"{setting.name} (default {setting.default})"
                if setting.default is not None
                else setting.name
                for setting in own
            )
            lines.append(f"{kind}: {described}")
    return (
        'The kind\'s own settings as JSON, e.g. {"max_tokens": 2048}; empty: the defaults. '
        + "; ".join(lines)
        + "."
    )


KIND_GROUP = kind_forms.KindGroup(
    role="provider",
    kind_field="kind",
    config_field="settings",
    kinds=tuple(PROVIDERS.kinds()),
    settings_of=lambda kind: PROVIDERS.get(kind).kind_settings(),
    after=None,
    title="The kind's own settings",
    tools_of=lambda kind: PROVIDERS.get(kind).form_tools_template,
)


MAIN_FIELDS = [
    "name",
    "kind",
    "base_url",
    "model",
    "credential",
    "timeout_seconds",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "parameters",
]
PRICE_FIELDS = [
    "price_per_1m_input",
    "price_per_1m_output",
    "price_per_1m_cached_input",
    "currency",
]


class ProviderForm(forms.ModelForm):
    settings_raw = kind_forms.raw_switch_field()
    base_url = forms.URLField(
        assume_scheme="https",
        required=False,
        help_text="e.g. https://api.openai.com/v1, http://ollama.internal:11434, or your Azure "
        "endpoint; empty for anthropic, gemini and cohere: the vendor's API.",
    )

    class Meta:
        model = Provider
        fields = [*MAIN_FIELDS, "settings", *PRICE_FIELDS]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["settings"].help_text = kind_settings_help()
        self.fields["model"].help_text = "The model's name; for azure_openai, the deployment's."
        kind_forms.add_fields(self, KIND_GROUP)

    def kind_panels(self) -> list:
        return [(KIND_GROUP, kind_forms.panels(self, KIND_GROUP))]

    def clean_currency(self):
        currency = self.cleaned_data["currency"].strip().upper()
        if not prices.CURRENCY.fullmatch(currency):
            raise ValidationError("an ISO 4217 code such as USD or EUR")
        return currency

    def clean(self):
        cleaned = super().clean()
        kind_forms.pack(self, KIND_GROUP)
        try:
            validation.check_provider(
                cleaned.get("kind", ""),
                cleaned.get("base_url", ""),
                cleaned.get("model", ""),
                cleaned.get("parameters") or {},
                cleaned.get("settings") or {},
            )
        except ValidationError as error:
            kind_forms.add_errors(self, [KIND_GROUP], error)
        kind = cleaned.get("kind", "")
        if (
            self.instance.pk
            and kind in PROVIDERS
            and not PROVIDERS.get(kind).has_json_schema_output
        ):
            users = json_schema_connectors(self.instance.name)
            if users:
                self.add_error(
                    "kind",
                    f"a {kind} provider cannot answer JSON against a schema, which connectors "
                    f"{', '.join(users)} ask of this one",
                )
        return cleaned


def json_schema_connectors(provider_name: str) -> list[str]:
    """Slugs of the JSON-with-schema connectors that use the provider or fall back to it."""
    connectors = Connector.objects.filter(output_format="json", output_schema__isnull=False)
    return sorted(
        connector.slug
        for connector in connectors.select_related("provider")
        if connector.provider.name == provider_name
        or provider_name in (connector.fallback_providers or [])
    )


@admin.register(Provider)
class ProviderAdmin(AuditedModelAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "model", "base_url", "max_concurrency", "credential"]
    list_filter = ["kind"]
    search_fields = ["name", "model", "base_url"]
    change_form_template = "admin/connectors/kind_change_form.html"
    fieldsets = [
        (
            None,
            {"fields": MAIN_FIELDS},
        ),
        (
            "Advanced: the kind's own settings as raw JSON",
            {"fields": ["settings", "settings_raw"], "classes": ["collapse"]},
        ),
        (
            "Prices",
            {"fields": PRICE_FIELDS},
        ),
    ]
    actions = ["test_connection"]

    @admin.action(description="Test connection", permissions=["change"])
    def test_connection(self, request, queryset):
        for provider in queryset:
            try:
                answer = build_provider(provider).test_connection()
            except PipelineError as error:
                self.message_user(
                    request, f"{provider.name}: {error.code}: {error.message}", messages.ERROR
                )
            else:
                self.message_user(request, f"{provider.name}: {answer}", messages.SUCCESS)
