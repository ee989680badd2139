"""Data-rights API (tenant staff): export a student's data, or erase it. Mounted under /api/v1/.

GET  students/<id>/export/              JSON (`?format=zip`: a zip with export.json and audio)
POST students/<id>/erase/  {"mode": "anonymise" | "delete"}

Professors and students get 403; a student of another tenant is 404. Every call is audited
(`DataRightsAudit`).
"""

from __future__ import annotations

from django.http import HttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.data_rights import (
    ERASE_MODES,
    student_data_erase,
    student_data_export,
    student_data_export_zip,
    student_get_for_data_rights,
)
from courses.api.errors import error_responses
from courses.exceptions import DomainError


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """`?format=zip` picks the export's shape here, not one of DRF's renderers."""

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type


class EraseSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=ERASE_MODES)


class EraseResultSerializer(serializers.Serializer):
    audit_id = serializers.IntegerField()
    student_id = serializers.IntegerField()
    action = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField())


class StudentExportApi(APIView):
    content_negotiation_class = JsonOnlyNegotiation

    @extend_schema(
        operation_id="students_export", tags=["data rights"],
        description="Everything held about a student (other students' words redacted). Tenant staff only.",
        parameters=[OpenApiParameter("format", str, enum=["json", "zip"], required=False)],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, student_id: int) -> Response | HttpResponse:
        student = student_get_for_data_rights(user=request.user, student_id=student_id)
        fmt = request.query_params.get("format", "json")
        if fmt == "zip":
            body = student_data_export_zip(student=student, by=request.user)
            response = HttpResponse(body, content_type="application/zip")
            response["Content-Disposition"] = f'attachment; filename="student-{student.pk}-export.zip"'
            return response
        if fmt != "json":
            raise DomainError("format is json or zip.", code="invalid", fields={"format": ["One of: json, zip."]})
        return Response(student_data_export(student=student, by=request.user))


class StudentEraseApi(APIView):
    @extend_schema(
        operation_id="students_erase", tags=["data rights"],
        description='Erase a student\'s personal data: "anonymise" keeps an empty account, "delete" removes it.',
        request=EraseSerializer,
        responses={200: EraseResultSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request: Request, student_id: int) -> Response:
        student = student_get_for_data_rights(user=request.user, student_id=student_id)
        serializer = EraseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        audit = student_data_erase(student=student, by=request.user, mode=serializer.validated_data["mode"])
        return Response(
            {"audit_id": audit.pk, "student_id": audit.student_id, "action": audit.action, "counts": audit.counts}
        )


urlpatterns = [
    path("students/<int:student_id>/export/", StudentExportApi.as_view(), name="student-export"),
    path("students/<int:student_id>/erase/", StudentEraseApi.as_view(), name="student-erase"),
]
