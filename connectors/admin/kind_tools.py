"""Look-ups the kind forms make while an admin fills them in: the tables and columns of a legacy
database, the files of a drop folder. JSON answers; a failure is a 400 naming the problem."""

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import JsonResponse

from connectors import legacy_db, polling
from connectors.models import Credential
from connectors.sources.file_drop import FileDropSource


def refused(code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=400)


def lookup(view):
    """By POST (the page's CSRF token), for whoever may add or change connectors."""

    @wraps(view)
    def checked(model_admin, request) -> JsonResponse:
        if request.method != "POST":
            return JsonResponse({"code": "method", "detail": "use POST"}, status=405)
        if not (
            model_admin.has_add_permission(request) or model_admin.has_change_permission(request)
        ):
            raise PermissionDenied
        return view(model_admin, request)

    return checked


@lookup
def database_schema(model_admin, request) -> JsonResponse:
    """The tables the named database credential reaches; with `table`, that table's columns."""
    name, table = request.POST.get("credential", ""), request.POST.get("table", "")
    credential = Credential.objects.filter(name=name).first()
    if credential is None:
        return refused("unknown_credential", f"no credential named {name!r}: choose one first")
    try:
        engine = legacy_db.engine_for(credential.reveal())
        if table:
            return JsonResponse({"table": table, "columns": legacy_db.column_names(engine, table)})
        return JsonResponse({"tables": legacy_db.table_names(engine)})
    except ValueError as error:
        return refused("not_found", str(error))
    except Exception as error:  # a driver's failure is the answer, without its URL or values
        return refused("cannot_connect", f"cannot reach the database: {polling.describe(error)}")


@lookup
def folder_contents(model_admin, request) -> JsonResponse:
    """What the file drop sees in its folder: names, sizes, modified times (bounded)."""
    path, pattern = request.POST.get("path", ""), request.POST.get("pattern", "") or "*"
    try:
        FileDropSource.validate_config({"path": path, "pattern": pattern})
        return JsonResponse({"path": path, **FileDropSource.folder_contents(path, pattern)})
    except ValueError as error:
        return refused("invalid", str(error))
    except OSError as error:
        return refused("unreadable", f"cannot read {path}: {error.strerror or error}")
