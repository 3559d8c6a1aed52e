"""Many-row inserts without the ORM's per-value SQL compilation, which dominates bulk_create
for wide rows (a 1,000-record body: one job row and one audit event each). The values are the
ones bulk_create would store (each field's pre_save, then get_db_prep_save); only the
statement is built once, each column's conversion is chosen once (text, integer and boolean
values already of their type go in as they are), and the rows go in with one COPY on
PostgreSQL, else one executemany."""

from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import JSONField
from django.db.models import fields as model_fields
from django.db.models.constants import OnConflict
from django.db.models.fields import AutoFieldMixin

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


def insert(objects: list, *, ignore_conflicts: bool = False) -> None:
    """INSERT the objects (of one model) in one statement; an auto primary key is left to the
    database (not read back). `ignore_conflicts`: rows that violate a unique constraint are
    skipped, as bulk_create(ignore_conflicts=True) does."""
    if not objects:
        return
    connection = connections[DEFAULT_DB_ALIAS]  # not the proxy: it is read per value
    meta = type(objects[0])._meta
    fields = [
        field
        for field in meta.local_concrete_fields
        if not (field.primary_key and isinstance(field, AutoFieldMixin))
    ]
    adapters = [column_adapter(field, connection) for field in fields]
    rows = [[adapt(obj) for adapt in adapters] for obj in objects]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    with connection.cursor() as cursor:
        # Names are the model's own, quoted; values are parameters (or COPY data).
        if connection.vendor == "postgresql" and not ignore_conflicts:
            copy_sql = f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN"
            with connection.wrap_database_errors, cursor.cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            sql = insert_sql(connection, meta, fields, columns, ignore_conflicts)
            cursor.executemany(sql, rows)
    for obj in objects:
        obj._state.adding, obj._state.db = False, connection.alias


def insert_sql(connection, meta, fields: list, columns: str, ignore_conflicts: bool) -> str:
    ops = connection.ops
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None
    placeholders = ", ".join(["%s"] * len(fields))
    return (
        f"{ops.insert_statement(on_conflict=on_conflict)} {ops.quote_name(meta.db_table)} "
        f"({columns}) VALUES ({placeholders})"
        f"{ops.on_conflict_suffix_sql(fields, on_conflict, None, None)}"
    )


def column_adapter(field, connection) -> Callable:
    """obj -> the value bulk_create would store in this field's column."""

    def converted(obj):
        return field.get_db_prep_save(field.pre_save(obj, True), connection)

    attname, kind = field.attname, UNCHANGED.get(type(field), type(None))
    if not keeps_none(field):
        return converted

    def unchanged(obj):
        value = obj.__dict__[attname]
        return value if value is None or type(value) is kind else converted(obj)

    return unchanged


def keeps_none(field) -> bool:
    """Whether None is stored as NULL unconverted: Django's own fields, except a JSONField
    (whose None may be JSON null) and a date set on save (auto_now)."""
    return (
        type(field).__module__.startswith("django.db.models.fields")
        and not isinstance(field, JSONField)
        and not getattr(field, "auto_now", False)
        and not getattr(field, "auto_now_add", False)
    )
