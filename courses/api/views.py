"""API views for `me` and courses: authenticate, call a selector, serialize. Nothing else."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from courses.api.errors import error_responses
from courses.api.serializers import CourseSerializer, MeSerializer
from courses.models import Course, Professor
from courses.selectors import course_list_for_user


class MeView(APIView):
    """The caller: who they are, their role and their institution."""

    @extend_schema(
        operation_id="me_retrieve", tags=["me"], responses={200: MeSerializer, **error_responses(401)}
    )
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)


def _courses_for(request: Request) -> QuerySet[Course]:
    # The selector scopes by tenant and role; the prefetch keeps the query count flat.
    return course_list_for_user(user=request.user).prefetch_related(
        Prefetch("professors", queryset=Professor.objects.select_related("user"))
    )


@extend_schema_view(
    get=extend_schema(
        operation_id="courses_list",
        tags=["courses"],
        description="Staff see all of their tenant's courses, professors the ones they teach, "
        "students the ones they are actively enrolled in. Ordered by code.",
        responses={200: CourseSerializer(many=True), **error_responses(401, 404)},
    )
)
class CourseListView(generics.ListAPIView):
    serializer_class = CourseSerializer

    def get_queryset(self) -> QuerySet[Course]:
        return _courses_for(self.request)


@extend_schema_view(
    get=extend_schema(
        operation_id="courses_retrieve",
        tags=["courses"],
        description="404 `not_found` for a course of another tenant or one the caller may not see.",
        responses={200: CourseSerializer, **error_responses(401, 404)},
    )
)
class CourseDetailView(generics.RetrieveAPIView):
    serializer_class = CourseSerializer

    def get_queryset(self) -> QuerySet[Course]:
        return _courses_for(self.request)
