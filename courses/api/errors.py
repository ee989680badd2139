"""The one JSON error shape of the API: `{"error": {"code", "message", "fields"?}}` with a 4xx.

`api_exception_handler` is DRF's EXCEPTION_HANDLER; `error_response` serves plain Django views
(health, 404 under /api/) so every error a client sees has the same shape. `ErrorSerializer` and
`error_responses()` document that shape in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from courses.exceptions import DomainError


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def error_response(code: str, message: str, status_code: int, fields=None) -> JsonResponse:
    return JsonResponse(error_body(code, message, fields), status=status_code)


@csrf_exempt  # a POST to an unknown URL is a 404, not a CSRF failure page
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """The last route under /api/: unknown URLs answer in the error shape, never an HTML page."""
    message = f"No API endpoint at {request.path}."
    if not request.path.endswith("/"):
        message += " API URLs end with a slash."
    return error_response("not_found", message, status.HTTP_404_NOT_FOUND)


def _flatten_fields(detail: Any) -> dict[str, list[str]]:
    """DRF's nested detail -> {"field": ["message", ...]}, nested fields joined with dots."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list):
            if all(not isinstance(v, dict | list) for v in value):
                out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in value)
            else:
                for i, sub in enumerate(value):
                    walk(f"{prefix}.{i}" if prefix else str(i), sub)
        else:
            out.setdefault(prefix or "non_field_errors", []).append(str(value))

    walk("", detail)
    return out


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        headers = None
        # e.g. a login lockout: tell clients when to come back, as DRF does for Throttled
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers = {"Retry-After": str(int(retry_after))}
        return Response(
            error_body(exc.code, exc.message, exc.fields), status=exc.http_status, headers=headers
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's 500 handling (and logging) takes over

    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten_fields(exc.detail)
        first = next(iter(fields.values()), ["Invalid input."])[0]
        response.data = error_body("invalid", first, fields)
    else:
        detail = getattr(exc, "detail", None)
        code = detail.code if hasattr(detail, "code") else getattr(exc, "default_code", "error")
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response.status_code = status.HTTP_401_UNAUTHORIZED
        message = str(detail) if detail is not None else str(exc)
        if isinstance(detail, dict):  # e.g. simplejwt's {"detail", "code", "messages"}
            message = str(detail.get("detail", message))
            code = str(detail.get("code", code))
        response.data = error_body(str(code), message)
    return response


# --- The shape in the OpenAPI schema --------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable: `invalid`, `not_found`, ...")
    message = serializers.CharField(help_text="For people; may change.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Only for `invalid`: the messages per input field (nested fields joined by dots).",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_ERROR_DESCRIPTIONS = {
    400: "Invalid input (`invalid` with `fields`, `parse_error`).",
    401: "Not authenticated, or the token is invalid or expired.",
    403: "Authenticated but not allowed.",
    404: "No such object, or not yours to see.",
    405: "Method not allowed.",
    409: "The object is not in a state that allows this.",
    415: "Unsupported media type.",
    429: "Too many requests (`throttled`, `locked_out`); see the Retry-After header.",
}


def error_responses(*status_codes: int) -> dict[int, OpenApiResponse]:
    """`extend_schema(responses={200: X, **error_responses(400, 401)})` documents the error shape."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=_ERROR_DESCRIPTIONS.get(code, "Error."))
        for code in status_codes
    }
