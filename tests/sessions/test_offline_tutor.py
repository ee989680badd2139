"""The offline tutor: replies built from the course notes by mode, streamed word by word."""

from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile

from courses.ingestion import document_ingest_text
from courses.retrieval import passages_search
from courses.services import CS101_SCOPE_TERMS, DEMO_NOTES_FILE
from sessions.providers.base import (
    HistoryLine,
    LectureLine,
    LLMError,
    LLMRequest,
    LLMStream,
    Passage,
    TutorContext,
    estimate_tokens,
)
from sessions.providers.offline_tutor import OfflineTutorEngine, offline_reply_text
from tests import factories

FOR_LOOP = "how does a for loop know when to stop?"
EARLIER = [HistoryLine("student", "Amara", "Hi"), HistoryLine("tutor", "Professor Ada", "Hello Amara!")]


@pytest.fixture
def notes_passages(db, settings, tmp_path):
    """`notes_passages(question, history)`: what the caller retrieves from the real demo notes."""
    settings.MEDIA_ROOT = tmp_path / "media"
    document = factories.CourseDocumentFactory(title="CS101 course notes", status="pending")
    document.file.save("cs101_notes.md", ContentFile(DEMO_NOTES_FILE.read_bytes()), save=True)
    document_ingest_text(document=document)
    course = document.course

    def retrieve(question: str, history: list[HistoryLine] | None = None) -> list[Passage]:
        hits = passages_search(
            course_id=course.pk,
            tenant_id=course.tenant_id,
            query=question,
            history=[line.text for line in history or [] if line.role == "student"],
        )
        return [
            Passage(document=h.document, text=h.text, page=h.page, heading=h.heading, chunk_id=h.chunk_id)
            for h in hits
        ]

    return retrieve


def _context(question: str, passages: list[Passage], **fields) -> TutorContext:
    defaults = {
        "tenant_id": 1,
        "course_id": 1,
        "course_code": "CS101",
        "course_title": "Introduction to Programming",
        "student_name": "Amara Okafor",
        "persona_name": "Professor Ada",
        "scope_terms": CS101_SCOPE_TERMS,
        "history": list(EARLIER),
    }
    return TutorContext(question=question, passages=passages, **{**defaults, **fields})


def _outside_quotes(reply: str) -> str:
    return "\n".join(line for line in reply.splitlines() if not line.startswith(">"))


def _quoted(reply: str) -> str:
    return " ".join(line[1:].strip() for line in reply.splitlines() if line.startswith(">"))


# --- What each mode says ------------------------------------------------------------------------


def test_socratic_points_to_the_loops_passage_and_asks_one_question(notes_passages):
    reply = offline_reply_text(_context(FOR_LOOP, notes_passages(FOR_LOOP), teaching_mode="socratic"))

    assert '*CS101 course notes*, section "5. Loops"' in reply
    assert "A `for` loop goes through the items of a sequence" in _quoted(reply)
    assert "not including" in _quoted(reply)  # the range sentence answers "when to stop"
    assert "while" not in _quoted(reply)  # the neighbouring concept is not what was asked
    assert reply.rstrip().endswith("?")
    assert _outside_quotes(reply).count("?") == 1


def test_teacher_explains_with_the_notes_and_an_example_then_checks(notes_passages):
    reply = offline_reply_text(_context(FOR_LOOP, notes_passages(FOR_LOOP), teaching_mode="teacher"))

    assert 'section "5. Loops"' in reply
    assert "A `for` loop goes through the items of a sequence" in _quoted(reply)
    assert "```\nfor i in range(5):" in reply and reply.count("```") == 2
    last = reply.strip().splitlines()[-1]
    assert last.endswith("?") and "for loop" in last


def test_qa_answers_directly_with_the_reference(notes_passages):
    question = "What is a variable?"
    reply = offline_reply_text(
        _context(question, notes_passages(question), teaching_mode="qa", history=EARLIER)
    )

    assert "A variable is a name that refers to a value." in reply
    assert 'section "2. Variables and types"' in reply
    assert "?" not in reply
    assert len(reply.split()) < 60


