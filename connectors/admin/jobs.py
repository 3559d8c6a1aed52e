"""Jobs are history: read-only; retry, re-send write-back and cancel are the operations."""

import contextlib
import uuid

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from connectors import audit, evidence, exports, jobs, labels, lifecycle, timeline
from connectors.admin import evidence as evidence_admin
from connectors.admin.base import ReadOnlyModelAdmin, actor_for
from connectors.admin.listing import (
    ConnectorFilter,
    EstimatedCountPaginator,
    FastCheckboxMixin,
    indexed_values_filter,
)
from connectors.models import Job, JobAttempt, Review
from connectors.templatetags import interlock

BADGE_COLOURS = {
    "pending": "#8a8a8a",
    "queued": "#5b80b2",
    "running": "#2f6fb0",
    "succeeded": "#2e8540",
    "failed": "#c77c02",
    "dead": "#ba2121",
    "cancelled": "#555",
    "awaiting_review": "#7a4fb5",
    "rejected": "#8a3b12",
}


RETRYABLE = (Job.Status.FAILED, Job.Status.DEAD, Job.Status.CANCELLED)


def parse_id(object_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(object_id))
    except ValueError:
        return None


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    fields = [
        "number",
        "outcome",
        "worker",
        "started_at",
        "finished_at",
        "queue_wait_ms",
        "ai_ms",
        "model",
        "tokens_in",
        "tokens_out",
        "cost",
        "write_ms",
        "write_outcome",
        "error_code",
        "error_message",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(FastCheckboxMixin, ReadOnlyModelAdmin):
    list_display = [
        "short_id",
        "connector",  # get_list_display: the connector's label
        "status_badge",
        "attempts",
        "source_reference",
        "age",
        "duration",
        "error_code",
        "cost",
    ]
    # At 100,000 jobs: no date hierarchy (its year and month links read every row), choices
    # from indexes, an estimated count and no second count of the whole table.
    list_filter = [
        "status",
        ("connector", ConnectorFilter),
        indexed_values_filter("error_code", "error code"),
        "created_at",
    ]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_select_related = ["connector"]
    search_fields = ["source_reference"]  # the box shows; the search is get_search_results
    change_list_template = "admin/connectors/job/change_list.html"
    change_form_template = "admin/connectors/job/change_form.html"
    inlines = [JobAttemptInline]
    actions = ["retry", "cancel", "export_evidence"]
    exclude = ["encrypted_tokens", "record_fingerprint"]
    readonly_fields = ["lineage_link", "review_shown"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "connector",
                    "status",
                    "attempts",
                    "idempotency_key",
                    "source_reference",
                    "next_attempt_at",
                    "lineage_link",
                ]
            },
        ),
        ("Sent to the AI (redacted)", {"fields": ["input_data", "redaction_hits", "prompt"]}),
        (
            "Answer",
            {
                "fields": [
                    "provider_name",
                    "model",
                    "ai_output",
                    "repair_prompt",
                    "output",
                    "result",
                    "token_report",
                    "answer_pii",
                    "write_outcome",
                ]
            },
        ),
        ("Review", {"fields": ["review_shown"]}),
        ("Error", {"fields": ["error_code", "error_message", "error_traceback"]}),
        (
            "Cost and timing",
            {
                "fields": [
                    "tokens_in",
                    "tokens_out",
                    "cost",
                    "queue_wait_ms",
                    "ai_ms",
                    "write_ms",
                    "created_at",
                    "enqueued_at",
                    "started_at",
                    "finished_at",
                    "payload_purged_at",
                ]
            },
        ),
    ]

    def get_list_display(self, request):
        """The connector column names it by its label: the slug shows where names collide."""
        names = labels.connector_labels()

        @admin.display(description="connector", ordering="connector__name")
        def connector_label(obj: Job) -> str:
            return names.get(obj.connector_id, str(obj.connector_id))

        return [connector_label if name == "connector" else name for name in self.list_display]

    def get_search_results(self, request, queryset, search_term):
        """Exact matches on indexed columns, across connectors: a job id, a source reference
        (a record's own, such as claim.id) or an Idempotency-Key. A substring search would
        read every row at 100,000 jobs."""
        term = search_term.strip()
        if not term:
            return queryset, False
        matches = Q(source_reference=term) | Q(idempotency_key=term)
        with contextlib.suppress(ValueError):
            matches |= Q(id=uuid.UUID(term))
        return queryset.filter(matches), False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Job):
        return format_html(
            '<span class="status-badge" style="background:{};color:#fff;padding:1px 6px;'
            'border-radius:8px">{}</span>',
            BADGE_COLOURS.get(obj.status, "#777"),
            obj.status,
        )

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: Job) -> str:
        return interlock.age((timezone.now() - obj.created_at).total_seconds())

    @admin.display(description="duration")
    def duration(self, obj: Job) -> str:
        if obj.finished_at is None:
            return "—"
        seconds = (obj.finished_at - obj.created_at).total_seconds()
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"

    @admin.display(description="job", ordering="id")
    def short_id(self, obj: Job) -> str:
        return str(obj.id)[:8]

    def has_operate_permission(self, request) -> bool:
        """Retry and cancel: integration admins (change_job), not compliance officers."""
        return request.user.has_perm("connectors.change_job")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The job page reads as the journey: the timeline above the stored fields."""
        job = (
            Job.objects.select_related("connector__provider").filter(pk=parse_id(object_id)).first()
        )
        if job is not None and self.has_view_permission(request, job):
            extra_context = {
                **(extra_context or {}),
                "timeline": timeline.build(job),
                "can_operate": self.has_operate_permission(request),
                "can_retry": job.status in RETRYABLE and job.payload_purged_at is None,
                "resend_refusal": lifecycle.resend_refusal(job),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path(
                "<uuid:job_id>/retry/",
                self.admin_site.admin_view(self.retry_view),
                name="connectors_job_retry",
            ),
            path(
                "<uuid:job_id>/resend/",
                self.admin_site.admin_view(self.resend_view),
                name="connectors_job_resend",
            ),
            path(
                "<uuid:job_id>/lineage.json",
                self.admin_site.admin_view(self.lineage_view),
                name="connectors_job_lineage",
            ),
            path(
                "<uuid:job_id>/evidence.json",
                self.admin_site.admin_view(self.evidence_view),
                name="connectors_job_evidence",
            ),
            *super().get_urls(),
        ]

    def operated_job(self, request, job_id) -> Job:
        """The job a page button acts on: POST only, by whoever may retry."""
        if request.method != "POST":
            raise Http404("Use the button on the job page.")
        if not self.has_operate_permission(request):
            raise PermissionDenied
        job = Job.objects.select_related("connector").filter(id=job_id).first()
        if job is None:
            raise Http404("No such job.")
        return job

    def retry_view(self, request, job_id):
        job = self.operated_job(request, job_id)
        with transaction.atomic():
            retried = lifecycle.retry([job], actor_for(request))
            transaction.on_commit(lambda: jobs.enqueue(retried))
        if retried:
            self.message_user(request, "Job queued again.", messages.SUCCESS)
        else:
            self.message_user(
                request, f"Not retried: the job is {job.get_status_display()}.", messages.ERROR
            )
        return redirect("admin:connectors_job_change", job.id)

    def resend_view(self, request, job_id):
        job = self.operated_job(request, job_id)
        if refusal := lifecycle.resend_refusal(job):
            self.message_user(request, f"Not re-sent: {refusal}.", messages.ERROR)
            return redirect("admin:connectors_job_change", job.id)
        with transaction.atomic():
            resent = lifecycle.resend_write_back([job], actor_for(request))
            transaction.on_commit(lambda: jobs.enqueue(resent))
        if resent:
            self.message_user(
                request, "The stored result is queued to be written back again.", messages.SUCCESS
            )
        else:
            self.message_user(request, "Not re-sent: the job changed meanwhile.", messages.ERROR)
        return redirect("admin:connectors_job_change", job.id)

    def lineage_view(self, request, job_id):
        job = Job.objects.select_related("connector").filter(id=job_id).first()
        if job is None or not self.has_view_permission(request, job):
            raise Http404("No such job.")
        lineage = exports.job_lineage(job)  # before its own export event joins the trail
        audit.record("job.lineage_export", actor_for(request), job, connector=job.connector.slug)
        response = JsonResponse(lineage, json_dumps_params={"indent": 2})
        response["Content-Disposition"] = f'attachment; filename="job-{job.id}.json"'
        return response

    def evidence_view(self, request, job_id):
        """The job's evidence bundle: what an auditor verifies with the public key alone."""
        job = Job.objects.filter(id=job_id).first()
        if job is None or not self.has_view_permission(request, job):
            raise Http404("No such job.")
        selection = evidence.Selection(job=str(job.id))
        try:
            return evidence_admin.bundle_response(
                request, selection.jobs(), selection.describe(), f"job-{job.id}"
            )
        except evidence.SelectionError as error:
            self.message_user(request, f"No evidence bundle: {error}.", messages.ERROR)
            return redirect("admin:connectors_job_change", job.id)

    @admin.display(description="lineage")
    def lineage_link(self, obj: Job):
        return format_html(
            '<a href="{}">Download the lineage of this record (JSON)</a> · '
            '<a href="{}">Download its evidence bundle (verifiable with the public key)</a>',
            reverse("admin:connectors_job_lineage", args=[obj.id]),
            reverse("admin:connectors_job_evidence", args=[obj.id]),
        )

    @admin.action(
        description="Export an evidence bundle of the selected jobs", permissions=("view",)
    )
    def export_evidence(self, request, queryset):
        """From a search result: select the jobs (or all of them) and export one bundle."""
        selection = {"admin_selection": dict(request.GET.items()), "jobs": queryset.count()}
        try:
            return evidence_admin.bundle_response(request, queryset, selection, "jobs")
        except evidence.SelectionError as error:
            self.message_user(request, f"No evidence bundle: {error}.", messages.ERROR)
            return None

    @admin.display(description="review")
    def review_shown(self, obj: Job):
        held = Review.objects.filter(job_id=obj.id).first()
        if held is None:
            return "Not held for review."
        url = reverse("admin:connectors_review_change", args=[obj.id])
        state = (
            "waiting"
            if held.is_waiting
            else f"{held.get_decision_display()} by {held.decided_by}"
            + (f": {held.reason}" if held.reason else "")
        )
        return format_html(
            'Held because <code>{}</code> · <a href="{}">{}</a>', held.rule, url, state
        )

    @admin.action(description="Retry selected jobs", permissions=["operate"])
    def retry(self, request, queryset):
        with transaction.atomic():
            retried = lifecycle.retry(queryset.select_related("connector"), actor_for(request))
            transaction.on_commit(lambda: jobs.enqueue(retried))
        self.message_user(request, f"{len(retried)} job(s) queued again.", messages.SUCCESS)

    @admin.action(description="Cancel selected jobs", permissions=["operate"])
    def cancel(self, request, queryset):
        cancelled = lifecycle.cancel(queryset.select_related("connector"), actor_for(request))
        self.message_user(request, f"{cancelled} job(s) cancelled.", messages.SUCCESS)
