"""A session's analytics as files: CSV (one row per student) and JSON (the API document).

CSV columns (CSV_COLUMNS): student_id, student, username, room, talk_time_ms, speech_turns,
text_turns, turns, words, questions, hints_needed, topics (";"-joined), confusion_points (count),
confusion_signals (";"-joined signal@topic#seq), engagement_score, version. Cells a spreadsheet
would run as a formula are quoted with "'", as in the transcript exports.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse

from analytics import selectors

FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
CSV_COLUMNS = [
    "student_id", "student", "username", "room", "talk_time_ms", "speech_turns", "text_turns", "turns",
    "words", "questions", "hints_needed", "topics", "confusion_points", "confusion_signals",
    "engagement_score", "version",
]


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dict entries of a JSON list (rows of older versions may hold odd ones)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def analytics_csv(document: dict[str, Any], *, usernames: dict[int, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for s in document["students"]:
        writer.writerow([_cell(v) for v in [
            s["student"], s["name"], usernames.get(s["student"], ""), (s["room"] or {}).get("name", ""),
            s["talk_time_ms"], s["speech_turns"], s["text_turns"], s["turns"], s["words"], s["questions"],
            s["hints_needed"], ";".join(str(t["topic"]) for t in _dicts(s["topics"]) if t.get("topic")),
            len(s["confusion_points"] or []),
            ";".join(
                f"{p.get('signal', '')}@{p.get('topic', '')}#{p.get('seq', '')}" for p in _dicts(s["confusion_points"])
            ),
            s["engagement_score"], document["version"],
        ]])
    return out.getvalue()


def analytics_export(*, access: selectors.AnalyticsAccess, fmt: str) -> HttpResponse:
    """The download of a session's analytics (shared by the API and the portal)."""
    from courses.exceptions import NotFound
    from courses.models import Student

    if fmt not in FORMATS:
        raise NotFound(f"No export format {fmt[:10]!r}; use csv or json.")
    analytics = selectors.session_analytics_get(session=access.session)
    document = selectors.analytics_document(access=access, analytics=analytics)
    if fmt == "csv":
        ids = [s["student"] for s in document["students"]]
        usernames = dict(Student.objects.filter(pk__in=ids).values_list("pk", "user__username"))
        body = analytics_csv(document, usernames=usernames)
    else:
        body = json.dumps(document, cls=DjangoJSONEncoder, indent=2)
    response = HttpResponse(body, content_type=FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="session-{access.session.pk}-analytics.{fmt}"'
    return response
