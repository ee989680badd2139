"""analytics.refine: topics and confusion refined by the tenant's online model (local OpenAI stand-in)."""

from __future__ import annotations

import json
import re

import pytest

from analytics import metrics, refine, services
from analytics.models import SessionAnalytics, StudentProgress, UsageEvent
from tests import factories
from tests.analytics import scripted_session as script
from tests.support.openai_standin import (
    Hang,
    Reply,
    Status,
    openai_standin,  # noqa: F401  (a fixture)
)

pytestmark = [pytest.mark.usefixtures("fast_password_hashing"), pytest.mark.django_db(transaction=True)]

MISSED = "hmm so the base case is the thing that stops it? not sure"
CLASSIFY = "You classify what students said"


def _prompt(body: dict) -> str:
    return body["messages"][0]["content"]


def _classifications(standin) -> list[str]:
    return [_prompt(r["json"]) for r in standin.requests if CLASSIFY in _prompt(r["json"])]


def _answer(reply):
    """A responder: `reply(prompt)` for classification prompts, a plain summary otherwise."""

    def respond(body: dict):
        prompt = _prompt(body)
        if CLASSIFY not in prompt:
            return Reply("1. Topics covered: recursion")
        value = reply(prompt)
        return value if isinstance(value, (Reply, Status, Hang)) else Reply(value)

    return respond


def _json(*entries: tuple[int, str, str | None]) -> str:
    return json.dumps({"lines": [{"seq": s, "topic": t, "confusion": c} for s, t, c in entries]})


@pytest.fixture
def online(course, openai_standin, settings):  # noqa: F811
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = openai_standin.base_url, "sk-test"
    factories.LLMModelFactory(tenant=course.tenant, position=1, model_name="refine-model")
    return openai_standin


@pytest.fixture
def scripted(course, professor):
    """The scripted session plus one line of Ana's that no rule reads as confusion (seq 17)."""
    from sessions.models import TranscriptSegment

    session, students, rooms = script.build(course=course, professor=professor)
    TranscriptSegment.objects.create(
        session=session, room=rooms["r1"], seq=17, speaker_kind="student", speaker_user=students["ana"].user,
        speaker_name="Ana", text=MISSED, source="speech", start_ms=101000, end_ms=104000,
    )
    return session, students, rooms


def _rule_only(session) -> metrics.SessionMetrics:
    inp, _names, _rooms = services.session_rows_load(session=session)
    return metrics.session_metrics(inp)


def _row(session, student) -> StudentProgress:
    return StudentProgress.objects.get(session=session, student=student)


def test_a_line_the_rules_miss_is_classified_stuck(scripted, online):
    session, students, _ = scripted
    rules = _rule_only(session)
    assert not any(p["seq"] == 17 for p in rules.students[students["ana"].pk].confusion_points)
    online.responder = _answer(lambda prompt: _json((17, "recursion", "stuck"), (2, "recursion", None)))

    analytics = services.session_analytics_compute(session_id=session.pk)

    ana = _row(session, students["ana"])
    assert ana.confusion_points == [
        {"topic": "recursion", "signal": "llm", "seq": 17, "evidence": "model: stuck"},
    ]
    assert ana.topics_covered == [
        {"topic": "function", "segments": [2]}, {"topic": "recursion", "segments": [2, 17]},
    ]
    base = rules.students[students["ana"].pk]
    expected = metrics.engagement_score(
        explanations=len(base.evidence["explanations"]), questions=base.questions_asked,
        topics=len(base.topics_covered) + 1, self_corrections=len(base.evidence["self_corrections"]),
        turns=base.turns, median_turns=metrics.median_turns(rules.students.values()),
    )
    assert ana.engagement_score == expected > base.engagement_score  # recomputed: one more topic
    recursion = next(row for row in analytics.confusion_topics if row["topic"] == "recursion")
    assert recursion["count"] == 4 and 17 in recursion["seqs"]
    room1 = next(row for row in analytics.room_comparison if row["topic"] == "recursion")
    assert room1["confusion_count"] == 4
    assert analytics.participation["refine"]["status"] == "applied"
    assert analytics.participation["refine"]["model"] == "refine-model"
    assert analytics.participation["refine"]["confusion_added"] == 1
    assert UsageEvent.objects.filter(session=session, kind="llm", outcome="ok").count() == 2  # summary + refine


