"""analytics.metrics: pure computation over a scripted transcript, numbers checked by hand."""

from __future__ import annotations

import math

import pytest

from analytics import metrics
from analytics.metrics import Line, SessionInput, StudentInfo
from tests.analytics import scripted_session as script

ROOM_IDS = {"r1": 1, "r2": 2}
STUDENT_IDS = {"ana": 11, "ben": 12, "cy": 13, "dee": 14}


def scripted_input(**overrides) -> SessionInput:
    lines = []
    for seq, room, speaker, text, source, start, end, guardrail in script.LINES:
        student_id = STUDENT_IDS.get(speaker)
        lines.append(Line(
            seq=seq, room_id=ROOM_IDS[room], speaker="tutor" if speaker == "tutor" else "student", text=text,
            student_id=student_id, source=source, start_ms=start, end_ms=end, guardrail=guardrail,
        ))
    students = [
        StudentInfo(student_id=STUDENT_IDS[key], room_id=ROOM_IDS[room], name=name)
        for key, (name, room) in script.STUDENTS.items()
    ]
    return SessionInput(
        lines=lines, students=students, scope_terms=script.SCOPE_TERMS,
        room_topics={ROOM_IDS[r]: topic for r, topic in script.ROOM_TOPICS.items()}, **overrides,
    )


@pytest.fixture(scope="module")
def result():
    return metrics.session_metrics(scripted_input())


@pytest.mark.parametrize("key", list(script.EXPECTED))
def test_scripted_session_numbers_match_the_hand_computed_ones(result, key):
    got = result.students[STUDENT_IDS[key]]
    for name, expected in script.EXPECTED[key].items():
        assert getattr(got, name) == expected, (key, name)


def test_engagement_ordering_rewards_evidence_not_volume(result):
    scores = {key: result.students[sid].engagement_score for key, sid in STUDENT_IDS.items()}
    assert scores["cy"] > scores["ana"] > scores["ben"] > scores["dee"] == 0


def test_engagement_formula_exact():
    e1 = 1 - math.exp(-1)
    expected = round(100 * (0.35 * e1 + 0.2 * (1 - math.exp(-0.5)) + 0.1 * e1 + 0.15 * e1))
    got = metrics.engagement_score(
        explanations=2, questions=0, topics=1, self_corrections=1, turns=3, median_turns=3
    )
    assert got == expected == 46
    assert metrics.engagement_score(
        explanations=0, questions=0, topics=0, self_corrections=0, turns=0, median_turns=3
    ) == 0


def test_engagement_has_diminishing_returns_and_a_ceiling():
    def score(n):
        return metrics.engagement_score(
            explanations=n, questions=n, topics=n, self_corrections=n, turns=n, median_turns=1
        )

    gains = [score(n + 1) - score(n) for n in range(1, 6)]
    assert gains == sorted(gains, reverse=True)
    assert score(1000) == 100


def test_quiet_substantive_student_beats_chatty_one():
    quiet = metrics.engagement_score(
        explanations=2, questions=0, topics=1, self_corrections=0, turns=2, median_turns=10
    )
    chatty = metrics.engagement_score(
        explanations=0, questions=0, topics=0, self_corrections=0, turns=30, median_turns=10
    )
    assert quiet > chatty


def test_text_only_student_is_not_penalised_for_zero_talk_time():
    spoken = scripted_input()
    typed = scripted_input()
    typed.lines = [
        Line(**{**{f: getattr(line, f) for f in Line.__slots__}, "source": "text"}) for line in spoken.lines
    ]
    a = metrics.session_metrics(spoken).students[STUDENT_IDS["ana"]]
    b = metrics.session_metrics(typed).students[STUDENT_IDS["ana"]]
    assert a.talk_time_ms > 0 and b.talk_time_ms == 0
    assert (a.turns, a.engagement_score) == (b.turns, b.engagement_score)


@pytest.mark.parametrize(
    "text",
    ["I don't get recursion", "I'm confused about loops", "this doesn't make sense", "wait, what?"],
)
def test_planted_confusion_signals_are_found(text):
    assert metrics.student_line_signals(text)


@pytest.mark.parametrize(
    "text",
    [
        "I don't get why people dislike Python",  # puzzlement about opinions, not the material
        "no problem",
        "I understand now",
        "Don't get me wrong, loops are fine",
    ],
)
def test_planted_non_signals_are_not_confusion(text):
    assert metrics.student_line_signals(text) == []


