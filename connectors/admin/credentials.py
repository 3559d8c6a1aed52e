"""Credentials are write-only: a value can be set or replaced, never shown again."""

from django import forms
from django.contrib import admin

from connectors import audit, crypto
from connectors.admin.base import AuditedModelAdmin, model_snapshot
from connectors.errors import ConfigError
from connectors.models import Connector, Credential
from connectors.oauth2 import ServiceAccount
from connectors.providers.aws import parse_access_key

# Kinds whose value has a shape, checked on save so a typo shows beside the field, not on a job.
VALUE_CHECKS = {
    Credential.Kind.AWS_ACCESS_KEY: parse_access_key,
    Credential.Kind.SERVICE_ACCOUNT: lambda value: ServiceAccount.from_json(value, ""),
}


class CredentialForm(forms.ModelForm):
    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        required=False,
        strip=False,
        help_text="Write-only: stored encrypted, never shown again. Leave empty to keep the "
        "current value. Basic auth: user:password. AWS access key: "
        "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN] or the JSON of aws sts assume-role. "
        "Google service account: the JSON key file. OAuth2 client credentials: the client "
        "secret (token_url, client_id and scope go in "
        "the sink config). Database URL: e.g. "
        "postgresql://user:password@host:5432/erp.",
    )

    class Meta:
        model = Credential
        fields = ["name", "kind", "value"]

    def clean_value(self):
        value = self.cleaned_data["value"]
        if not value and not self.instance.pk:
            raise forms.ValidationError("A new credential needs a value.")
        return value

    def clean(self):
        cleaned = super().clean()
        value, kind = cleaned.get("value"), cleaned.get("kind")
        if value and kind in VALUE_CHECKS:
            try:
                VALUE_CHECKS[kind](value)
            except ConfigError as error:  # its message quotes none of the value
                self.add_error("value", error.message)
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data["value"]:
            self.instance.set_value(self.cleaned_data["value"])
        return super().save(commit)


@admin.register(Credential)
class CredentialAdmin(AuditedModelAdmin):
    form = CredentialForm
    list_display = ["name", "kind", "fingerprint", "last_used_at", "rotated_at", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name"]
    readonly_fields = ["fingerprint", "used_by", "created_at", "rotated_at", "last_used_at"]

    @admin.display(description="used by")
    def used_by(self, obj: Credential) -> str:
        if obj.pk is None:
            return "—"
        users = [f"provider {p.name}" for p in obj.providers.all()]
        for connector in Connector.objects.all():
            for where, config in (
                ("source", connector.source_config),
                ("sink", connector.sink_config),
            ):
                if obj.name in {value for value in config.values() if isinstance(value, str)}:
                    users.append(f"connector {connector.slug} ({where})")
        return ", ".join(users) or "nothing yet"

    def snapshot(self, obj) -> dict:
        values = model_snapshot(obj)
        # A replaced value shows as a change of the masked value, never as its fingerprint: the
        # mark carries a digest of the ciphertext (new for every value, telling nothing of it).
        values.pop("fingerprint", None)
        if obj.encrypted_value:
            version = crypto.sha256_hex(obj.encrypted_value)[:8]
            values["encrypted_value"] = f"{audit.SECRET_MARK} (version {version})"
        return values