def test_quiz_lock_gives_no_answer_but_says_what_to_review(notes_passages):
    passages = notes_passages(FOR_LOOP)
    reply = offline_reply_text(_context(FOR_LOOP, passages, teaching_mode="quiz_lock"))

    assert 'section "5. Loops"' in reply
    assert "can't" in reply and "answer" in reply
    assert ">" not in reply and "```" not in reply and "range" not in reply
    loops = next(p for p in passages if p.heading == "5. Loops")
    words = loops.text.split()
    for start in range(len(words) - 5):  # not even six words in a row from the notes
        assert " ".join(words[start : start + 6]) not in reply


@pytest.mark.parametrize(
    ("question", "heading", "quoted"),
    [
        ("What is recursion?", "8. Recursion", "A function is recursive when it calls itself."),
        ("why do I get a KeyError?", "7. Lists and dictionaries", "raises a `KeyError`"),
        ("how do I read a traceback?", "10. Debugging", "read it from the bottom"),
        (
            "what's the difference between a list and a dictionary?",
            "7. Lists and dictionaries",
            "A dictionary maps keys to values.",
        ),
        ("what is the difference between a for loop and a while loop?", "5. Loops", "A `while` loop repeats"),
    ],
)
def test_socratic_replies_quote_the_section_that_answers(notes_passages, question, heading, quoted):
    reply = offline_reply_text(_context(question, notes_passages(question)))

    assert f'section "{heading}"' in reply
    assert quoted in _quoted(reply)
    assert _outside_quotes(reply).count("?") == 1 and reply.endswith("?")


def test_a_follow_up_works_from_the_conversation(notes_passages):
    history = [
        HistoryLine("student", "Amara", "How does recursion work?"),
        HistoryLine("tutor", "Professor Ada", "Have a look at the section on recursion..."),
    ]
    question = "is there anything easier?"

    reply = offline_reply_text(_context(question, notes_passages(question, history), history=history))

    assert 'section "8. Recursion"' in reply
    assert "recursive" in _quoted(reply).lower()
    assert reply.endswith("?")


def test_without_a_matching_passage_it_says_so_and_lists_the_course_topics():
    unrelated = Passage(
        document="CS101 course notes", text="A dictionary maps keys to values.", heading="7. Lists"
    )
    for passages in ([], [unrelated]):
        reply = offline_reply_text(_context("Who won the football match?", passages))

        assert "course notes" in reply and "section" not in reply and ">" not in reply
        listed = [term for term in CS101_SCOPE_TERMS if re.search(rf"\b{re.escape(term)}\b", reply)]
        assert len(listed) >= 3
        assert "already know" in reply and reply.endswith("?")


def test_the_first_reply_says_it_is_the_offline_tutor_and_later_ones_do_not(notes_passages):
    passages = notes_passages(FOR_LOOP)

    first = offline_reply_text(_context(FOR_LOOP, passages, history=[]))
    later = offline_reply_text(_context(FOR_LOOP, passages, history=EARLIER))

    assert "offline tutor" in first and "course notes" in first.split("\n\n")[0]
    assert "offline" not in later
    for reply in (first, later):
        assert "large language model" not in reply.lower() and "gpt" not in reply.lower()


def test_greetings_and_thanks_get_a_short_friendly_reply():
    hello = offline_reply_text(_context("Hi Professor Ada!", [], history=[], room_topic="for loops"))
    thanks = offline_reply_text(_context("thanks, that helps", [], history=EARLIER))

    assert hello.startswith(("Hi", "Hello", "Hey")) and "offline tutor" in hello
    assert hello.endswith("Shall we start with for loops?")
    assert len(thanks.split()) <= 15 and "offline" not in thanks
    assert "course notes don't" not in thanks and "couldn't find" not in thanks