def test_a_rule_found_point_is_kept_when_the_model_says_null(scripted, online):
    session, students, _ = scripted
    online.responder = _answer(lambda prompt: _json(*[(s, "general", None) for s in range(1, 18)]))

    analytics = services.session_analytics_compute(session_id=session.pk)

    for key in ("ben", "cy", "dee"):
        row = _row(session, students[key])
        assert row.confusion_points == script.EXPECTED[key]["confusion_points"], key
        assert row.topics_covered == script.EXPECTED[key]["topics_covered"], key
        assert row.engagement_score == _rule_only(session).students[students[key].pk].engagement_score
    assert analytics.participation["refine"]["status"] == "applied"
    assert analytics.participation["refine"]["confusion_added"] == 0


def test_a_rule_found_seq_gets_no_second_point_from_the_model(scripted, online):
    session, students, _ = scripted
    online.responder = _answer(lambda prompt: _json((4, "recursion", "misconception")))
    services.session_analytics_compute(session_id=session.pk)
    assert _row(session, students["ben"]).confusion_points == script.EXPECTED["ben"]["confusion_points"]


@pytest.mark.parametrize("reply", [
    "Sure! Here is the classification you asked for.",
    '{"lines": [{"seq": 17, "topic": "recursion", "confusion": "stuck"',  # cut short
    '["stuck", "misconception"]',
    "null",
])
def test_garbage_json_leaves_the_rule_based_result(scripted, online, reply):
    session, _, _ = scripted
    rules = _rule_only(session)
    online.responder = _answer(lambda prompt: reply)

    analytics = services.session_analytics_compute(session_id=session.pk)

    for student_id, m in rules.students.items():
        row = StudentProgress.objects.get(session=session, student_id=student_id)
        assert (row.confusion_points, row.topics_covered, row.engagement_score) == (
            m.confusion_points, m.topics_covered, m.engagement_score,
        )
    assert analytics.confusion_topics == rules.confusion_topics
    assert analytics.participation["refine"]["status"] == "failed"
    assert "JSON" in analytics.participation["refine"]["reason"]


def test_unknown_seqs_topics_and_labels_are_ignored(scripted, online):
    session, students, _ = scripted
    online.responder = _answer(lambda prompt: "```json\n" + _json(
        (999, "recursion", "stuck"),  # not a line of this batch
        (1, "recursion", "stuck"),  # a tutor line: never sent, never classified
        (2, "astrology", "bored"),  # unknown label: the entry is ignored
        (12, "loop", None),  # a known topic: Cy's topics gain it
        (13, "astrology", "misconception"),  # unknown topic, but a rule point already at 13
        (15, "Loop", None), (15, "python", "stuck"),  # a seq twice: the first answer counts
    ) + "\n```")

    analytics = services.session_analytics_compute(session_id=session.pk)

    assert _row(session, students["ana"]).confusion_points == []
    cy = _row(session, students["cy"])
    assert cy.topics_covered == [{"topic": "python", "segments": [12]}, {"topic": "loop", "segments": [12, 15]}]
    assert cy.confusion_points == script.EXPECTED["cy"]["confusion_points"]
    assert analytics.participation["refine"]["status"] == "applied"


def test_offline_sends_nothing_and_changes_nothing(scripted, openai_standin, settings):  # noqa: F811
    from sessions.models import LLMModel

    session, _, _ = scripted
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = openai_standin.base_url, "sk-test"
    factories.LLMModelFactory(tenant=session.tenant, position=1, provider=LLMModel.Provider.OFFLINE,
                              model_name="offline-socratic")
    rules = _rule_only(session)

    analytics = services.session_analytics_compute(session_id=session.pk)

    assert openai_standin.requests == []
    assert analytics.participation["refine"]["status"] == "offline"
    assert analytics.confusion_topics == rules.confusion_topics
    for student_id, m in rules.students.items():
        row = StudentProgress.objects.get(session=session, student_id=student_id)
        assert (row.confusion_points, row.topics_covered) == (m.confusion_points, m.topics_covered)