def test_line_predicates():
    assert metrics.is_question("How does it stop?") and metrics.is_question("what is a loop")
    assert not metrics.is_question("A loop repeats.")
    assert metrics.is_explanation("A loop repeats the body for each item because the list has many items in it")
    assert not metrics.is_explanation("because short")
    assert metrics.is_self_correction("Actually it returns") and metrics.is_self_correction("no, it is 3")
    assert not metrics.is_self_correction("no problem")
    assert metrics.has_hint_marker("Try the base case") and not metrics.has_hint_marker("Well done.")


def test_repeated_question_outside_the_window_is_not_a_signal():
    result = metrics.session_metrics(scripted_input(repeat_window=2))
    signals = [p["signal"] for p in result.students[STUDENT_IDS["ben"]].confusion_points]
    assert "repeated_question" not in signals


def test_silence_shorter_than_the_setting_is_not_a_signal():
    result = metrics.session_metrics(scripted_input(silence_ms=200_000))
    for sid in STUDENT_IDS.values():
        assert all(p["signal"] != "silence_after_question" for p in result.students[sid].confusion_points)


def test_participation_distribution(result):
    p = result.participation
    assert p["students"] == 4 and p["silent"] == 1 and p["total_turns"] == 9
    assert p["turns"] == {"11": 3, "12": 3, "13": 3, "14": 0}
    assert p["buckets"] == {"0": 1, "1-2": 0, "3-5": 3, "6-10": 0, "11+": 0}
    assert p["top_quarter_share"] == round(3 / 9, 4)
    assert p["gini"] == 0.25  # [0, 3, 3, 3]
    assert metrics.gini([5, 5, 5]) == 0.0 and metrics.gini([0, 0, 0, 9]) == 0.75


def test_room_comparison(result):
    rooms = {row["room_id"]: row for row in result.rooms}
    assert rooms[1] == {
        "room_id": 1, "topic": "recursion", "students": 2, "turns": 6, "words": 63, "talk_time_ms": 13000,
        "confusion_count": 3, "engagement_avg": 38.0, "lines": 10,
    }
    assert rooms[2]["turns"] == 3 and rooms[2]["confusion_count"] == 2 and rooms[2]["engagement_avg"] == 25.0


def test_confusion_topics_across_rooms(result):
    assert result.confusion_topics == [
        {"topic": "recursion", "count": 3, "rooms": [1], "seqs": [4, 7, 8]},
        {"topic": "loop", "count": 1, "rooms": [2], "seqs": [11]},
        {"topic": "python", "count": 1, "rooms": [2], "seqs": [13]},
    ]


def test_empty_session():
    result = metrics.session_metrics(SessionInput(lines=[], students=[]))
    assert result.students == {} and result.participation["total_turns"] == 0 and result.rooms == []


def test_a_tutor_reply_to_an_unassigned_speaker_is_nobody_s_hint():
    inp = SessionInput(
        lines=[
            Line(seq=1, room_id=1, speaker="student", student_id=11, text="I'm lost"),
            Line(seq=2, room_id=1, speaker="student", student_id=None, text="I'm confused too"),
            Line(seq=3, room_id=1, speaker="tutor", text="Try the base case."),
        ],
        students=[StudentInfo(student_id=11, room_id=1, name="Ana")],
    )
    assert metrics.session_metrics(inp).students[11].hints_needed == 0


def test_repeated_question_with_another_question_in_between():
    inp = SessionInput(
        lines=[
            Line(seq=1, room_id=1, speaker="student", student_id=11, text="How does recursion end?"),
            Line(seq=2, room_id=1, speaker="student", student_id=11, text="What is a loop?"),
            Line(seq=3, room_id=1, speaker="student", student_id=11, text="Why does recursion need a base case?"),
        ],
        students=[StudentInfo(student_id=11, room_id=1, name="Ana")],
        scope_terms=["loop", "recursion"],
    )
    points = metrics.session_metrics(inp).students[11].confusion_points
    assert [(p["signal"], p["seq"], p["evidence"]) for p in points] == [
        ("repeated_question", 3, "asked again about recursion (earlier at #1)")
    ]
