"""Dropped files and their progress (rows ended / rows read)."""

from django.contrib import admin
from django.db.models import Count, Q

from connectors.admin.base import ReadOnlyModelAdmin
from connectors.models import Job, SourceFile


@admin.register(SourceFile)
class SourceFileAdmin(ReadOnlyModelAdmin):
    list_display = [
        "name",
        "connector",
        "status",
        "progress",
        "rows_rejected",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "connector"]
    search_fields = ["name", "sha256"]
    list_select_related = ["connector"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(rows_ended=Count("jobs", filter=Q(jobs__status__in=Job.FINISHED)))
        )

    @admin.display(description="rows ended / read")
    def progress(self, obj: SourceFile) -> str:
        accepted = obj.rows_total - obj.rows_rejected
        return f"{obj.rows_ended} / {accepted}" + (
            f" (+{obj.rows_rejected} rejected)" if obj.rows_rejected else ""
        )
