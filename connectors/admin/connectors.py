"""The connector page: source, mapping, redaction, prompt, provider, output and sink together."""

import json
from functools import partial

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from connectors import (
    audit,
    config,
    pipeline,
    polling,
    preview,
    prompts,
    test_delivery,
    validation,
)
from connectors.admin import kind_forms, kind_tools
from connectors.admin.base import AuditedModelAdmin, actor_for
from connectors.models import ApiKey, Connector, FieldMapping, Job, RedactionRule
from connectors.redaction import detector_choices
from connectors.sinks import SINKS
from connectors.sources import SOURCES


def add_errors(form: forms.BaseForm, error: ValidationError) -> None:
    for field, errors in error.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


class FieldMappingForm(forms.ModelForm):
    class Meta:
        model = FieldMapping
        fields = ["direction", "source_path", "target_name", "transform", "is_required", "position"]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            validation.check_mapping(
                cleaned.get("source_path", ""),
                cleaned.get("target_name", ""),
                cleaned.get("transform", ""),
            )
        except ValidationError as error:
            add_errors(self, error)
        return cleaned


class RedactionRuleForm(forms.ModelForm):
    detector = forms.ChoiceField(
        choices=detector_choices,
        widget=forms.Select(attrs={"class": "detector-choice", "style": "max-width: 18em"}),
        help_text="What to look for; each choice says what it finds, with an example.",
    )

    class Meta:
        model = RedactionRule
        fields = ["name", "detector", "pattern", "field_name", "action", "position", "is_enabled"]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            validation.check_redaction_rule(
                cleaned.get("detector", ""),
                cleaned.get("action", ""),
                cleaned.get("pattern", ""),
                cleaned.get("field_name", ""),
            )
        except ValidationError as error:
            add_errors(self, error)
        return cleaned


def kept_forms(formset) -> list:
    return [
        form
        for form in formset.forms
        if form.cleaned_data and not form.cleaned_data.get("DELETE", False)
    ]


def posted_input_names(data) -> set[str]:
    """The input mappings' names as posted with the connector form (the inline's rows, those
    marked for deletion aside), so that the prompt's check can stand next to the prompt."""
    try:
        total = min(int(data.get("mappings-TOTAL_FORMS", "0")), 1000)
    except ValueError:
        return set()
    rows = [f"mappings-{index}-" for index in range(total)]
    return {
        data.get(f"{row}target_name", "").strip()
        for row in rows
        if data.get(f"{row}direction") == FieldMapping.Direction.INPUT
        and not data.get(f"{row}DELETE")
    } - {""}


def check_prompt_inputs(template: str, inputs: set[str]) -> None:
    """Every variable the prompt reads must be an input field (a typo sends blanks)."""
    if not inputs or not template:
        return
    try:
        used = prompts.template_variables(template)
    except Exception:  # check_prompt reports a template that does not compile
        return
    unknown = sorted(used - inputs)
    if unknown:
        raise ValidationError(
            {
                "prompt_template": f"The prompt uses {', '.join(unknown)}, which no input "
                f"mapping provides (input fields: {', '.join(sorted(inputs))})."
            }
        )


class FieldMappingFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        connector = self.instance
        outputs = {
            form.cleaned_data["target_name"]
            for form in kept_forms(self)
            if form.cleaned_data.get("direction") == FieldMapping.Direction.OUTPUT
        }
        validation.check_writable_columns(
            connector.sink_kind, connector.sink_config, connector.source_config, outputs
        )


class RedactionRuleFormSet(forms.BaseInlineFormSet):
    def clean(self):
        """Tokenized values come back only through a sink that writes to the legacy system."""
        super().clean()
        sink_kind = self.instance.sink_kind
        if sink_kind not in SINKS or SINKS.get(sink_kind).can_restore_tokens:
            return
        if any(form.cleaned_data.get("action") == "tokenize" for form in kept_forms(self)):
            restoring = ", ".join(SINKS.kinds_where(lambda sink: sink.can_restore_tokens))
            raise ValidationError(
                f"A tokenize rule needs a sink that writes back and restores the values "
                f"({restoring}); with the {sink_kind!r} sink the caller would "
                "only ever see the placeholders. Use mask or hash, or change the sink."
            )


