"""Many single-row UPDATEs sent as one executemany per set of columns.

`Model.objects.filter(**keys).update(**fields)` per row spends more time compiling its query
than the database spends running it, and each is a round trip; psycopg sends an executemany in
one pipeline. The statement and the values are the ones update() would send: each value goes
through its field's get_db_prep_save, and an expression (`F("tokens_in") + 3`) is compiled by
Django itself (tests/test_row_updates.py holds the two equal, value by value).
"""

from collections.abc import Sequence

from django.db import connection
from django.db.models.sql import UpdateQuery


def update_each(model, keys: Sequence[str], rows: Sequence[tuple[Sequence, dict]]) -> None:
    """For each (key values, fields) of `rows`: UPDATE the model's rows whose `keys` columns
    equal the key values, setting `fields`, as `filter(**dict(zip(keys, values))).update(**fields)`
    would. Rows with the same fields (and the same expression shapes) share a statement."""
    meta, quote = model._meta, connection.ops.quote_name
    key_fields = [meta.get_field(name) for name in keys]
    where = " AND ".join(f"{quote(field.column)} = %s" for field in key_fields)
    statements: dict[tuple, list[list]] = {}
    for key_values, fields in rows:
        assignments, params = [], []
        for name, value in fields.items():
            field = meta.get_field(name)
            if hasattr(value, "resolve_expression"):
                sql, expression_params = _compiled(model, value)
                assignments.append(f"{quote(field.column)} = {sql}")
                params.extend(expression_params)
            else:
                assignments.append(f"{quote(field.column)} = %s")
                params.append(field.get_db_prep_save(value, connection))
        params.extend(
            field.get_db_prep_value(value, connection)
            for field, value in zip(key_fields, key_values, strict=True)
        )
        statements.setdefault(tuple(assignments), []).append(params)
    with connection.cursor() as cursor:
        for assignments, param_rows in statements.items():
            # Only the model's own table and column names are formatted in, quoted (and the
            # SQL Django compiled for an expression); values are parameters.
            sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} WHERE {where}"  # noqa: S608
            cursor.executemany(sql, param_rows)


def _compiled(model, expression) -> tuple[str, list]:
    """The SQL and parameters Django's update() sends for an expression value."""
    query = UpdateQuery(model)
    compiler = query.get_compiler(connection=connection)
    resolved = expression.resolve_expression(query, allow_joins=False, for_save=True)
    sql, params = compiler.compile(resolved)
    return sql, list(params)