def test_the_prompt_has_the_scope_terms_and_the_numbered_student_lines(scripted, online):
    session, _, _ = scripted
    online.responder = _answer(lambda prompt: _json())

    services.session_analytics_compute(session_id=session.pk)

    [prompt] = _classifications(online)
    assert "Course topics: python, variable, loop, function, recursion." in prompt
    assert "Room 1: recursion" in prompt and "Room 2: loop" in prompt
    assert "#4 Ben [Room 1]: I don't get recursion at all. How does it stop?" in prompt
    assert f"#17 Ana [Room 1]: {MISSED}" in prompt
    assert "#15 Cy [Room 2]: Actually, for example" in prompt
    assert "Welcome!" not in prompt  # tutor lines are not sent
    assert '"stuck"' in prompt and '"misconception"' in prompt and '"repeated_question"' in prompt
    request = next(r["json"] for r in online.requests if CLASSIFY in _prompt(r["json"]))
    assert request["model"] == "refine-model" and request["temperature"] == 0.0


def test_lines_are_sent_in_batches_and_every_batch_is_merged(scripted, online, monkeypatch):
    session, students, _ = scripted
    monkeypatch.setattr(refine, "BATCH_LINES", 4)

    def reply(prompt):
        seqs = [int(s) for s in re.findall(r"^#(\d+) ", prompt, re.MULTILINE)]
        return _json(*[(s, "general", "stuck" if s in (10, 17) else None) for s in seqs])

    online.responder = _answer(reply)
    analytics = services.session_analytics_compute(session_id=session.pk)

    batches = [re.findall(r"^#(\d+) ", p, re.MULTILINE) for p in _classifications(online)]
    assert sorted(len(b) for b in batches) == [2, 4, 4]  # 10 student lines of assigned students
    assert sorted(int(s) for b in batches for s in b) == [2, 4, 5, 7, 9, 10, 12, 13, 15, 17]
    assert {p["seq"] for p in _row(session, students["ben"]).confusion_points if p["signal"] == "llm"} == {10}
    assert {p["seq"] for p in _row(session, students["ana"]).confusion_points if p["signal"] == "llm"} == {17}
    assert analytics.participation["refine"]["batches"] == 3


def test_a_failing_chain_keeps_the_rules_and_says_why(scripted, online):
    session, _, _ = scripted
    rules = _rule_only(session)
    online.responder = _answer(lambda prompt: Status(400, message="bad request"))

    analytics = services.session_analytics_compute(session_id=session.pk)

    assert analytics.status == "ready" and analytics.confusion_topics == rules.confusion_topics
    assert analytics.participation["refine"]["status"] == "failed"
    assert "model chain failed" in analytics.participation["refine"]["reason"]
    assert UsageEvent.objects.filter(session=session, kind="llm", outcome="error").exists()


def test_a_timeout_keeps_the_rules(scripted, online, settings):
    session, _, _ = scripted
    settings.LLM_TOTAL_TIMEOUT_SECONDS, settings.LLM_RETRIES_PER_MODEL = 0.3, 0
    rules = _rule_only(session)
    online.responder = _answer(lambda prompt: Hang(5))

    analytics = services.session_analytics_compute(session_id=session.pk)

    assert analytics.confusion_topics == rules.confusion_topics
    assert analytics.participation["refine"]["status"] == "failed"
    assert UsageEvent.objects.filter(session=session, kind="llm", outcome="timeout").exists()


def test_an_incremental_run_never_asks_the_model(scripted, online):
    session, _, _ = scripted
    type(session).objects.filter(pk=session.pk).update(status="live")
    analytics = services.session_analytics_compute(session_id=session.pk, final=False)
    assert online.requests == [] and "refine" not in analytics.participation


def test_the_tenants_own_analytics_template_is_used(scripted, online):
    from sessions.models import PromptTemplate

    session, _, _ = scripted
    PromptTemplate.objects.create(
        tenant=session.tenant, kind="analytics", name="Ours", version=1, is_active=True,
        body=CLASSIFY + " for {{ course.code }}:{% for m in history %} #{{ m.seq }}{% endfor %}",
    )
    online.responder = _answer(lambda prompt: '{"lines": [{"seq": 17, "topic": "recursion", "confusion": "stuck"}]}')
    services.session_analytics_compute(session_id=session.pk)
    assert _classifications(online) == [CLASSIFY + " for CS101: #2 #4 #5 #7 #9 #10 #12 #13 #15 #17"]
    assert SessionAnalytics.objects.get(session=session).participation["refine"]["confusion_added"] == 1


