"""URL map: portal pages, the admin, the REST API under /api/v1/, schema and health."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from courses.api.errors import api_not_found
from tutor_project.health import healthz

api_v1 = [
    path("", include("courses.api.urls")),
    path("", include("sessions.api.urls")),
    path("", include("analytics.api_rights")),  # students/<id>/export/ and erase/ (data rights)
    path("", include("analytics.api.urls")),
    # Last: any other URL under /api/v1/ answers 404 in the API's error shape, in DEBUG too.
    re_path(r"^.*$", api_not_found, name="not-found"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("", include("courses.urls")),
    path("", include("sessions.urls")),
    path("", include("analytics.urls")),
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

handler400 = "courses.views.error_400"
handler403 = "courses.views.error_403"
handler404 = "courses.views.error_404"
handler500 = "courses.views.error_500"
