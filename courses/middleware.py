"""Portal side of the domain-error mapping: a selector's NotFound/Forbidden becomes the error page.

The API maps the same exceptions in `courses.api.errors.api_exception_handler` and consumers in
their close codes, so views only call selectors and never translate errors themselves.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse

from courses.exceptions import DomainError, Forbidden, NotFound, Unauthenticated


class DomainErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from courses import views  # the error pages; imported late, views import much

        if not isinstance(exception, DomainError):
            return None
        if isinstance(exception, NotFound):
            return views.error_404(request, exception)
        if isinstance(exception, Forbidden):
            return views.error_403(request, exception)
        if isinstance(exception, Unauthenticated):
            return redirect_to_login(request.get_full_path())
        return views.error_400(request, exception)