class FieldMappingInline(admin.TabularInline):
    model = FieldMapping
    form = FieldMappingForm
    formset = FieldMappingFormSet
    extra = 0


class RedactionRuleInline(admin.TabularInline):
    model = RedactionRule
    form = RedactionRuleForm
    formset = RedactionRuleFormSet
    extra = 0


KIND_GROUPS = [
    kind_forms.KindGroup(
        role="source",
        kind_field="source_kind",
        config_field="source_config",
        kinds=tuple(SOURCES.kinds()),
        settings_of=lambda kind: SOURCES.get(kind).settings,
        after="Source",
        title="Source settings",
        tools_of=lambda kind: SOURCES.get(kind).form_tools_template,
    ),
    kind_forms.KindGroup(
        role="sink",
        kind_field="sink_kind",
        config_field="sink_config",
        kinds=tuple(SINKS.kinds()),
        settings_of=lambda kind: SINKS.get(kind).settings,
        after="Write-back",
        title="Write-back settings",
        tools_of=lambda kind: SINKS.get(kind).form_tools_template,
    ),
]


class ConnectorForm(forms.ModelForm):
    source_config_raw = kind_forms.raw_switch_field()
    sink_config_raw = kind_forms.raw_switch_field()

    class Meta:
        model = Connector
        fields = [
            "name",
            "slug",
            "is_enabled",
            "source_kind",
            "source_config",
            "source_reference_field",
            "batch_size",
            "provider",
            "fallback_providers",
            "prompt_template",
            "output_format",
            "output_schema",
            "answer_pii",
            "phone_regions",
            "id_countries",
            "sink_kind",
            "sink_config",
            "max_attempts",
            "retention_days",
            "poll_interval_seconds",
            "review_policy",
            "review_condition",
            "review_four_eyes",
            "review_deadline_hours",
            "review_deadline_action",
        ]
        widgets = {"review_condition": forms.Textarea(attrs={"rows": 2, "cols": 80})}

    # A form posted without them (a script written before reviews existed) keeps the values the
    # connector has: a ModelForm leaves fields that are not in the data as they are.
    KEPT_WHEN_ABSENT = ("review_policy", "review_deadline_hours", "review_deadline_action")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.KEPT_WHEN_ABSENT:
            if name in self.fields:  # a read-only page has no fields
                self.fields[name].required = False
        for group in KIND_GROUPS:
            kind_forms.add_fields(self, group)

    def kind_panels(self) -> list:
        """(group, its kinds' panels) for the page, each after the fieldset it follows."""
        return [(group, kind_forms.panels(self, group)) for group in KIND_GROUPS]

    def clean(self):
        cleaned = super().clean()
        for group in KIND_GROUPS:
            kind_forms.pack(self, group)
        source_kind, source_config = cleaned.get("source_kind", ""), cleaned.get("source_config")
        sink_kind, sink_config = cleaned.get("sink_kind", ""), cleaned.get("sink_config")
        source_config = {} if source_config is None else source_config
        sink_config = {} if sink_config is None else sink_config
        checks = [
            lambda: validation.check_source(source_kind, source_config),
            lambda: validation.check_sink(sink_kind, sink_config),
            lambda: validation.check_credentials_exist(
                SOURCES, source_kind, source_config, "source_config"
            ),
            lambda: validation.check_credentials_exist(
                SINKS, sink_kind, sink_config, "sink_config"
            ),
            lambda: validation.check_source_on_save(source_kind, source_config),
            lambda: validation.check_prompt(cleaned.get("prompt_template", "")),
            lambda: check_prompt_inputs(
                cleaned.get("prompt_template", ""), posted_input_names(self.data)
            ),
            lambda: validation.check_output(
                cleaned.get("output_format", ""), cleaned.get("output_schema")
            ),
            lambda: validation.check_detector_options(
                cleaned.get("phone_regions") or [], cleaned.get("id_countries") or []
            ),
            lambda: validation.check_review(
                cleaned.get("review_policy") or self.instance.review_policy,
                cleaned.get("review_condition", ""),
                cleaned.get("output_format", ""),
                cleaned.get("output_schema"),
            ),
        ]
        for check in checks:
            try:
                check()
            except ValidationError as error:
                kind_forms.add_errors(self, KIND_GROUPS, error)
        if cleaned.get("output_format") == "json" and not cleaned.get("output_schema"):
            self.add_error("output_schema", "A JSON output needs a JSON Schema to validate it.")
        return cleaned


