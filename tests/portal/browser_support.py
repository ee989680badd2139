"""What the browser tests that need WebSockets share: the demo site served by a real Daphne on a
scratch SQLite file, and Debian's Chromium launched by Playwright.

pytest-django's `live_server` is a WSGI server (no WebSockets), and Channels cannot serve an
in-memory test database from another process, so these modules run `tutor_project.asgi` in
Daphne (tests.sessions.conftest.daphne_servers), seeded with `manage.py seed_demo`. No API key
and no broker: the offline tutor answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from tests.portal.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.sessions.conftest import daphne_servers

DEMO_ENV = {
    "DJANGO_DEBUG": "true",  # WhiteNoise serves static/ from the finders, as in `make run`
    "REDIS_URL": "",  # the in-memory channel layer: one process
    "CELERY_BROKER_URL": "",
    "OPENAI_API_KEY": "",  # whatever this machine has, the offline tutor answers
    "OPENAI_BASE_URL": "",
    "TUTOR_TURNS_PER_MINUTE": "100",
}


@contextmanager
def demo_server(scratch: Path, **extra_env: str) -> Iterator[str]:
    """Migrate and seed a scratch database, serve it with Daphne; yields the base URL."""
    env = {
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "DJANGO_MEDIA_ROOT": str(scratch / "media"),
        **DEMO_ENV,
        **extra_env,
    }
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tutor_project.settings", **env}
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command], cwd=settings.BASE_DIR, env=full_env,
            capture_output=True, text=True, timeout=180, check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    with daphne_servers(1, **env) as ports:
        yield f"http://127.0.0.1:{ports[0]}"


@contextmanager
def chromium(playwright_sync) -> Iterator:
    """Debian's Chromium, headless, with the flags test_browser.py explains."""
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
