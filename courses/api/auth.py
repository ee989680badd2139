"""Token endpoints for native clients: `POST auth/token/` and `POST auth/token/refresh/`.

Brute force is throttled by django-axes, like the portal login: the lockout is checked before
any password is looked at, each failure is recorded through Django's `authenticate()` (axes
listens to its `user_login_failed` signal), and a success clears the failures.
"""

from __future__ import annotations

from datetime import timedelta

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off, get_credentials
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import update_last_login
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.parsers import FormParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from courses.api.errors import error_responses
from courses.api.parsers import JSONParser
from courses.api.serializers import (
    AccessTokenSerializer,
    TokenObtainSerializer,
    TokenPairSerializer,
    TokenRefreshSerializer,
)
from courses.exceptions import RateLimited
from courses.models import User


class LockedOut(RateLimited):
    """Too many failed logins from this client for this username."""

    code = "locked_out"

    def __init__(self, cool_off: timedelta | None):
        if cool_off:
            message = (
                f"Too many failed login attempts. Try again in {_duration_in_words(cool_off)} at the latest."
            )
            self.retry_after = int(cool_off.total_seconds())
        else:  # AXES_COOLOFF_TIME = None locks until an administrator resets it
            message = "Too many failed login attempts. Ask an administrator to unlock the account."
            self.retry_after = None
        super().__init__(message)


def _duration_in_words(delta: timedelta) -> str:
    seconds = max(1, int(delta.total_seconds()))
    if seconds % 3600 == 0:
        n, unit = seconds // 3600, "hour"
    elif seconds % 60 == 0:
        n, unit = seconds // 60, "minute"
    else:
        n, unit = seconds, "second"
    return f"{n} {unit}{'' if n == 1 else 's'}"


def _strip_nul(request: Request) -> None:
    """Axes stores the User-Agent and Accept headers; PostgreSQL refuses NUL bytes in text."""
    for key in ("HTTP_USER_AGENT", "HTTP_ACCEPT"):
        value = request.META.get(key)
        if value and "\x00" in value:
            request.META[key] = value.replace("\x00", "")


def _invalid_credentials() -> AuthenticationFailed:
    # The same answer for an unknown user, a wrong password and an inactive account: no oracle.
    return AuthenticationFailed("Invalid username or password.", code="invalid_credentials")


def token_user_authenticate(*, request: Request, username: str, password: str) -> User:
    """The active user with these credentials, or AuthenticationFailed / LockedOut (HTTP 429)."""
    axes_enabled = getattr(settings, "AXES_ENABLED", True)
    credentials = get_credentials(username)
    # Checked first, so a locked-out client learns nothing, even with the right password.
    if axes_enabled and not AxesProxyHandler.is_allowed(request, credentials):
        raise LockedOut(get_cool_off(request))

    user = authenticate(request=request, username=username, password=password)
    if user is None:
        # Set by axes when this failure reached the limit (or its backend refused the attempt).
        if getattr(request, "axes_locked_out", False):
            raise LockedOut(get_cool_off(request))
        raise _invalid_credentials()
    if not user.is_active:  # ModelBackend already refuses them; another backend might not
        raise _invalid_credentials()

    if axes_enabled and settings.AXES_RESET_ON_SUCCESS:
        # What axes does on the portal's `user_logged_in` signal, without creating a session.
        AxesProxyHandler.reset_attempts(
            username=username, ip_address=getattr(request, "axes_ip_address", None)
        )
    return user


class _TokenView(APIView):
    authentication_classes = ()
    permission_classes = ()
    parser_classes = (JSONParser, FormParser)

    def get_authenticate_header(self, request: Request) -> str:
        return f'{jwt_settings.AUTH_HEADER_TYPES[0]} realm="api"'


class TokenObtainView(_TokenView):
    """Log in with a username and password: a short-lived access token and a refresh token."""

    @extend_schema(
        operation_id="auth_token_obtain",
        tags=["auth"],
        request=TokenObtainSerializer,
        responses={200: TokenPairSerializer, **error_responses(400, 401, 415, 429)},
        auth=[],
        description=(
            "401 `invalid_credentials` for a wrong username or password or an inactive account. "
            "After AXES_FAILURE_LIMIT (5) failures for one username from one address the client is "
            "locked out: 429 `locked_out` with a Retry-After header, even with the right password."
        ),
    )
    def post(self, request: Request) -> Response:
        _strip_nul(request)
        serializer = TokenObtainSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = token_user_authenticate(request=request, **serializer.validated_data)
        refresh = RefreshToken.for_user(user)
        if jwt_settings.UPDATE_LAST_LOGIN:
            update_last_login(None, user)
        return Response(
            TokenPairSerializer({"access": str(refresh.access_token), "refresh": str(refresh)}).data,
            status=status.HTTP_200_OK,
        )


class TokenRefreshView(_TokenView):
    """Exchange a refresh token for a new access token (the refresh token itself is not rotated)."""

    @extend_schema(
        operation_id="auth_token_refresh",
        tags=["auth"],
        request=TokenRefreshSerializer,
        responses={200: AccessTokenSerializer, **error_responses(400, 401, 415)},
        auth=[],
        description="401 `token_not_valid` for an invalid or expired refresh token, "
        "`user_inactive` when the account was deactivated or deleted since.",
    )
    def post(self, request: Request) -> Response:
        serializer = TokenRefreshSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            refresh = RefreshToken(serializer.validated_data["refresh"])
        except TokenError as exc:
            raise AuthenticationFailed(str(exc), code="token_not_valid") from None

        user_id = refresh.payload.get(jwt_settings.USER_ID_CLAIM)
        try:
            is_active = User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}, is_active=True).exists()
        except (ValueError, TypeError):  # a claim that is no id of ours
            is_active = False
        if not is_active:
            raise AuthenticationFailed("The account is inactive or no longer exists.", code="user_inactive")
        return Response(AccessTokenSerializer({"access": str(refresh.access_token)}).data)
