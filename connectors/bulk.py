"""Many-row inserts without the ORM's per-value SQL compilation, which dominates bulk_create
for wide rows (a 1,000-record body: one job row and one audit event each). The values are the
ones bulk_create would store (each field's pre_save, then get_db_prep_save); only the
statement is built once and run with executemany."""

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.constants import OnConflict
from django.db.models.fields import AutoFieldMixin


def insert(objects: list, *, ignore_conflicts: bool = False) -> None:
    """INSERT the objects (of one model) in one executemany; an auto primary key is left to the
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
    ops, quote = connection.ops, connection.ops.quote_name
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = (
        f"{ops.insert_statement(on_conflict=on_conflict)} {quote(meta.db_table)} ({columns}) "
        f"VALUES ({placeholders}){ops.on_conflict_suffix_sql(fields, on_conflict, None, None)}"
    )
    rows = [
        [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]
        for obj in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)  # names are the model's own, quoted; values are params
    for obj in objects:
        obj._state.adding, obj._state.db = False, connection.alias
