"""The session report in a real browser: Debian's Chromium against `live_server` (plain HTTP is
enough; htmx polls the status). The charts are server-rendered SVG, so "visible" means the SVG
elements have a size on the page. The screenshot goes to docs/screenshot-report.png only with
UPDATE_SCREENSHOTS=1, so a test run leaves the work tree clean.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from analytics.models import SessionAnalytics
from courses.models import Course
from courses.services import demo_seed
from tests.analytics.factories import demo_report_session
from tests.portal.browser_support import chromium
from tests.portal.test_browser import _allow_orm_beside_playwright, log_in  # noqa: F401  (a fixture)

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fast_password_hashing")]

SCREENSHOT = (
    settings.BASE_DIR / "docs" / "screenshot-report.png"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "aiprof-screenshot-report.png"
)


@pytest.fixture(scope="module")
def browser():  # after the autouse _allow_orm_beside_playwright (imported above)
    with chromium(playwright_sync) as browser:
        yield browser


@pytest.fixture
def report(transactional_db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    demo_seed()
    course = Course.objects.get(code="CS101")
    students = [e.student for e in course.enrollments.select_related("student__user").order_by("pk")[:8]]
    return demo_report_session(course=course, students=students)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    yield page
    context.close()


def test_professor_opens_the_session_report_and_its_evidence(page, live_server, report):
    log_in(page, live_server.url, "professor")
    page.goto(f"{live_server.url}/sessions/{report.session.pk}/report/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Loops and recursion lab")
    for figure in ("participation", "engagement", "confusion", "timeline", "rooms"):
        chart = page.locator(f"#chart-{figure} svg")
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 30, (figure, box)
    bars = page.locator("#chart-engagement rect.chart-bar")
    expect(bars).to_have_count(len(report.students))
    # A bar has its colour from analytics.css (not the SVG default black).
    assert bars.first.evaluate("el => getComputedStyle(el).fill") == "rgb(55, 48, 163)"
    expect(page.get_by_text("Offline summary")).to_be_visible()
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert page.js_errors == []

    # Clicking a student's number opens the lines behind it.
    first = report.progress[0]
    page.locator(f'tr[data-student="{first.student_id}"] td.num a').first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(first.student.user.display_name)
    expect(page.locator("#turns .evidence-line")).to_have_count(first.turns)

    page.goto(f"{live_server.url}/sessions/{report.session.pk}/report/print/")
    expect(page.locator(".site-header")).to_have_count(0)
    expect(page.locator("svg.chart")).to_have_count(5)


def test_report_polls_while_computing_and_shows_the_results_when_ready(page, live_server, report):
    SessionAnalytics.objects.filter(pk=report.analytics.pk).update(status="computing", progress=40)
    log_in(page, live_server.url, "professor")
    page.goto(f"{live_server.url}/sessions/{report.session.pk}/report/")
    expect(page.get_by_role("progressbar")).to_be_visible()
    SessionAnalytics.objects.filter(pk=report.analytics.pk).update(status="ready", progress=100)
    expect(page.get_by_role("progressbar")).to_have_count(0, timeout=8_000)
    expect(page.locator(".report-status-ready")).to_be_visible()
    assert page.js_errors == []


def test_a_student_opens_their_own_evidence_from_their_course_report(page, live_server, report):
    own = next(p for p in report.progress if p.confusion_points)
    log_in(page, live_server.url, own.student.user.username)
    course = report.session.course
    page.goto(f"{live_server.url}/courses/{course.pk}/students/{own.student_id}/report/")
    page.get_by_role("table").get_by_role("link", name=report.session.title).click()
    expect(page).to_have_url(f"{live_server.url}/sessions/{report.session.pk}/report/students/{own.student_id}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(own.student.user.display_name)
    expect(page.locator("#turns .evidence-line")).to_have_count(own.turns)
    expect(page.locator("#confusion")).to_contain_text(own.confusion_points[0]["evidence"])
    for other in report.students:
        if other.pk != own.student_id:
            expect(page.locator("main")).not_to_contain_text(other.user.display_name)
    assert page.js_errors == []
