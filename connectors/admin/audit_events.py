"""The audit trail: filters, readable diffs, the chain's state, exports for offline checks."""

import json

from django.contrib import admin
from django.db.models import Max
from django.http import StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from connectors import audit, chain_status, exports
from connectors.admin.base import ReadOnlyModelAdmin, actor_for
from connectors.admin.listing import EstimatedCountPaginator, indexed_values_filter
from connectors.models import AuditEvent


class ReviewerFilter(admin.SimpleListFilter):
    """The decisions one reviewer took (approvals, edits, rejections)."""

    title = "reviewer"
    parameter_name = "reviewer"

    def lookups(self, request, model_admin):
        actors = (
            AuditEvent.objects.filter(action__startswith="review.", actor_type="user")
            .values_list("actor", flat=True)
            .distinct()
            .order_by("actor")
        )
        return [(actor, actor) for actor in actors]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action__startswith="review.", actor=self.value())
        return queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyModelAdmin):
    list_display = [
        "sequence",
        "created_at",
        "actor_type",
        "actor",
        "action",
        "object_repr",
        "connector",
    ]
    # Choices from indexes, an estimated count, no date hierarchy: see connectors.admin.listing.
    list_filter = [
        indexed_values_filter("action", "action"),
        "actor_type",
        ReviewerFilter,
        indexed_values_filter("connector", "connector"),
        indexed_values_filter("object_type", "object type"),
        "created_at",
    ]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    search_fields = ["actor", "object_repr", "object_id", "action", "connector"]
    readonly_fields = ["diff"]
    change_list_template = "admin/connectors/auditevent/change_list.html"

    @admin.display(description="changes")
    def diff(self, obj: AuditEvent):
        changes = obj.changes or {}
        if not changes:
            return "—"
        rows = [
            (name, *(value if isinstance(value, list) and len(value) == 2 else ("", value)))
            for name, value in changes.items()
        ]
        return format_html(
            "<table><tr><th>field</th><th>before</th><th>after</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                ((name, show(old), show(new)) for name, old, new in rows),
            ),
        )

    def changelist_view(self, request, extra_context=None):
        verification, verified_at = chain_status.current()
        context = {
            "chain": verification,
            "verified_at": verified_at[:19].replace("T", " "),
            "query": request.GET.urlencode(),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    def get_urls(self):
        return [
            path(
                "export/<str:fmt>/",
                self.admin_site.admin_view(self.export_view),
                name="connectors_auditevent_export",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request, fmt: str):
        """The events the current filters select, oldest first; the export is itself audited."""
        if not self.has_view_permission(request) or fmt not in ("csv", "jsonl"):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        events = changelist.get_queryset(request).order_by("sequence")
        # Freeze the selection before this export's own event joins the trail.
        last = events.aggregate(last=Max("sequence"))["last"] or 0
        events = events.filter(sequence__lte=last)
        audit.record(
            "audit.export",
            actor_for(request),
            changes={"format": fmt, "filters": dict(request.GET.items()), "events": events.count()},
        )
        stream = exports.audit_csv if fmt == "csv" else exports.audit_jsonl
        response = StreamingHttpResponse(
            stream(events.iterator(chunk_size=2000)),
            content_type="text/csv" if fmt == "csv" else "application/x-ndjson",
        )
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
        return response


def show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
