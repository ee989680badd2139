"""Course materials API: list and upload a course's documents, read, replace and delete one, and
search a course's material the way the tutor does. Views authenticate, call a selector or service,
serialize; errors take the one JSON shape of courses/api/errors.py.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from courses import documents as document_services
from courses import selectors
from courses.api.errors import error_responses
from courses.api.pagination import DefaultPagination
from courses.api.parsers import JSONParser
from courses.exceptions import FileTooLarge, Forbidden
from courses.models import CourseDocument
from courses.retrieval import passages_search, retrieval_mode

# Room for the multipart envelope (boundaries, the title field) on top of the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
SEARCH_QUERY_MAX_LENGTH = 500


class DocumentSerializer(serializers.ModelSerializer):
    chunk_count = serializers.IntegerField(read_only=True, help_text="Passages stored for search.")
    file_url = serializers.SerializerMethodField(help_text="The uploaded file (portal session or token).")

    class Meta:
        model = CourseDocument
        fields = [
            "id",
            "course",
            "title",
            "status",
            "progress",
            "error",
            "content_type",
            "size_bytes",
            "page_count",
            "chunk_count",
            "revision",
            "file_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_file_url(self, document: CourseDocument) -> str:
        if not document.file:
            return ""
        return reverse("course-document-file", args=[document.course_id, document.pk])


class DocumentStatusSerializer(serializers.ModelSerializer):
    """What an upload answers: enough to poll `GET /documents/<id>/` until ready or failed."""

    class Meta:
        model = CourseDocument
        fields = ["id", "status", "progress", "error", "title", "revision"]
        read_only_fields = fields


class DocumentUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="PDF, Markdown, plain text, DOCX or PPTX.")
    title = serializers.CharField(
        max_length=255, required=False, allow_blank=True, help_text="Defaults to the file name."
    )


class DocumentReplaceSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The new version; the document is ingested again.")


class SearchHitSerializer(serializers.Serializer):
    document = serializers.CharField()
    document_id = serializers.IntegerField()
    chunk_id = serializers.IntegerField()
    page = serializers.IntegerField(allow_null=True)
    heading = serializers.CharField()
    text = serializers.CharField()
    score = serializers.FloatField()
    lexical_rank = serializers.IntegerField(allow_null=True)
    semantic_rank = serializers.IntegerField(allow_null=True)


class SearchResultSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=["lexical", "hybrid"])
    results = SearchHitSerializer(many=True)


def _refuse_oversized_body(request: Request) -> None:
    """413 before the body is read, when the client announces more than any allowed upload."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    limit = int(settings.MAX_UPLOAD_BYTES)
    if length > limit + MULTIPART_OVERHEAD_BYTES:
        raise FileTooLarge(f"The upload is {length / 1_048_576:.1f} MB; the limit is {limit / 1_048_576:.0f} MB.")


_PARSERS = (MultiPartParser, FormParser, JSONParser)


class CourseDocumentListView(APIView):
    """A course's documents (everyone who sees the course); upload one (its professors)."""

    parser_classes = _PARSERS

    @extend_schema(
        operation_id="course_documents_list",
        tags=["documents"],
        responses={200: DocumentSerializer(many=True), **error_responses(401, 404)},
    )
    def get(self, request: Request, course_id: int) -> Response:
        course = selectors.course_get_for_user(user=request.user, course_id=course_id)
        documents = selectors.document_list_for_user(user=request.user).filter(course=course)
        paginator = DefaultPagination()
        page = paginator.paginate_queryset(documents, request, view=self)
        return paginator.get_paginated_response(DocumentSerializer(page, many=True).data)

    @extend_schema(
        operation_id="course_documents_upload",
        tags=["documents"],
        request={"multipart/form-data": DocumentUploadSerializer},
        responses={201: DocumentStatusSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
        description="Multipart `file` (and optional `title`). Answers at once with `status: pending`; "
        "ingestion runs in the background: poll `GET /api/v1/documents/<id>/` for `progress` (0-100) "
        "until `ready` or `failed` (with `error`, a reason for people). 413 `file_too_large` past "
        "MAX_UPLOAD_BYTES, 415 `unsupported_file_type` for other formats, 403 for a student.",
    )
    def post(self, request: Request, course_id: int) -> Response:
        course = selectors.course_get_for_user(user=request.user, course_id=course_id)
        if not selectors.user_can_teach(user=request.user, course=course):
            raise Forbidden("Only the course's professors may add materials.")
        _refuse_oversized_body(request)
        serializer = DocumentUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = document_services.document_upload(
            user=request.user,
            course=course,
            file=serializer.validated_data["file"],
            title=serializer.validated_data.get("title", ""),
        )
        return Response(DocumentStatusSerializer(document).data, status=status.HTTP_201_CREATED)


class DocumentDetailView(APIView):
    """One document: its ingestion status; replace its file or delete it (the course's professors)."""

    parser_classes = _PARSERS

    @extend_schema(
        operation_id="documents_retrieve",
        tags=["documents"],
        responses={200: DocumentSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, document_id: int) -> Response:
        document = selectors.document_get_for_user(user=request.user, document_id=document_id)
        return Response(DocumentSerializer(document).data)

    @extend_schema(
        operation_id="documents_replace",
        tags=["documents"],
        request={"multipart/form-data": DocumentReplaceSerializer},
        responses={200: DocumentStatusSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
        description="A new file for the document: its revision goes up and it is ingested again "
        "(`status: pending`, `progress: 0`).",
    )
    def put(self, request: Request, document_id: int) -> Response:
        document = selectors.document_get_for_user(user=request.user, document_id=document_id)
        if not selectors.user_can_teach(user=request.user, course=document.course):
            raise Forbidden("Only the course's professors may replace its materials.")
        _refuse_oversized_body(request)
        serializer = DocumentReplaceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = document_services.document_replace(
            user=request.user, document=document, file=serializer.validated_data["file"]
        )
        return Response(DocumentStatusSerializer(document).data)

    @extend_schema(
        operation_id="documents_destroy",
        tags=["documents"],
        responses={204: None, **error_responses(401, 403, 404)},
        description="Deletes the document, its passages and its file.",
    )
    def delete(self, request: Request, document_id: int) -> Response:
        document = selectors.document_get_for_user(user=request.user, document_id=document_id)
        document_services.document_delete(user=request.user, document=document)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CourseDocumentSearchView(APIView):
    """What the tutor would read for a question: the course's best passages (its professors)."""

    @extend_schema(
        operation_id="course_documents_search",
        tags=["documents"],
        parameters=[
            OpenApiParameter("q", str, required=True, description="The question."),
            OpenApiParameter("limit", int, required=False, description="1-20, default TUTOR_PASSAGES."),
        ],
        responses={200: SearchResultSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, course_id: int) -> Response:
        course = selectors.course_get_for_user(user=request.user, course_id=course_id)
        if not selectors.user_can_teach(user=request.user, course=course):
            raise Forbidden("Only the course's professors may search its materials here.")
        params = _SearchParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        hits = passages_search(
            course_id=course.pk,
            tenant_id=course.tenant_id,
            query=params.validated_data["q"],
            limit=params.validated_data.get("limit") or int(settings.TUTOR_PASSAGES),
        )
        return Response(SearchResultSerializer({"mode": retrieval_mode(), "results": hits}).data)


class _SearchParams(serializers.Serializer):
    q = serializers.CharField(max_length=SEARCH_QUERY_MAX_LENGTH)
    limit = serializers.IntegerField(min_value=1, max_value=20, required=False)