def jobs_with_status(status: str) -> Subquery:
    """A connector's jobs in a status, counted on the (connector, status) index: a join and
    GROUP BY over every job took the list 100 ms at 100,000 jobs (bench/admin_lists.py)."""
    jobs = Job.objects.filter(connector=OuterRef("pk"), status=status).order_by()
    # COUNT(*), not COUNT(id): the id is not in the index, counting it would read the table.
    return Subquery(jobs.values("connector").annotate(count=Count("*")).values("count")[:1])


@admin.register(Connector)
class ConnectorAdmin(AuditedModelAdmin):
    form = ConnectorForm
    inlines = [FieldMappingInline, RedactionRuleInline]
    list_display = [
        "name",
        "slug",
        "is_enabled",
        "provider",
        "source_kind",
        "sink",
        "jobs_succeeded",
        "jobs_dead",
    ]
    list_filter = ["is_enabled", "source_kind", "sink_kind", "provider"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    actions = [
        "create_api_key",
        "test_connections",
        "enable",
        "disable",
        "clone",
        "export_selected",
    ]
    change_list_template = "admin/connectors/connector/change_list.html"
    fieldsets = [
        (None, {"fields": ["name", "slug", "is_enabled"]}),
        (
            "Source",
            {"fields": ["source_kind", "source_reference_field", "batch_size"]},
        ),
        (
            "Advanced: source settings as raw JSON",
            {"fields": ["source_config", "source_config_raw"], "classes": ["collapse"]},
        ),
        (
            "AI",
            {
                "fields": [
                    "provider",
                    "fallback_providers",
                    "prompt_template",
                    "output_format",
                    "output_schema",
                    "answer_pii",
                ]
            },
        ),
        ("Redaction", {"fields": ["phone_regions", "id_countries"], "classes": ["collapse"]}),
        (
            "Review before write-back",
            {
                "fields": [
                    "review_policy",
                    "review_condition",
                    "review_four_eyes",
                    "review_deadline_hours",
                    "review_deadline_action",
                ]
            },
        ),
        ("Write-back", {"fields": ["sink_kind"]}),
        (
            "Advanced: write-back settings as raw JSON",
            {"fields": ["sink_config", "sink_config_raw"], "classes": ["collapse"]},
        ),
        ("Retries and retention", {"fields": ["max_attempts", "retention_days"]}),
        ("Polling", {"fields": ["poll_interval_seconds"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("provider")
            .annotate(succeeded=jobs_with_status("succeeded"), dead=jobs_with_status("dead"))
        )

    @admin.display(description="sink", ordering="sink_kind")
    def sink(self, obj) -> str:
        if obj.sink_kind not in SINKS:
            return obj.sink_kind
        return SINKS.get(obj.sink_kind).describe(obj.sink_config or {})

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.sink_kind in SINKS:
            for warning in SINKS.get(obj.sink_kind).save_warnings(obj.sink_config or {}):
                self.message_user(request, warning, messages.WARNING)

    def test_delivery_view(self, request, object_id: int):
        """Send a marked test result through the saved sink; the outcome is a message."""
        connector = self.get_object(request, str(object_id))
        if connector is None or not self.has_change_permission(request, connector):
            raise PermissionDenied
        if request.method != "POST":
            return redirect("admin:connectors_connector_change", connector.pk)
        is_delivered, answer = test_delivery.send(connector)
        audit.record(
            "connector.test_delivery",
            actor_for(request),
            connector,
            connector=connector.slug,
            changes={"delivered": is_delivered, "answer": answer},
        )
        level = messages.SUCCESS if is_delivered else messages.ERROR
        self.message_user(request, f"Test delivery: {answer}", level)
        return redirect("admin:connectors_connector_change", connector.pk)

    @admin.display(description="succeeded", ordering="succeeded")
    def jobs_succeeded(self, obj) -> int:
        return obj.succeeded or 0

    @admin.display(description="dead", ordering="dead")
    def jobs_dead(self, obj) -> int:
        return obj.dead or 0

    def snapshot(self, obj) -> dict:
        """The exported configuration, plus the positions the export leaves implicit (its
        order): every saved change to an inline leaves an audit event, even a no-op reorder."""
        return {
            **config.export_connector(obj),
            "positions": {
                "mappings": list(obj.mappings.values_list("position", flat=True)),
                "redaction": list(obj.redaction_rules.values_list("position", flat=True)),
            },
        }

    def connector_slug(self, obj) -> str:
        return obj.slug

    @admin.action(description="Enable selected connectors", permissions=["change"])
    def enable(self, request, queryset):
        self.set_enabled(request, queryset, True)

    @admin.action(description="Disable selected connectors", permissions=["change"])
    def disable(self, request, queryset):
        self.set_enabled(request, queryset, False)

    def set_enabled(self, request, queryset, is_enabled: bool) -> None:
        for connector in queryset.exclude(is_enabled=is_enabled):
            # updated_at too: API key caches and source consumers key on it.
            Connector.objects.filter(pk=connector.pk).update(
                is_enabled=is_enabled, updated_at=timezone.now()
            )
            audit.record(
                "connector.update",
                actor_for(request),
                connector,
                connector=connector.slug,
                changes={"enabled": [not is_enabled, is_enabled]},
            )
        state = "enabled" if is_enabled else "disabled"
        self.message_user(request, f"Connectors {state}.", messages.SUCCESS)

    @admin.action(description="Clone selected connectors (disabled copies)", permissions=["add"])
    def clone(self, request, queryset):
        for connector in queryset:
            document = config.export_connector(connector)
            slug = unique_slug(connector.slug)
            document.update(slug=slug, name=f"{connector.name} (copy)", enabled=False)
            config.import_config({"connectors": [document]}, actor_for(request))
            self.message_user(request, f"Cloned {connector.slug} as {slug} (disabled).")

    @admin.action(description="Export selected connectors (YAML)")
    def export_selected(self, request, queryset):
        document = {"connectors": [config.export_connector(c) for c in queryset]}
        audit.record(
            "config.export",
            actor_for(request),
            changes={"connectors": [c.slug for c in queryset]},
        )
        response = HttpResponse(config.dump(document, "yaml"), content_type="application/yaml")
        response["Content-Disposition"] = 'attachment; filename="connectors.yaml"'
        return response

    def import_view(self, request):
        """Upload a configuration file: validated in full, applied in one transaction."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        problem = ""
        if request.method == "POST" and request.FILES.get("file"):
            upload = request.FILES["file"]
            try:
                text = upload.read(2_000_000).decode("utf-8")
                summary = config.import_config(config.load(text), actor_for(request))
            except UnicodeDecodeError:
                problem = "The file is not UTF-8 text."
            except config.ConfigFileError as error:
                problem = f"Nothing was imported:\n{error}"
            else:
                self.message_user(request, f"Imported {upload.name}: {summary}.", messages.SUCCESS)
                return redirect("admin:connectors_connector_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a configuration file",
            "opts": self.opts,
            "problem": problem,
        }
        return TemplateResponse(request, "admin/connectors/connector/import.html", context)

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="connectors_connector_import",
            ),
            path(
                "database-schema/",
                self.admin_site.admin_view(partial(kind_tools.database_schema, self)),
                name="connectors_connector_database_schema",
            ),
            path(
                "folder-contents/",
                self.admin_site.admin_view(partial(kind_tools.folder_contents, self)),
                name="connectors_connector_folder_contents",
            ),
            path(
                "<int:object_id>/test-delivery/",
                self.admin_site.admin_view(self.test_delivery_view),
                name="connectors_connector_test_delivery",
            ),
            path(
                "<int:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="connectors_connector_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request, object_id: int):
        """Paste a sample record: mapped fields, redaction, prompt; optionally one AI call."""
        connector = self.get_object(request, str(object_id))
        if connector is None or not self.has_view_permission(request, connector):
            raise PermissionDenied
        sample = request.POST.get("sample") or sample_record(connector)
        shown, problem = None, ""
        if request.method == "POST":
            try:
                record = json.loads(sample)
            except json.JSONDecodeError as error:
                problem = f"The sample is not valid JSON: {error.msg} (line {error.lineno})."
            else:
                if "try" in request.POST:
                    if not self.has_change_permission(request, connector):
                        raise PermissionDenied
                    shown = preview.try_it(connector, record)
                    audit.record(
                        "connector.try_it",
                        actor_for(request),
                        connector,
                        connector=connector.slug,
                        changes={"tokens_in": shown.tokens_in, "tokens_out": shown.tokens_out},
                    )
                else:
                    shown, problem = self.preview_with_answer(request, connector, record)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Preview: {connector.name}",
            "opts": self.opts,
            "original": connector,
            "sample": sample,
            "problem": problem,
            "shown": shown,
            "prompt_spans": preview.highlight_spans(shown.prompt) if shown else [],
            "redacted_rows": [
                (name, shown.mapped.get(name), preview.highlight_spans(json_text(value)))
                for name, value in shown.redacted.items()
            ]
            if shown and not shown.error
            else [],
            "can_try": self.has_change_permission(request, connector),
            "sample_answer": request.POST.get("sample_answer", ""),
            "asks_for_answer": connector.review_policy == Connector.ReviewPolicy.CONDITION,
        }
        return TemplateResponse(request, "admin/connectors/connector/preview.html", context)

    def preview_with_answer(self, request, connector, record) -> tuple:
        """Preview, and whether the review policy holds it given the pasted sample answer."""
        shown = preview.preview(connector, record)
        text = request.POST.get("sample_answer", "").strip()
        if not text:
            return preview.judge(connector, shown), ""
        try:
            answer = json.loads(text)
        except json.JSONDecodeError as error:
            return shown, f"The sample answer is not valid JSON: {error.msg}."
        return preview.judge(connector, shown, answer), ""

    def has_issue_key_permission(self, request) -> bool:
        return request.user.has_perm("connectors.add_apikey")

    @admin.action(description="Test the source and sink connections", permissions=["change"])
    def test_connections(self, request, queryset):
        for connector in queryset:
            for what, test in (
                ("source", lambda c=connector: polling.build_source(c).test_connection()),
                ("sink", lambda c=connector: pipeline.build_sink(c).test_connection()),
            ):
                try:
                    answer = test()
                except Exception as error:  # any failure is the message, never a 500
                    self.message_user(
                        request,
                        f"{connector.slug} {what}: {polling.describe(error)}",
                        messages.ERROR,
                    )
                else:
                    self.message_user(
                        request, f"{connector.slug} {what}: {answer}", messages.SUCCESS
                    )

    @admin.action(description="Create an API key (shown once)", permissions=["issue_key"])
    def create_api_key(self, request, queryset):
        issued = []
        for connector in queryset:
            api_key, plain, _ = ApiKey.issue(connector, name=f"created by {request.user}")
            audit.record("api_key.create", actor_for(request), api_key, connector=connector.slug)
            issued.append((api_key, plain, None))
        return show_issued_keys(request, self, issued)


def unique_slug(slug: str) -> str:
    candidate, number = f"{slug}-copy", 2
    while Connector.objects.filter(slug=candidate).exists():
        candidate, number = f"{slug}-copy-{number}", number + 1
    return candidate


def sample_record(connector: Connector) -> str:
    """A skeleton sample built from the input mappings' paths."""
    skeleton: dict = {}
    for item in connector.mappings.filter(direction=FieldMapping.Direction.INPUT):
        parts = item.source_path.split(".")
        node = skeleton
        for part in parts[:-1]:
            node = node.setdefault(part.split("[")[0], {})
        node[parts[-1].split("[")[0]] = f"sample {item.target_name}"
    return json.dumps(skeleton, indent=2)


def json_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def show_issued_keys(request, model_admin, issued) -> TemplateResponse:
    """Render new keys in the response itself: never in a message cookie, never again."""
    response = TemplateResponse(
        request,
        "admin/connectors/apikey/issued.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": "API key created",
            "issued": issued,
            "opts": ApiKey._meta,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response