def test_parse_reply_is_defensive():
    seqs, topics = {1, 2, 3}, ["loop", "recursion"]
    labels, ignored = refine.parse_reply(
        'Here you go: {"1": {"topic": "LOOP", "confusion": "Repeated question"}, "2": {"confusion": "none"},'
        ' "3": "stuck"}', seqs=seqs, topics=topics,
    )
    assert labels == [refine.Label(1, "loop", "repeated_question"), refine.Label(2, "", None)]
    assert ignored == 1
    labels, ignored = refine.parse_reply(
        '[{"seq": true, "topic": "loop"}, {"seq": "#3", "topic": "recursion", "confusion": null}, 7]',
        seqs=seqs, topics=topics,
    )
    assert labels == [refine.Label(3, "recursion", None)] and ignored == 2
    assert refine.parse_reply("no json here", seqs=seqs, topics=topics) is None
    assert refine.parse_reply('{"answer": 42}', seqs=seqs, topics=topics) is None


def test_a_model_without_its_api_key_counts_as_offline(scripted, openai_standin, settings, monkeypatch):  # noqa: F811
    session, _, _ = scripted
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = openai_standin.base_url, ""
    factories.LLMModelFactory(tenant=session.tenant, position=1, model_name="no-key")
    analytics = services.session_analytics_compute(session_id=session.pk)
    assert openai_standin.requests == [] and analytics.participation["refine"]["status"] == "offline"


def test_the_line_cap_is_honoured(scripted, online, settings):
    session, _, _ = scripted
    online.responder = _answer(lambda prompt: _json())
    settings.ANALYTICS_REFINE_MAX_LINES = 3
    analytics = services.session_analytics_compute(session_id=session.pk)
    [prompt] = _classifications(online)
    assert re.findall(r"^#(\d+) ", prompt, re.MULTILINE) == ["2", "4", "5"]
    assert analytics.participation["refine"]["notes"] == ["only the first 3 of 10 student lines were sent"]
    settings.ANALYTICS_REFINE_MAX_LINES = 0
    analytics = services.session_analytics_compute(session_id=session.pk)
    assert len(_classifications(online)) == 1 and analytics.participation["refine"]["status"] == "skipped"
    assert analytics.participation["refine"]["reason"] == "ANALYTICS_REFINE_MAX_LINES is 0"


def test_one_failing_batch_discards_every_batch(scripted, online, monkeypatch):
    session, _, _ = scripted
    monkeypatch.setattr(refine, "BATCH_LINES", 4)
    rules = _rule_only(session)

    def reply(prompt):
        if re.search(r"^#10 ", prompt, re.MULTILINE):
            return Status(400, message="bad request")
        seqs = [int(s) for s in re.findall(r"^#(\d+) ", prompt, re.MULTILINE)]
        return _json(*[(s, "loop", "stuck") for s in seqs])

    online.responder = _answer(reply)
    analytics = services.session_analytics_compute(session_id=session.pk)

    assert analytics.participation["refine"]["status"] == "failed"
    assert analytics.confusion_topics == rules.confusion_topics
    points = StudentProgress.objects.filter(session=session).values_list("confusion_points", flat=True)
    assert not any(point["signal"] == "llm" for row in points for point in row)


def test_no_model_client_outlives_its_event_loop(scripted, online, monkeypatch):
    """Summary and refinement each run a loop of their own (async_to_sync): their clients are
    closed before it ends, so none is finalised later in another loop ("Event loop is closed")."""
    from sessions.providers import openai_llm

    made = []
    real = openai_llm.openai_client

    def recording(**kwargs):
        client = real(**kwargs)
        made.append(client)
        return client

    monkeypatch.setattr(openai_llm, "openai_client", recording)
    session, _, _ = scripted
    online.responder = _answer(lambda prompt: _json())
    services.session_analytics_compute(session_id=session.pk)
    assert len(online.requests) == 2 and made
    assert all(client.is_closed() for client in made)


def test_a_session_where_no_student_spoke_is_skipped(course, professor, online):
    from sessions.models import TranscriptSegment

    session, _, _ = script.build(course=course, professor=professor)
    TranscriptSegment.objects.filter(session=session, speaker_kind="student").delete()
    analytics = services.session_analytics_compute(session_id=session.pk)
    assert analytics.participation["refine"] == {**analytics.participation["refine"], "status": "skipped",
                                                 "reason": "no student lines"}
    assert _classifications(online) == []
