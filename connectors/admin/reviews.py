"""The review queue: held answers oldest first, each with the record as the AI saw it (redacted),
the answer and the rule that held it; Approve, Edit and approve, Reject. Reviewers' API tokens."""

import json
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from connectors import audit, review
from connectors.admin.base import actor_for
from connectors.models import Connector, Review, ReviewerToken

AGES = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}


class StateFilter(admin.SimpleListFilter):
    """The queue shows what waits unless asked for the decided ones."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("decided", "Decided"), ("all", "All")]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Waiting",
        }
        yield from list(super().choices(changelist))[1:]

    def queryset(self, request, queryset):
        if self.value() == "decided":
            return queryset.exclude(decision=Review.Decision.WAITING)
        if self.value() == "all":
            return queryset
        return queryset.filter(decision=Review.Decision.WAITING)


class AgeFilter(admin.SimpleListFilter):
    title = "waiting for"
    parameter_name = "age"

    def lookups(self, request, model_admin):
        return [("1h", "over an hour"), ("1d", "over a day"), ("overdue", "past its deadline")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "overdue":
            return queryset.filter(deadline__lt=now)
        if self.value() in AGES:
            return queryset.filter(held_at__lt=now - AGES[self.value()])
        return queryset


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = [
        "job_short_id",
        "connector",
        "waiting",
        "deadline",
        "rule",
        "approvals",
        "decision_shown",
    ]
    list_filter = [StateFilter, "connector", AgeFilter]
    search_fields = ["=job__id", "job__source_reference"]
    list_select_related = ["connector", "job"]
    ordering = ["held_at"]
    actions = None
    change_list_template = "admin/connectors/review/change_list.html"

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="job", ordering="job_id")
    def job_short_id(self, obj: Review) -> str:
        return str(obj.job_id)[:8]

    @admin.display(description="waiting", ordering="held_at")
    def waiting(self, obj: Review) -> str:
        return timesince(obj.held_at, obj.decided_at or timezone.now())

    @admin.display(description="approvals")
    def approvals(self, obj: Review) -> str:
        if not obj.connector.review_four_eyes:
            return "—"
        return f"1 of 2 ({obj.first_approved_by})" if obj.first_approved_by else "0 of 2"

    @admin.display(description="decision", ordering="decision")
    def decision_shown(self, obj: Review):
        if obj.is_waiting:
            overdue = obj.deadline < timezone.now()
            return format_html(
                '<span class="{}">{}</span>', "overdue" if overdue else "", "waiting"
            )
        return f"{obj.get_decision_display()} by {obj.decided_by}"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        held = self.get_object(request, object_id)
        if held is None or not self.has_view_permission(request, held):
            raise Http404("No such review.")
        errors, posted = {}, {}
        if request.method == "POST":
            if not self.has_change_permission(request, held):
                raise PermissionDenied
            posted = request.POST
            decision = posted.get("decision", "")
            try:
                decided = review.decide(
                    held.job_id,
                    actor_for(request),
                    decision,
                    answer=posted.get("answer") if decision == review.EDIT else None,
                    reason=posted.get("reason", ""),
                    via="admin",
                    seen=posted.get("seen", ""),
                )
            except review.ReviewRefused as refused:
                errors[refused.field or "decision"] = refused.message
            else:
                self.message_user(request, said(decided), messages.SUCCESS)
                return redirect("admin:connectors_review_changelist")
        return TemplateResponse(
            request,
            "admin/connectors/review/review.html",
            self.page_context(request, held, errors, posted),
        )

    def page_context(self, request, held: Review, errors: dict, posted) -> dict:
        job = held.job
        connector = job.connector
        return {
            **self.admin_site.each_context(request),
            "title": f"Review: {connector.name}",
            "opts": self.opts,
            "held": held,
            "job": job,
            "record": pretty(job.input_data),
            "answer": pretty(job.output),
            "seen": review.answer_digest(job.output),
            "held_answer": pretty(held.held_output) if held.held_output != job.output else "",
            "result": pretty(job.result),
            "edited_answer": posted.get("answer") or edit_text(connector, job.output),
            "reason": posted.get("reason", ""),
            "errors": errors,
            "can_decide": held.is_waiting and self.has_change_permission(request, held),
            "can_view_job": request.user.has_perm("connectors.view_job"),
            "overdue": held.is_waiting and held.deadline < timezone.now(),
        }


def said(decided: review.Decided) -> str:
    job = decided.job_id[:8]
    if decided.outcome == "first_approval":
        return f"Job {job}: your approval is the first; a second, different person must approve."
    if decided.outcome == review.Decision.REJECTED:
        return f"Job {job} rejected; the legacy system is told."
    return f"Job {job} {decided.outcome}; it is written back now."


def pretty(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def edit_text(connector: Connector, output) -> str:
    """What the edit box starts with: the answer's JSON, or a text answer's text."""
    if connector.output_format == Connector.OutputFormat.TEXT and isinstance(output, dict):
        return str(output.get("text", ""))
    return pretty(output)


class ReviewerTokenForm(forms.ModelForm):
    class Meta:
        model = ReviewerToken
        fields = ["user", "name"]

    def clean_user(self):
        user = self.cleaned_data["user"]
        if not user.has_perm("connectors.change_review"):
            raise forms.ValidationError(
                "This user may not review (add them to the Reviewer or Integration admin group)."
            )
        return user


@admin.register(ReviewerToken)
class ReviewerTokenAdmin(admin.ModelAdmin):
    """Tokens for the review API: shown once, stored as a hash, revocable, never edited."""

    form = ReviewerTokenForm
    list_display = ["prefix", "user", "name", "is_active", "created_at", "last_used_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "user__username"]
    actions = ["revoke"]

    @admin.display(boolean=True, description="active")
    def is_active(self, obj: ReviewerToken) -> bool:
        return obj.revoked_at is None

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ReviewerTokenForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            token, plain = ReviewerToken.issue(
                form.cleaned_data["user"], name=form.cleaned_data["name"]
            )
            audit.record(
                "reviewer_token.create",
                actor_for(request),
                token,
                changes={"user": token.user.get_username()},
            )
            response = TemplateResponse(
                request,
                "admin/connectors/reviewertoken/issued.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Reviewer token created",
                    "token": token,
                    "plain": plain,
                    "opts": self.opts,
                },
            )
            response.headers["Cache-Control"] = "no-store"
            return response
        return super().add_view(request, form_url, extra_context)

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("connectors.change_reviewertoken")

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke(self, request, queryset):
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True).select_related("user"):
            ReviewerToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
            audit.record("reviewer_token.revoke", actor_for(request), token)
            revoked += 1
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
