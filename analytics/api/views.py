"""Analytics API: a session's analytics, one student's evidence, a student's trend, recompute,
exports. Access rules are analytics/selectors.py; errors are the API's one JSON shape."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import exports, selectors, services
from analytics.api.serializers import (
    SessionAnalyticsSerializer,
    StudentDetailSerializer,
    StudentProgressSerializer,
)
from courses.api.errors import error_responses
from sessions.models import LiveSession

TAGS = ["analytics"]


class SessionAnalyticsApi(APIView):
    @extend_schema(
        operation_id="sessions_analytics",
        summary="A session's analytics (a student sees only their own numbers; pending: queued)",
        responses={200: SessionAnalyticsSerializer, **error_responses(401, 403, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: int) -> Response:
        access = selectors.analytics_access(user=request.user, session_id=session_id)
        analytics = services.session_analytics_ensure(session=access.session)
        return Response(selectors.analytics_document(access=access, analytics=analytics))


class StudentAnalyticsApi(APIView):
    @extend_schema(
        operation_id="sessions_analytics_student",
        summary="One student's numbers in a session, with the transcript lines behind them",
        responses={200: StudentDetailSerializer, **error_responses(401, 403, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: int, student_id: int) -> Response:
        access = selectors.analytics_access_student(user=request.user, session_id=session_id, student_id=student_id)
        return Response(selectors.student_document(access=access, student_id=student_id))


class SessionAnalyticsRecomputeApi(APIView):
    @extend_schema(
        operation_id="sessions_analytics_recompute",
        summary="Queue the session's analytics computation again (its professors, staff)",
        request=None,
        responses={202: SessionAnalyticsSerializer, **error_responses(401, 403, 404)},
        tags=TAGS,
    )
    def post(self, request: Request, session_id: int) -> Response:
        access = selectors.analytics_access_full(user=request.user, session_id=session_id)
        analytics = services.session_analytics_queue(
            session_id=access.session.pk, final=access.session.status == LiveSession.Status.ENDED
        )
        return Response(
            selectors.analytics_document(access=access, analytics=analytics), status=status.HTTP_202_ACCEPTED
        )


class SessionAnalyticsExportApi(APIView):
    @extend_schema(
        operation_id="sessions_analytics_export",
        summary="The session's analytics as CSV (one row per student) or JSON (the API document)",
        parameters=[OpenApiParameter("fmt", str, OpenApiParameter.PATH, enum=list(exports.FORMATS))],
        responses={(200, "text/csv"): str, **error_responses(401, 403, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, session_id: int, fmt: str) -> HttpResponse:
        access = selectors.analytics_access_full(user=request.user, session_id=session_id)
        return exports.analytics_export(access=access, fmt=fmt)


class StudentProgressApi(APIView):
    @extend_schema(
        operation_id="students_progress",
        summary="A student's numbers session by session (?course= for one course), for trends",
        parameters=[OpenApiParameter("course", int, description="Only this course's sessions.")],
        responses={200: StudentProgressSerializer, **error_responses(400, 401, 403, 404)},
        tags=TAGS,
    )
    def get(self, request: Request, student_id: int) -> Response:
        return Response(
            selectors.student_progress_rows(
                user=request.user, student_id=student_id, course=request.query_params.get("course")
            )
        )
