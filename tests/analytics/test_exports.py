"""Analytics exports: CSV and JSON from the API and the portal, parsed and checked."""

from __future__ import annotations

import csv
import io
import json

import pytest

from analytics import exports, services
from tests.analytics import scripted_session as script

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


@pytest.fixture
def scripted(course, professor):
    session, students, rooms = script.build(course=course, professor=professor)
    services.session_analytics_compute(session_id=session.pk)
    return session, students, rooms


def _rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode())))


@pytest.mark.parametrize("prefix", ["/api/v1/sessions/{id}/analytics/export.", "/sessions/{id}/analytics."])
def test_csv_has_one_row_per_student_with_the_numbers(client, api_headers, professor, scripted, prefix):
    session, students, _ = scripted
    client.force_login(professor.user)
    response = client.get(prefix.format(id=session.pk) + "csv", **api_headers(professor.user))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = _rows(response.content)
    assert list(rows[0]) == exports.CSV_COLUMNS
    by_user = {row["username"]: row for row in rows}
    assert set(by_user) == set(script.EXPECTED)
    for key, expected in script.EXPECTED.items():
        row = by_user[key]
        assert int(row["student_id"]) == students[key].pk
        assert int(row["talk_time_ms"]) == expected["talk_time_ms"]
        assert int(row["turns"]) == expected["speech_turns"] + expected["text_turns"]
        assert int(row["words"]) == expected["words"]
        assert int(row["questions"]) == expected["questions_asked"]
        assert int(row["hints_needed"]) == expected["hints_needed"]
        assert row["topics"] == ";".join(t["topic"] for t in expected["topics_covered"])
        assert int(row["confusion_points"]) == len(expected["confusion_points"])
        assert int(row["engagement_score"]) == expected["engagement_score"]
        assert int(row["version"]) == services.VERSION
    assert by_user["ben"]["confusion_signals"] == (
        "phrase@recursion#4;repeated_question@recursion#7;silence_after_question@recursion#8"
    )
    assert by_user["ana"]["room"] == "Room 1"


@pytest.mark.parametrize("prefix", ["/api/v1/sessions/{id}/analytics/export.", "/sessions/{id}/analytics."])
def test_json_is_the_api_document(client, api_headers, professor, scripted, prefix):
    session, _, _ = scripted
    client.force_login(professor.user)
    api = client.get(f"/api/v1/sessions/{session.pk}/analytics/", **api_headers(professor.user)).json()
    response = client.get(prefix.format(id=session.pk) + "json", **api_headers(professor.user))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert json.loads(response.content) == api


def test_unknown_format_is_404(client, api_headers, professor, scripted, assert_api_error):
    session, _, _ = scripted
    assert_api_error(client.get(f"/api/v1/sessions/{session.pk}/analytics/export.xlsx", **api_headers(professor.user)), 404)


def test_portal_export_is_for_professors_and_staff_only(client, scripted, staff_user, outsider):
    session, students, _ = scripted
    path = f"/sessions/{session.pk}/analytics.csv"
    assert client.get(path).status_code == 302  # to the login page
    client.force_login(students["ana"].user)
    assert client.get(path).status_code == 403
    client.force_login(outsider.user)
    assert client.get(path).status_code == 404
    client.force_login(staff_user)
    assert client.get(path).status_code == 200


def test_formula_cells_are_quoted():
    doc = {
        "version": 2,
        "students": [{
            "student": 1, "name": "=HYPERLINK(1)", "room": None, "talk_time_ms": 0, "speech_turns": 0,
            "text_turns": 0, "turns": 0, "words": 0, "questions": 0, "hints_needed": 0, "topics": [],
            "confusion_points": [], "engagement_score": 0,
        }],
    }
    rows = _rows(exports.analytics_csv(doc, usernames={1: "x"}).encode())
    assert rows[0]["student"] == "'=HYPERLINK(1)"


def test_odd_json_of_older_rows_does_not_break_the_api_or_the_exports(client, api_headers, professor, scripted):
    """The report pages read every key with a default (analytics/reports.py); the API document and
    the exports read the same rows and must not answer 500 where the pages answer 200."""
    from analytics.models import StudentProgress

    session, _, _ = scripted
    row = StudentProgress.objects.filter(session=session).first()
    row.evidence = {"turns": "junk", "questions": ["7", None, 1]}
    row.confusion_points = [{"seq": "x"}, "junk"]
    row.topics_covered = [{"segments": [1]}, {"topic": "loops"}, "junk"]
    row.save()
    headers = api_headers(professor.user)
    assert client.get(f"/api/v1/sessions/{session.pk}/analytics/", **headers).status_code == 200
    detail = client.get(f"/api/v1/sessions/{session.pk}/analytics/students/{row.student_id}/", **headers)
    assert detail.status_code == 200
    for fmt in ("csv", "json"):
        assert client.get(f"/api/v1/sessions/{session.pk}/analytics/export.{fmt}", **headers).status_code == 200
    csv_row = next(r for r in _rows(client.get(f"/api/v1/sessions/{session.pk}/analytics/export.csv", **headers).content)
                   if r["student_id"] == str(row.student_id))
    assert csv_row["topics"] == "loops" and csv_row["confusion_points"] == "2"
    trend = client.get(f"/api/v1/students/{row.student_id}/progress/", **headers)
    assert trend.status_code == 200 and trend.json()["sessions"][0]["topics"] == ["loops"]
