"""Many-row inserts without the ORM's per-value SQL compilation, which dominates bulk_create
for wide rows (a 1,000-record body: one job row and one audit event each). The values are the
ones bulk_create would store (each field's pre_save, then get_db_prep_save); only the
statement is built once, each column's conversion is chosen once (text, integer and boolean
values already of their type go in as they are), and the rows go in with one COPY on
PostgreSQL, else one executemany."""

import json
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime

import orjson
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import JSONField
from django.db.models import fields as model_fields
from django.db.models.base import ModelState
from django.db.models.constants import OnConflict
from django.db.models.fields import AutoFieldMixin

from connectors import canonical_json, database

# Field classes whose pre_save and get_db_prep_save return a value of this type unchanged
# (exact classes: a subclass may convert, e.g. an encrypted or lower-cased field).
UNCHANGED = {
    model_fields.CharField: str,
    model_fields.TextField: str,
    model_fields.SlugField: str,
    model_fields.IntegerField: int,
    model_fields.BigIntegerField: int,
    model_fields.SmallIntegerField: int,
    model_fields.PositiveIntegerField: int,
    model_fields.PositiveBigIntegerField: int,
    model_fields.PositiveSmallIntegerField: int,
    model_fields.BooleanField: bool,
}
# Field classes whose conversion depends on the value only, and whose values repeat.
VALUE_ONLY = (model_fields.GenericIPAddressField, model_fields.DecimalField)
# Fewer rows go in as INSERTs sent together (executemany pipelines them): a COPY is two round
# trips, and cannot run in a pipeline (database.pipelined).
COPY_FROM_ROWS = 50
AUTO_KEYS = (model_fields.AutoField, model_fields.BigAutoField, model_fields.SmallAutoField)


def insert(objects: list, *, ignore_conflicts: bool = False) -> None:
    """INSERT the objects (of one model) in one statement; an auto primary key is left to the
    database (not read back). `ignore_conflicts`: rows that violate a unique constraint are
    skipped, as bulk_create(ignore_conflicts=True) does."""
    if not objects:
        return
    connection = connections[DEFAULT_DB_ALIAS]  # not the proxy: it is read per value
    model = type(objects[0])
    copies = (
        connection.vendor == "postgresql"
        and not ignore_conflicts
        and len(objects) >= COPY_FROM_ROWS
        and not database.in_pipeline()  # a COPY cannot run there: INSERTs, sent together
    )
    fields, converters, columns = columns_of(connection, model, copies)
    rows = list(zip(*(values(objects) for values in converters), strict=True))
    meta, quote = model._meta, connection.ops.quote_name
    with connection.cursor() as cursor:
        # Names are the model's own, quoted; values are parameters (or COPY data).
        if copies:
            copy_sql = f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN"
            with connection.wrap_database_errors, cursor.cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            sql = insert_sql(connection, meta, fields, columns, ignore_conflicts)
            if len(rows) == 1:
                cursor.execute(sql, rows[0])
            else:
                cursor.executemany(sql, rows)
    for obj in objects:
        obj._state.adding, obj._state.db = False, connection.alias


def pipelined_for(rows: int) -> AbstractContextManager:
    """database.pipelined() for the statements of fewer than COPY_FROM_ROWS rows; more go in
    by COPY, which cannot run in a pipeline (and gains nothing from one)."""
    return database.pipelined() if rows < COPY_FROM_ROWS else nullcontext()


def build(model, common: dict, rows: Iterable[dict]) -> list:
    """Unsaved instances as model(**common, **row) makes them, without Model.__init__'s work
    per field for each row: one instance is made the ORM's way from `common` (relations by
    name are fine there), each row's instance copies its values, takes the row's (by attname:
    `connector_id`, not `connector`) and calls the callable defaults (id, now, dict) anew."""
    template = model(**common)
    values = {name: value for name, value in template.__dict__.items() if name != "_state"}
    meta, relations = model._meta, template._state.fields_cache
    attnames = {field.attname for field in meta.concrete_fields}
    fresh = [
        (field.attname, field.default)  # what get_default calls, without its lookups
        for field in meta.concrete_fields
        if field.has_default()
        and callable(field.default)
        and field.name not in common
        and field.attname not in common
    ]
    objects = []
    for row in rows:
        if not row.keys() <= attnames:
            raise TypeError(f"not {model.__name__} columns: {sorted(row.keys() - attnames)}")
        obj = model.__new__(model)
        obj.__dict__.update(values)
        for attname, default in fresh:
            if attname not in row:
                obj.__dict__[attname] = default()
        obj.__dict__.update(row)
        obj._state = ModelState()
        obj._state.fields_cache = dict(relations)
        objects.append(obj)
    return objects


