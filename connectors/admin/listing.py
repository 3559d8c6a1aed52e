"""What keeps the big lists (jobs, audit events) fast at 100,000 rows and more.

Counting and listing distinct values are what a change list spends its time on at that size,
not the page of rows itself: on PostgreSQL a large count is the planner's estimate (marked
"about" on the page) and the distinct values of an indexed column come from a walk of its index.
"""

import json

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from connectors import labels

ESTIMATE_ABOVE = 10_000  # below that, an exact count is cheap enough


class EstimatedCountPaginator(Paginator):
    """Counts exactly while the estimate is small, else shows the estimate (PostgreSQL only)."""

    is_estimate = False

    @cached_property
    def count(self) -> int:
        estimate = estimated_count(self.object_list)
        if estimate is not None and estimate > ESTIMATE_ABOVE:
            self.is_estimate = True
            return estimate
        return super().count


def estimated_count(queryset) -> int | None:
    """The planner's row estimate for the queryset; None where there is none to ask."""
    if connection.vendor != "postgresql":
        return None
    if not queryset.query.where:
        table = queryset.model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
            row = cursor.fetchone()
        if row is not None and row[0] >= 0:  # -1: never analysed
            return int(row[0])
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def distinct_values(model, field_name: str) -> list[str]:
    """The column's distinct non-empty values. On PostgreSQL a recursive walk of the column's
    index (one index probe per value) instead of a DISTINCT that reads every row."""
    if connection.vendor != "postgresql":
        values = model.objects.exclude(**{field_name: ""}).values_list(field_name, flat=True)
        return list(values.order_by(field_name).distinct())
    quote = connection.ops.quote_name
    table, column = quote(model._meta.db_table), quote(model._meta.get_field(field_name).column)
    # Only the model's own table and column names are formatted in, quoted.
    sql = (
        f"WITH RECURSIVE walk(value) AS ("  # noqa: S608
        f" SELECT MIN({column}) FROM {table} WHERE {column} > ''"
        f" UNION ALL SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > walk.value)"
        f" FROM walk WHERE walk.value IS NOT NULL"
        f") SELECT value FROM walk WHERE value IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]


def indexed_values_filter(field_name: str, title: str) -> type[admin.SimpleListFilter]:
    """A filter on an indexed text column whose choices come from distinct_values; its URL
    parameter is the field's name, as Django's own AllValuesFieldListFilter has it."""

    class IndexedValuesFilter(admin.SimpleListFilter):
        parameter_name = field_name

        def lookups(self, request, model_admin):
            return [(value, value) for value in distinct_values(model_admin.model, field_name)]

        def queryset(self, request, queryset):
            if self.value():
                return queryset.filter(**{field_name: self.value()})
            return queryset

    IndexedValuesFilter.title = title
    IndexedValuesFilter.__name__ = f"{field_name.title().replace('_', '')}Filter"
    return IndexedValuesFilter


class ConnectorFilter(admin.RelatedFieldListFilter):
    """Connectors by name, with the slug where names collide (an imported copy keeps its
    source's name)."""

    def field_choices(self, field, request, model_admin):
        return sorted(labels.connector_labels().items(), key=lambda item: item[1].lower())


class FastCheckboxMixin:
    """The action checkbox as one format_html: Django renders a form widget template per row,
    a quarter of a 100-row page's time."""

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj):
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" '
            'aria-label="Select this object for an action - {}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            obj.pk,
        )
