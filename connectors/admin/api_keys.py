"""API keys: issued once (the key is rendered in the response, never stored), revocable."""

import ipaddress

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from connectors import audit
from connectors.admin.base import actor_for
from connectors.admin.connectors import show_issued_keys
from connectors.models import ApiKey


class ApiKeyForm(forms.ModelForm):
    with_signing_secret = forms.BooleanField(
        required=False,
        label="Require signed requests",
        help_text="Also create a Standard Webhooks signing secret (shown once).",
    )

    class Meta:
        model = ApiKey
        fields = ["connector", "name", "allowed_networks"]

    def clean_allowed_networks(self):
        networks = self.cleaned_data["allowed_networks"] or []
        if not isinstance(networks, list):
            raise forms.ValidationError('A list of CIDRs, e.g. ["10.0.0.0/8"].')
        for network in networks:
            try:
                ipaddress.ip_network(str(network), strict=False)
            except ValueError:
                raise forms.ValidationError(f"{network!r} is not a network (CIDR).") from None
        return networks


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["prefix", "connector", "name", "is_active", "created_at", "last_used_at"]
    list_filter = ["connector", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "connector__slug"]
    actions = ["revoke"]

    @admin.display(boolean=True, description="active")
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def has_change_permission(self, request, obj=None):
        return False  # a key is issued or revoked, never edited

    def has_delete_permission(self, request, obj=None):
        return False  # revoked keys stay for the audit trail

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied  # before anything is issued: the POST path never reaches super()
        form = ApiKeyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            api_key, plain, secret = ApiKey.issue(
                form.cleaned_data["connector"],
                name=form.cleaned_data["name"],
                with_signing_secret=form.cleaned_data["with_signing_secret"],
            )
            if form.cleaned_data["allowed_networks"]:
                api_key.allowed_networks = form.cleaned_data["allowed_networks"]
                api_key.save(update_fields=["allowed_networks"])
            audit.record(
                "api_key.create",
                actor_for(request),
                api_key,
                connector=api_key.connector.slug,
                changes={
                    "signed": secret is not None,
                    "allowed_networks": api_key.allowed_networks,
                },
            )
            return show_issued_keys(request, self, [(api_key, plain, secret)])
        return super().add_view(request, form_url, extra_context)

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("connectors.change_apikey")

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True).select_related("connector"):
            ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
            audit.record(
                "api_key.revoke", actor_for(request), api_key, connector=api_key.connector.slug
            )
            revoked += 1
        self.message_user(request, f"{revoked} key(s) revoked.", messages.SUCCESS)