def insert_sql(connection, meta, fields: list, columns: str, ignore_conflicts: bool) -> str:
    ops = connection.ops
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None
    placeholders = ", ".join(["%s"] * len(fields))
    return (
        f"{ops.insert_statement(on_conflict=on_conflict)} {ops.quote_name(meta.db_table)} "
        f"({columns}) VALUES ({placeholders})"
        f"{ops.on_conflict_suffix_sql(fields, on_conflict, None, None)}"
    )


def columns_of(connection, model, copies: bool) -> tuple[list, list[Callable], str]:
    """The model's inserted fields, for each a function of the objects giving its column
    (`column`), and the quoted column list, made once per connection (a thread's own: nothing
    is shared between threads) and model; the memoized conversions start empty each insert."""
    plans = connection.__dict__.setdefault("interlock_bulk_columns", {})
    plan = plans.get((model, copies))
    if plan is None:
        fields = [
            field
            for field in model._meta.local_concrete_fields
            if not (field.primary_key and isinstance(field, AutoFieldMixin))
        ]
        converters = [column(field, connection, copies=copies) for field in fields]
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        plan = plans[(model, copies)] = (fields, converters, columns)
    for values in plan[1]:
        if (seen := getattr(values.adapt, "seen", None)) is not None:
            seen.clear()
    return plan


def column(field, connection, *, copies: bool = False) -> Callable:
    """objects -> the column's value for each, as column_adapter gives it; when every value is
    None or of the type the column stores as it is, the values are taken with one check for
    the column instead of a call for each value."""
    kind, adapt = stored_as_is(field, connection), column_adapter(field, connection, copies=copies)
    attname = field.attname

    def values(objects: list) -> list:
        if kind is not None:
            taken = [obj.__dict__[attname] for obj in objects]
            if {type(value) for value in taken} <= {kind, type(None)} and (
                kind is not datetime or all(value.tzinfo for value in taken if value is not None)
            ):
                return taken
        return [adapt(obj) for obj in objects]

    values.adapt = adapt
    return values


def column_adapter(field, connection, *, copies: bool = False) -> Callable:
    """obj -> the value bulk_create would store in this field's column (`copies`: as COPY
    text on PostgreSQL, where a JSON value may be its JSON text)."""

    def converted(obj):
        return field.get_db_prep_save(field.pre_save(obj, True), connection)

    if copies and type(field) is JSONField:
        return json_text(field, converted)
    if isinstance(field, VALUE_ONLY):  # e.g. a body's events share the caller's address
        return memoized(converted, field.attname)
    if (kind := stored_as_is(field, connection)) is None:
        return converted
    attname = field.attname

    def unchanged(obj):
        value = obj.__dict__[attname]
        if value is None or (type(value) is kind and getattr(value, "tzinfo", True)):
            return value
        return converted(obj)

    return unchanged


def stored_as_is(field, connection) -> type | None:
    """The type of the values (an aware datetime's) this field stores unconverted, None too;
    type(None) when only None is; None when every value is converted."""
    if isinstance(field, VALUE_ONLY) or not keeps_none(field):
        return None
    if connection.vendor == "postgresql" and type(field) is model_fields.DateTimeField:
        return datetime  # PostgreSQL takes an aware datetime as it is
    if connection.features.has_native_uuid_field and type(field) is model_fields.UUIDField:
        return uuid.UUID
    if field.is_relation and type(field.target_field) in AUTO_KEYS:
        return int  # an integer key of the row it points to
    return UNCHANGED.get(type(field), type(None))


def json_text(field, converted: Callable) -> Callable:
    """The value's JSON text, as the field's Jsonb adapter would dump it; None as the field
    stores it."""
    attname, encoder = field.attname, field.encoder

    def adapt(obj):
        value = obj.__dict__[attname]
        if value is None:
            return converted(obj)
        if type(value) is dict and not value:
            return "{}"  # most of a new job's JSON columns
        if encoder is None and canonical_json.is_plain(value):
            try:  # the same JSON value (the database reads the text), written faster
                return orjson.dumps(value).decode()
            except TypeError:  # an integer beyond 64 bits
                pass
        return json.dumps(value, cls=encoder)

    return adapt


def memoized(converted: Callable, attname: str) -> Callable:
    """`converted` once per distinct value (for conversions that depend on the value only)."""
    seen: dict = {}

    def adapt(obj):
        value = obj.__dict__[attname]
        if value not in seen:
            seen[value] = converted(obj)
        return seen[value]

    adapt.seen = seen
    return adapt


def keeps_none(field) -> bool:
    """Whether None is stored as NULL unconverted: Django's own fields, except a JSONField
    (whose None may be JSON null) and a date set on save (auto_now)."""
    return (
        type(field).__module__.startswith("django.db.models.fields")
        and not isinstance(field, JSONField)
        and not getattr(field, "auto_now", False)
        and not getattr(field, "auto_now_add", False)
    )