def test_asking_the_same_question_again_is_phrased_differently(notes_passages):
    passages = notes_passages(FOR_LOOP)
    history = list(EARLIER)
    replies = []
    for _ in range(4):
        reply = offline_reply_text(_context(FOR_LOOP, passages, history=history))
        replies.append(reply)
        history += [HistoryLine("student", "Amara", FOR_LOOP), HistoryLine("tutor", "Professor Ada", reply)]

    assert len(set(replies)) == 4
    assert all('section "5. Loops"' in reply for reply in replies)
    # Same context, same reply: the variation is deterministic.
    assert offline_reply_text(_context(FOR_LOOP, passages, history=EARLIER)) == replies[0]


def test_the_student_is_addressed_by_first_name_only_sometimes(notes_passages):
    questions = [
        FOR_LOOP,
        "What is recursion?",
        "what is a list?",
        "why do I get a KeyError?",
        "what is a function?",
    ]
    replies = [offline_reply_text(_context(q, notes_passages(q))) for q in questions]

    named = [reply for reply in replies if "Amara" in reply]
    assert 0 < len(named) < len(replies)
    assert not any("Okafor" in reply for reply in replies)


def test_pages_and_lecture_lines_are_cited():
    passage = Passage(
        document="Week 3 slides",
        page=4,
        heading="Loops",
        text="A for loop goes through the items of a sequence. The range function stops before its stop value.",
    )
    lecture = [LectureLine("10:02", "Remember that a for loop stops at the end of the range.")]

    reply = offline_reply_text(_context(FOR_LOOP, [passage], lecture=lecture))

    assert '*Week 3 slides*, section "Loops", p. 4' in reply
    assert "10:02" in reply and "> Remember that a for loop stops" in reply


# --- The engine and its stream ------------------------------------------------------------------


async def test_the_stream_yields_the_reply_word_by_word_with_estimated_usage():
    passage = Passage(
        document="Notes", heading="Loops", text="A for loop goes through the items of a sequence."
    )
    context = _context(FOR_LOOP, [passage])
    engine = OfflineTutorEngine()

    stream = await engine.open(LLMRequest(messages=[], model="offline-socratic", context=context))
    assert isinstance(stream, LLMStream) and stream.usage is None
    deltas = [delta async for delta in stream]

    reply = offline_reply_text(context)
    assert "".join(deltas) == reply
    assert len(deltas) == len(reply.split())
    assert all(len(delta.split()) == 1 for delta in deltas)
    assert stream.usage is not None and stream.usage.estimated
    assert stream.usage.completion_tokens == estimate_tokens(reply)
    assert stream.usage.prompt_tokens >= estimate_tokens(FOR_LOOP + passage.text)
    assert (engine.provider, engine.offline) == ("offline", True)


async def test_aclose_stops_the_stream_mid_reply():
    context = _context(
        FOR_LOOP, [Passage(document="Notes", heading="Loops", text="A for loop goes through items.")]
    )
    stream = await OfflineTutorEngine().open(
        LLMRequest(messages=[], model="offline-socratic", context=context)
    )

    received = []
    async for delta in stream:
        received.append(delta)
        if len(received) == 3:
            await stream.aclose()
    await stream.aclose()  # safe twice

    assert len(received) == 3
    assert [delta async for delta in stream] == []
    assert stream.usage.completion_tokens == estimate_tokens("".join(received))


@pytest.mark.parametrize(
    "request_",
    [
        LLMRequest(messages=[{"role": "user", "content": "Hi"}], model="offline-socratic"),
        LLMRequest(
            messages=[],
            model="offline-socratic",
            purpose="guardrail",
            context=_context("hi", []),
        ),
    ],
)
async def test_requests_it_cannot_serve_fail_for_good(request_):
    with pytest.raises(LLMError) as failure:
        await OfflineTutorEngine().open(request_)

    assert failure.value.transient is False
