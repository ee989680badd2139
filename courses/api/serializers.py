"""API input and output shapes for tokens, `me` and courses. Serializers only validate and shape."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from courses.models import Course, Professor, Tenant, User

USERNAME_MAX_LENGTH = User._meta.get_field("username").max_length
# Long enough for any passphrase, short enough that hashing it costs nothing unusual.
PASSWORD_MAX_LENGTH = 1024
# Our JWTs are a few hundred characters; anything far longer is not one of ours.
TOKEN_MAX_LENGTH = 4096


class StrictCharField(serializers.CharField):
    """A CharField that takes strings only: `12`, `true`, `[...]` are refused, not coerced.

    DRF's CharField also refuses NUL bytes and lone surrogates, so such input never reaches the
    database (PostgreSQL rejects NUL in text; it would otherwise surface as a 500).
    """

    default_error_messages = {"not_a_string": _("Not a valid string.")}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


# --- Tokens -------------------------------------------------------------------------------


class TokenObtainSerializer(serializers.Serializer):
    username = StrictCharField(max_length=USERNAME_MAX_LENGTH)
    password = StrictCharField(
        max_length=PASSWORD_MAX_LENGTH,
        trim_whitespace=False,
        write_only=True,
        style={"input_type": "password"},
    )

    def validate_username(self, value: str) -> str:
        # The portal's login form normalises the same way (NFKC), so both accept the same names.
        return User.normalize_username(value)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(
        read_only=True, help_text="Short-lived; send as `Authorization: Bearer <access>`."
    )
    refresh = serializers.CharField(
        read_only=True, help_text="Longer-lived; exchange at /api/v1/auth/token/refresh/."
    )


class TokenRefreshSerializer(serializers.Serializer):
    refresh = StrictCharField(max_length=TOKEN_MAX_LENGTH, trim_whitespace=False)


class AccessTokenSerializer(serializers.Serializer):
    access = serializers.CharField(read_only=True)


# --- Me ------------------------------------------------------------------------------------


class TenantSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["id", "name", "slug"]
        read_only_fields = fields


class MeSerializer(serializers.ModelSerializer):
    tenant = TenantSummarySerializer(
        read_only=True,
        allow_null=True,
        help_text="The caller's institution; null only for a superuser outside any tenant.",
    )

    class Meta:
        model = User
        fields = ["id", "username", "first_name", "last_name", "role", "tenant"]
        read_only_fields = fields


# --- Courses -------------------------------------------------------------------------------


class ProfessorSummarySerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="__str__", read_only=True, help_text='e.g. "Dr. Ada Lovelace"')

    class Meta:
        model = Professor
        fields = ["id", "name"]
        read_only_fields = fields


class CourseSerializer(serializers.ModelSerializer):
    professors = ProfessorSummarySerializer(many=True, read_only=True)
    student_count = serializers.IntegerField(read_only=True, help_text="Students actively enrolled.")

    class Meta:
        model = Course
        fields = [
            "id",
            "code",
            "title",
            "description",
            "professors",
            "student_count",
            "default_teaching_mode",
            "is_active",
        ]
        read_only_fields = fields
