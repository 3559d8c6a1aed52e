"""What every admin page shares: each create, change and delete leaves an audit event."""

from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.shortcuts import redirect
from django.urls import reverse

from connectors import audit

SECRET_FIELDS = {"encrypted_value", "key_hash", "encrypted_signing_secret", "encrypted_tokens"}


def actor_for(request) -> audit.Actor:
    return audit.Actor.user(request.user, request.META.get("REMOTE_ADDR"))


def model_snapshot(obj) -> dict:
    """Field values for a diff; secret fields appear only as a mark."""
    values = {}
    for field in obj._meta.concrete_fields:
        value = field.value_from_object(obj)
        values[field.name] = audit.SECRET_MARK if field.name in SECRET_FIELDS and value else value
    return values


class AuditedModelAdmin(admin.ModelAdmin):
    """Records create/change/delete with a field diff (secrets masked), after inlines are saved."""

    def snapshot(self, obj) -> dict:
        return model_snapshot(obj)

    def connector_slug(self, obj) -> str:
        connector = getattr(obj, "connector", None)
        return connector.slug if connector is not None else ""

    def save_model(self, request, obj, form, change):
        before = None
        if change:
            original = type(obj).objects.filter(pk=obj.pk).first()
            before = self.snapshot(original) if original is not None else None
        request._audit_before = before
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        obj = form.instance
        before, after = getattr(request, "_audit_before", None), self.snapshot(obj)
        name = obj._meta.model_name
        if before is None:
            action, changes = f"{name}.create", audit.diff({}, after)
        else:
            action, changes = f"{name}.update", audit.diff(before, after)
            if not changes:
                return
        audit.record(
            action, actor_for(request), obj, connector=self.connector_slug(obj), changes=changes
        )

    def history_view(self, request, object_id, extra_context=None):
        """History is the object's audit trail (every event the console recorded for it, actions
        such as Disable included), not only Django's LogEntry of form saves."""
        obj = self.get_object(request, unquote(object_id))
        if (
            obj is None
            or not self.has_view_or_change_permission(request, obj)
            or not request.user.has_perm("connectors.view_auditevent")
        ):
            return super().history_view(request, object_id, extra_context)
        query = urlencode({"object_type": obj._meta.model_name, "object_id": str(obj.pk)})
        return redirect(f"{reverse('admin:connectors_auditevent_changelist')}?{query}")

    def delete_model(self, request, obj):
        entry = self._delete_entry(request, obj)
        super().delete_model(request, obj)
        audit.record_many([entry])

    def delete_queryset(self, request, queryset):
        entries = [self._delete_entry(request, obj) for obj in queryset]
        super().delete_queryset(request, queryset)
        audit.record_many(entries)

    def _delete_entry(self, request, obj) -> audit.Entry:
        return audit.entry_for(
            f"{obj._meta.model_name}.delete",
            actor_for(request),
            obj,
            connector=self.connector_slug(obj),
            changes=audit.diff(self.snapshot(obj), {}),
        )


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """History: viewable, never edited from the console."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
