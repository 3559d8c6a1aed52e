"""API errors: JSON with a stable `code` and a human `detail`, plus what was wrong."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with a stable code; extra keys (field, limit, index) go into the body."""

    def __init__(
        self, status_code: int, code: str, detail: str, *, headers: dict | None = None, **extra
    ) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.code = code
        self.headers = headers or {}
        self.extra = extra


# DRF's own exceptions, given stable codes of ours.
DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "invalid_api_key",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "malformed_json",
    exceptions.Throttled: "throttled",
}


def handle_exception(exc, context):
    if isinstance(exc, ApiError):
        return Response(
            {"code": exc.code, "detail": str(exc.detail), **exc.extra},
            exc.status_code,
            headers=exc.headers,
        )
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable: %s", exc)
        return Response(
            {
                "code": "database_unavailable",
                "detail": "The database is unavailable; nothing was accepted. Retry shortly.",
            },
            503,
            headers={"Retry-After": "5"},
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in DRF_CODES.items() if isinstance(exc, cls)), "invalid_request")
    detail = exc.detail
    body = {"code": code, "detail": str(detail) if isinstance(detail, str) else "invalid request"}
    if not isinstance(detail, str):
        body["errors"] = detail
    response.data = body
    return response


def json_not_found(request, exception=None):
    return JsonResponse({"code": "not_found", "detail": "No such endpoint."}, status=404)


def json_server_error(request):
    return JsonResponse(
        {"code": "server_error", "detail": "Internal error; it has been logged."}, status=500
    )
