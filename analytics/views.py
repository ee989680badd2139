"""Portal downloads of a session's analytics: the API's export files, for the professor's pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from analytics import exports, selectors


@require_safe
@login_required
def session_analytics_export(request: HttpRequest, session_id: int, fmt: str) -> HttpResponse:
    access = selectors.analytics_access_full(user=request.user, session_id=session_id)
    return exports.analytics_export(access=access, fmt=fmt)
