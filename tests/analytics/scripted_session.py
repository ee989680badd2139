"""A scripted session shared by the analytics tests, with its hand-computed expected numbers.

Two rooms: room "r1" (topic recursion) has Ana (speaks) and Ben (types only); room "r2" (topic
loop) has Cy (speaks and types) and Dee (says nothing). Times are ms from the session start.
"""

from __future__ import annotations

SCOPE_TERMS = ["python", "variable", "loop", "function", "recursion"]
ROOM_TOPICS = {"r1": "recursion", "r2": "loop"}
STUDENTS = {"ana": ("Ana", "r1"), "ben": ("Ben", "r1"), "cy": ("Cy", "r2"), "dee": ("Dee", "r2")}

# (seq, room, speaker, text, source, start_ms, end_ms, guardrail)
LINES = [
    (1, "r1", "tutor", "Welcome! What do you already know about recursion?", "text", 0, 0, "on_topic"),
    (2, "r1", "ana", "A function that calls itself, because it breaks the problem into a smaller problem each time.",
     "speech", 5000, 9000, ""),
    (3, "r1", "tutor", "Good. Think about the base case: what stops it?", "text", 10000, 10000, "on_topic"),
    (4, "r1", "ben", "I don't get recursion at all. How does it stop?", "text", 20000, 20000, ""),
    (5, "r1", "ana", "Wait, no, I mean the base case stops it.", "speech", 22000, 25000, ""),
    (6, "r1", "tutor", "Ana is right. Remember the base case returns without calling the function again.",
     "text", 26000, 26000, "on_topic"),
    (7, "r1", "ben", "So how does recursion know when to stop?", "text", 30000, 30000, ""),
    (8, "r1", "tutor", "Try tracing factorial(3) by hand: what is returned first?", "text", 32000, 32000, "on_topic"),
    (9, "r1", "ana", "factorial of 1 returns 1 first, so that means the calls unwind from the bottom.",
     "speech", 40000, 46000, ""),
    (10, "r1", "ben", "I understand now, no problem.", "text", 100000, 100000, ""),
    (11, "r2", "tutor", "Hi Cy and Dee! What is a loop for?", "text", 1000, 1000, "on_topic"),
    (12, "r2", "cy", "I don't get why people dislike Python.", "speech", 3000, 7000, ""),
    (13, "r2", "cy", "Who won the football game last night?", "text", 8000, 8000, ""),
    (14, "r2", "tutor", "Let's keep to the course: how would you loop over a list?", "text", 9000, 9000, "off_topic"),
    (15, "r2", "cy", "Actually, for example a for loop repeats the body once for each item in the list so you "
     "do not copy code.", "text", 20000, 20000, ""),
    (16, "r2", "tutor", "Exactly. Well done.", "text", 70000, 70000, "on_topic"),
]

# Hand-computed from the definitions in analytics/metrics.py.
EXPECTED = {
    "ana": {
        "talk_time_ms": 4000 + 3000 + 6000, "speech_turns": 3, "text_turns": 0, "words": 16 + 9 + 15,
        "questions_asked": 0, "hints_needed": 2,
        "evidence": {"turns": [2, 5, 9], "questions": [], "explanations": [2, 9], "self_corrections": [5],
                     "hints": [3, 6]},
        "topics_covered": [{"topic": "function", "segments": [2]}],
        "confusion_points": [],
        # 0.35(1-e^-1) + 0.2(1-e^-.5) + 0.1(1-e^-1) + 0.15(1-e^-1) = 0.4580
        "engagement_score": 46,
    },
    "ben": {
        "talk_time_ms": 0, "speech_turns": 0, "text_turns": 3, "words": 10 + 8 + 5,
        "questions_asked": 2, "hints_needed": 1,
        "evidence": {"turns": [4, 7, 10], "questions": [4, 7], "explanations": [], "self_corrections": [],
                     "hints": [8]},
        "topics_covered": [{"topic": "recursion", "segments": [4, 7]}],
        "confusion_points": [
            {"topic": "recursion", "signal": "phrase", "seq": 4, "evidence": "I don't get"},
            {"topic": "recursion", "signal": "repeated_question", "seq": 7,
             "evidence": "asked again about recursion (earlier at #4)"},
            {"topic": "recursion", "signal": "silence_after_question", "seq": 8,
             "evidence": "silent for 60 s after the tutor's question while others spoke"},
        ],
        # 0.2(1-e^-1) + 0.2(1-e^-.5) + 0.15(1-e^-1) = 0.2999
        "engagement_score": 30,
    },
    "cy": {
        "talk_time_ms": 4000, "speech_turns": 1, "text_turns": 2, "words": 7 + 7 + 22,
        "questions_asked": 1, "hints_needed": 0,
        "evidence": {"turns": [12, 13, 15], "questions": [13], "explanations": [15], "self_corrections": [15],
                     "hints": []},
        "topics_covered": [{"topic": "python", "segments": [12]}, {"topic": "loop", "segments": [15]}],
        "confusion_points": [
            {"topic": "python", "signal": "guardrail_redirect", "seq": 13,
             "evidence": "redirected off topic by the tutor (#14)"},
        ],
        # 0.35(1-e^-.5) + 0.2(1-e^-.5) + 0.2(1-e^-1) + 0.1(1-e^-1) + 0.15(1-e^-1) = 0.5009
        "engagement_score": 50,
    },
    "dee": {
        "talk_time_ms": 0, "speech_turns": 0, "text_turns": 0, "words": 0,
        "questions_asked": 0, "hints_needed": 0,
        "evidence": {"turns": [], "questions": [], "explanations": [], "self_corrections": [], "hints": []},
        "topics_covered": [],
        "confusion_points": [
            {"topic": "loop", "signal": "silence_after_question", "seq": 11,
             "evidence": "silent for 60 s after the tutor's question while others spoke"},
        ],
        "engagement_score": 0,
    },
}


def build(*, course, professor) -> tuple:
    """The script in the database: (session, {key: Student}, {key: BreakoutRoom})."""
    from sessions.models import Conversation, Message, TranscriptSegment
    from tests import factories

    session = factories.LiveSessionFactory(
        course=course, tenant=course.tenant, professor=professor, status="ended", title="Scripted"
    )
    rooms = {
        key: factories.BreakoutRoomFactory(session=session, number=n, name=f"Room {n}", topic=ROOM_TOPICS[key])
        for n, key in enumerate(["r1", "r2"], start=1)
    }
    conversations = {
        key: Conversation.objects.create(tenant=course.tenant, course=course, session=session, room=room)
        for key, room in rooms.items()
    }
    students = {}
    for key, (name, room) in STUDENTS.items():
        student = factories.EnrollmentFactory(
            course=course, student__user__username=key, student__user__first_name=name,
        ).student
        factories.RoomAssignmentFactory(room=rooms[room], session=session, student=student)
        students[key] = student
    for seq, room, speaker, text, source, start, end, guardrail in LINES:
        message = None
        if speaker == "tutor":
            message = Message.objects.create(
                conversation=conversations[room], seq=seq, role="tutor", text=text, guardrail=guardrail
            )
        user = students[speaker].user if speaker in students else None
        TranscriptSegment.objects.create(
            session=session, room=rooms[room], seq=seq, speaker_kind="tutor" if speaker == "tutor" else "student",
            speaker_user=user, speaker_name=STUDENTS[speaker][0] if user else "Tutor", text=text, source=source,
            start_ms=start, end_ms=end, message=message,
        )
    session.last_seq = len(LINES)
    session.save(update_fields=["last_seq"])
    return session, students, rooms
