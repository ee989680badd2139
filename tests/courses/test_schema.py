"""The OpenAPI schema is valid and warning-free, and the docs page works offline (no CDN)."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command


def test_schema_generates_valid_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"

    # --fail-on-warn turns any drf-spectacular warning (a view it cannot describe) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    schema = yaml.safe_load(out.read_text())
    paths = schema["paths"]
    for path in ["/api/v1/auth/token/", "/api/v1/auth/token/refresh/", "/api/v1/me/", "/api/v1/courses/"]:
        assert path in paths, sorted(paths)
    assert "/api/v1/courses/{id}/" in paths
    # The contract's error shape is documented, not just the happy path.
    assert paths["/api/v1/auth/token/"]["post"]["responses"]["429"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/Error"}
    assert "jwtAuth" in schema["components"]["securitySchemes"]


@pytest.mark.django_db
def test_schema_endpoint_serves_the_schema(client):
    response = client.get("/api/schema/")

    assert response.status_code == 200
    assert b"/api/v1/me/" in response.content


@pytest.mark.django_db
def test_docs_page_works_without_any_cdn(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger" in html.lower()
    for cdn in ("cdn.jsdelivr", "unpkg", "cdnjs", "googleapis"):
        assert cdn not in html, cdn
    # Every script and stylesheet comes from our own static files (drf-spectacular-sidecar).
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert assets, html[:500]
    for asset in assets:
        assert asset.startswith("/static/"), asset
    assert client.get(assets[0]).status_code == 200
