"""The offline tutor: the last engine of every model chain, working with no network and no model.

It is a retrieval- and template-based Socratic tutor. It reads the structured `TutorContext` (the
passages the caller retrieved, the conversation, the teaching mode), picks the passage and the
sentences that fit the question best, and answers from templates: in Socratic mode it points to the
passage and asks one guiding question; as a teacher it explains with the notes and checks
understanding; in Q&A it answers briefly with the reference; under quiz lock it points to what to
review without answering. It says once per conversation that it is the offline tutor, and never
pretends to be a language model. Phrasing varies deterministically with the question and the turn.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from dataclasses import dataclass

from courses.retrieval import FOLLOW_UP_TERMS, terms
from sessions.providers.base import LLMError, LLMRequest, TutorContext, Usage, estimate_tokens

# What each kind of message looks like; the first that matches wins.
_QUESTION_KINDS: list[tuple[str, re.Pattern[str]]] = [
    (
        "easier",
        re.compile(r"\b(easier|simpler|too hard|don'?t (get|understand)|confus\w*|lost|stuck|not sure)\b"),
    ),
    ("example", re.compile(r"\b(example|for instance|show me|demonstrat\w*)\b")),
    (
        "error",
        re.compile(
            r"\w+error\b|\b(error|exception|traceback|bug|crash\w*|doesn'?t work|not working|wrong|fails?)\b"
        ),
    ),
    ("compare", re.compile(r"\b(difference|differ|compare\w*|versus|vs\.?|better than|instead of)\b")),
    ("code", re.compile(r"`|\n|\bdef \w+|\w+\([^)]*\)|^\s*\w+\s*=")),
    ("why", re.compile(r"\bwhy\b")),
    ("how", re.compile(r"\bhow\b")),
    ("what", re.compile(r"\b(what|which|define|definition|meaning|mean)\b")),
]
_GREETING = re.compile(
    r"^\s*(hi|hello|hey|hiya|howdy|good (morning|afternoon|evening)|greetings)\b[\s!,.]*", re.I
)
_THANKS = re.compile(r"\b(thanks|thank you|thx|cheers|ty)\b[\s!,.]*", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(`*A-Z0-9])")
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_HEADING_NUMBER = re.compile(r"^\s*\d+(\.\d+)*\.?\s+")

# Lower weights for what a follow-up borrows: the latest student lines, the professor's hint.
_HISTORY_WEIGHTS = (0.5, 0.25)
_HINT_WEIGHT = 0.3
_MAX_QUOTE_WORDS = 70
# Words too common in questions to tell sentences apart ("the difference between X and Y").
_WEAK_TERMS = frozenset(terms("and or not difference work"))

_OFFLINE_NOTICE = (
    "_I'm the offline tutor: no language model is connected right now, so I work from the course notes "
    "and our conversation._"
)

_ACKNOWLEDGE = {
    "what": [
        "Good question about {concept}.",
        "Let's pin down the idea of {concept}.",
        "{name}, the idea of {concept} is worth getting clear on.",
    ],
    "why": [
        "Asking why is exactly the right instinct.",
        "{name}, that's a good thing to wonder about.",
        "Let's find the reason together.",
    ],
    "how": [
        "Let's work out the mechanics of {concept}.",
        "{name}, let's figure this out step by step.",
        "Good, let's look at how it works.",
    ],
    "error": [
        "Errors are useful clues, so let's read this one together.",
        "{name}, an error message is a hint, not a failure.",
        "Let's track this down calmly.",
    ],
    "code": [
        "Thanks for sharing your code.",
        "{name}, let's look at what your code does.",
        "Let's reason about your code together.",
    ],
    "compare": [
        "Comparing the two is a great way to understand both.",
        "{name}, putting them side by side is a good idea.",
        "Good comparison to make.",
    ],
    "easier": [
        "No problem, let's take a smaller step.",
        "{name}, let's slow down and make it simpler.",
        "That's fine, we can come at it from an easier angle.",
    ],
    "example": [
        "An example is a good idea, and you can build one yourself.",
        "{name}, examples make this much clearer.",
        "Let's ground the idea of {concept} in an example.",
    ],
    "other": [
        "Let's look at this together.",
        "{name}, here's where the notes can help.",
        "Good, let's see what the notes say.",
    ],
}
_POINT = [
    "{source} says:",
    "Have a look at {source}:",
    "Here is what {source} says:",
]
_GUIDING_QUESTION = {
    "what": [
        "In your own words, what is the passage saying about {concept}?",
        "Which words in that passage capture the idea of {concept} best?",
        "How would you explain the idea of {concept} to a friend in one sentence?",
    ],
    "why": [
        "What do you think would go wrong if it worked any other way?",
        "What would happen in the example if things worked differently?",
        "Which part of that passage hints at the reason?",
    ],
    "how": [
        "If you trace it by hand with a small input, what happens at each step?",
        "What is the very first thing that happens, and what makes it finish?",
        "Can you walk me through the example step by step, saying what changes each time?",
    ],
    "error": [
        "Which line does the error point to, and what do you expect each variable to hold there?",
        "What is the smallest input that still shows the error?",
        "Reading the traceback from the bottom, what does its last line tell you?",
    ],
    "code": [
        "If you run your code by hand with a tiny input, which line first does something you did not expect?",
        "What do you expect your code to print, and what does it print instead?",
        "Which line of your code does the passage above relate to?",
    ],
    "compare": [
        "So in what situation would you pick one over the other?",
        "What can one of them do that the other cannot?",
        "Which one would you use for your current task, and why?",
    ],
    "easier": [
        "Can you try the smallest case you can think of and tell me what you expect to happen?",
        "What is the tiniest example involving {concept} that you could try by hand?",
        "Which single word or line in that passage is the confusing one?",
    ],
    "example": [
        "Can you write a three-line example that uses {concept} and predict what it prints before you run it?",
        "What would a tiny example of {concept} look like, and what would it print?",
        "Could you change the example in the notes slightly and predict the new result?",
    ],
    "other": [
        "What part of that is still unclear to you?",
        "How does that connect with what you were trying to do?",
        "What do you make of that?",
    ],
}
_TEACHER_INTRO = [
    "Here's what the notes say about {concept}.",
    "Let me walk you through the idea of {concept}, {name}.",
    "{name}, here's the idea behind {concept}.",
]
_TEACHER_SOURCE = ["{source} puts it like this:", "From {source}:", "As {source} explains:"]
_CHECK_QUESTION = [
    "Quick check: can you sum up the idea of {concept} in one sentence?",
    "To check you've got it: how would you use the idea of {concept} in a small example of your own?",
    "Quick check: what would change in the example if you left {concept} out?",
]
_QA_ANSWER = [
    "{answer}\n\n(Source: {source}.)",
    "{answer}\n\nSee {source}.",
    "Short answer: {answer}\n\n(From {source}.)",
]
_QUIZ_DECLINE = [
    "I can't give answers while the quiz is on, {name}, but you can work this out.",
    "During the quiz I can't hand out answers.",
    "I can't help with the answer itself during graded work.",
]
_QUIZ_REVIEW = [
    "Review {source}: it covers {concept}.",
    "Have another look at {source}, which covers {concept}.",
    "The part to reread is {source}, about {concept}.",
]
_QUIZ_ENCOURAGE = ["You've got this.", "Take it one step at a time.", "Trust what you've practised."]
_NOT_COVERED = [
    "I couldn't find that in the course notes, {name}.",
    "The course notes don't seem to cover that.",
    "I looked through the course notes and found nothing on that.",
]
_ASK_WHAT_THEY_KNOW = [
    "What do you already know about it, and how does it connect to the course?",
    "What do you already know about it?",
    "Can you tell me what you already know, so we can link it to the notes?",
]
_GREETING_REPLY = ["Hi {name}!", "Hello!", "Hey {name}, good to see you!", "Hi there!"]
_GREETING_QUESTION = [
    "What are you working on?",
    "What would you like to look at today?",
    "What shall we work on?",
]
_THANKS_REPLY = ["You're welcome, {name}!", "Glad it helped!", "Any time, {name}."]
_THANKS_CLOSING = [
    "Ask me whenever something in the notes is unclear.",
    "Keep going, you're doing well.",
    "Come back whenever you get stuck.",
]


@dataclass(frozen=True, slots=True)
class _Reading:
    """The material a reply is built on: a passage, its best sentences, its first code block."""

    source: str  # "*CS101 course notes*, section "5. Loops"" (the reply's reference)
    sentences: list[_Sentence]
    code: str
    heading: str


def offline_reply_text(context: TutorContext) -> str:
    """The offline tutor's reply to `context.question` (pure: same context, same reply).

    A question asked again later in the conversation is phrased differently: the phrasing is
    seeded by the question and the turn, and a reply identical to an earlier one is redrawn.
    In a breakout room the reply ends by inviting a quiet student in by name.
    """
    earlier = {line.text.strip() for line in context.history if line.role == "tutor"}
    reply = ""
    for attempt in range(4):
        reply = _compose(context, attempt)
        if reply not in earlier:
            break
    invitation = _room_invitation(context)
    return f"{reply}\n\n{invitation}" if invitation else reply


_INVITE_QUIET = [
    "{quiet}, what do you think?",
    "{quiet}, how would you put it in your own words?",
    "{quiet}, do you agree, or would you do it differently?",
    "Let's hear from {quiet} too: what would you try first?",
]


def _room_invitation(context: TutorContext) -> str:
    """In a room, a question to the quietest student who did not just speak ("" elsewhere)."""
    asker = _first_name(context.student_name)
    quiet = [name for name in context.quiet_students if name and name != asker]
    if not context.participants or not quiet:
        return ""
    seed = hashlib.sha256(f"{context.question.lower()}|{len(context.history)}|invite".encode()).digest()
    rng = random.Random(seed)  # noqa: S311 (phrasing, not security)
    return rng.choice(_INVITE_QUIET).format(quiet=quiet[0])


def _compose(context: TutorContext, attempt: int) -> str:
    question = context.question.strip()
    tutor_turns = sum(line.role == "tutor" for line in context.history)
    seed = hashlib.sha256(f"{question.lower()}|{tutor_turns}|{attempt}".encode()).digest()
    say = _Phrasing(random.Random(seed), _first_name(context.student_name))  # noqa: S311 (phrasing, not security)
    parts = [_OFFLINE_NOTICE] if tutor_turns == 0 else []

    small_talk = _small_talk(context, question, say, first=tutor_turns == 0)
    if small_talk:
        return small_talk

    kind = _question_kind(question)
    focus = _focus_terms(context)
    topic = _named_topic(context)
    reading = _reading(context, focus, kind, topic)
    if reading is None:
        parts += _not_covered(context, say)
        return "\n\n".join(parts)
    concept = topic or _section_name(reading.heading)
    mode = context.teaching_mode
    if mode == "quiz_lock":
        parts.append(
            " ".join(
                [
                    say.pick(_QUIZ_DECLINE),
                    say.pick(_QUIZ_REVIEW, source=reading.source, concept=concept),
                    say.pick(_QUIZ_ENCOURAGE),
                ]
            )
        )
    elif mode == "qa":
        answer = " ".join(sentence.shown for sentence in reading.sentences)
        parts.append(say.pick(_QA_ANSWER, answer=answer, source=reading.source))
    elif mode == "teacher":
        parts.append(say.pick(_TEACHER_INTRO, concept=concept))
        parts.append(say.pick(_TEACHER_SOURCE, source=reading.source) + "\n\n" + _quote(reading.sentences))
        if reading.code and kind in {"example", "how", "code", "what"}:
            parts.append("For example:\n\n" + reading.code)
        parts += _lecture_link(context, focus)
        parts.append(say.pick(_CHECK_QUESTION, concept=concept))
    else:  # socratic, and any mode this engine does not know
        parts.append(say.pick(_ACKNOWLEDGE[kind], concept=concept))
        parts.append(say.pick(_POINT, source=reading.source) + "\n\n" + _quote(reading.sentences))
        parts += _lecture_link(context, focus)
        parts.append(say.pick(_GUIDING_QUESTION[kind], concept=concept))
    return "\n\n".join(parts)


class _Phrasing:
    """Picks one of several phrasings. About half the replies address the student by first name,
    once; the others use phrasings without it."""

    def __init__(self, rng: random.Random, name: str):
        self.rng = rng
        self.name = name if name and rng.random() < 0.5 else ""

    def pick(self, options: list[str], **fields: str) -> str:
        named = [option for option in options if "{name}" in option]
        plain = [option for option in options if "{name}" not in option]
        choice = self.rng.choice(named if self.name and named else plain)
        text = choice.format(name=self.name, **fields)
        if "{name}" in choice:
            self.name = ""
        return text[:1].upper() + text[1:]


def _first_name(student_name: str) -> str:
    return student_name.split()[0] if student_name.strip() else ""


def _small_talk(context: TutorContext, question: str, say: _Phrasing, *, first: bool) -> str:
    """A short reply to a greeting or thanks; "" for anything else."""
    if "?" in question:
        return ""
    persona = context.persona_name or "your tutor"
    greeting = _GREETING.match(question)
    if greeting and len(question[greeting.end() :].split()) <= 4:
        opening = say.pick(_GREETING_REPLY)
        intro = (
            f"I'm {persona}, the offline tutor for {context.course_code}: I work from the course notes, "
            "without a language model."
            if first
            else ""
        )
        ask = (
            f"Shall we start with {context.room_topic}?"
            if context.room_topic
            else say.pick(_GREETING_QUESTION)
        )
        return " ".join(part for part in (opening, intro, ask) if part)
    thanks = _THANKS.search(question)
    if thanks and len(_THANKS.sub(" ", question).split()) <= 4:
        notice = [_OFFLINE_NOTICE] if first else []
        return "\n\n".join([*notice, f"{say.pick(_THANKS_REPLY)} {say.pick(_THANKS_CLOSING)}"])
    return ""


def _question_kind(question: str) -> str:
    text = question.lower()
    for kind, pattern in _QUESTION_KINDS:
        if kind == "code":
            if pattern.search(question):
                return kind
        elif pattern.search(text):
            return kind
    return "other"


def _subject_texts(context: TutorContext) -> list[str]:
    """What the reply is about: the question; for a follow-up that names no subject ("why?",
    "is there anything easier?"), also the student's latest messages, newest first."""
    if [term for term in terms(context.question) if term not in FOLLOW_UP_TERMS]:
        return [context.question]
    latest = [line.text for line in reversed(context.history) if line.role == "student" and line.text.strip()]
    return [context.question, *latest[: len(_HISTORY_WEIGHTS)]]


def _focus_terms(context: TutorContext) -> dict[str, float]:
    """Search terms with weights: the question's at 1, a follow-up's borrowed ones lower."""
    texts = _subject_texts(context)
    # Numbers ("0.1 + 0.2") say little about which passage or sentence is meant.
    weights = {term: 0.3 if term.isdigit() else 1.0 for term in terms(texts[0])}
    for text, weight in zip(texts[1:], _HISTORY_WEIGHTS, strict=False):
        for term in terms(text):
            weights[term] = max(weights.get(term, 0.0), weight)
    if len(texts) == 1 and not [t for t in weights if t not in FOLLOW_UP_TERMS] and context.room_topic:
        for term in terms(context.room_topic):  # a first, bare "can you help?" in a topic room
            weights.setdefault(term, _HISTORY_WEIGHTS[-1])
    for term in terms(context.hint):  # the professor's emphasis breaks ties, never leads
        weights.setdefault(term, _HINT_WEIGHT)
    return weights


def _reading(context: TutorContext, focus: dict[str, float], kind: str, topic: str) -> _Reading | None:
    """The passage that best matches the focus (retrieval order breaks ties), its best sentences
    and the code example that follows them."""
    best, best_score = None, 0.0
    for rank, passage in enumerate(context.passages):
        body, heading = set(terms(passage.text)), set(terms(passage.heading))
        overlap = sum(w for t, w in focus.items() if t in body) + 0.5 * sum(
            w for t, w in focus.items() if t in heading
        )
        # The caller's ranking (BM25 knows how rare each word is) counts as much as the overlap.
        score = overlap / (1 + 0.35 * rank)
        if score > best_score:
            best, best_score = passage, score
    if best is None:
        return None
    sentences, code_blocks = _split_passage(best.text)
    if not sentences:
        return None
    chosen = _best_sentences(
        sentences, focus, kind=kind, question=context.question, topic=topic, scope_terms=context.scope_terms
    )
    # The example that illustrates the chosen sentences is the first code after them.
    after = [code for block, code in code_blocks if block > chosen[0].block]
    code = next(iter(after or [code for _, code in code_blocks]), "")
    source = f"*{best.document}*"
    if best.heading:
        source += f', section "{best.heading}"'
    if best.page is not None:
        source += f", p. {best.page}"
    return _Reading(source=source, sentences=chosen, code=code, heading=best.heading)


@dataclass(frozen=True, slots=True)
class _Sentence:
    text: str
    block: int  # which paragraph, list or code block of the passage it is in

    @property
    def shown(self) -> str:
        """The sentence as quoted: one that introduced a code block ends with a full stop."""
        return self.text[:-1] + "." if self.text.endswith(":") else self.text


def _split_passage(text: str) -> tuple[list[_Sentence], list[tuple[int, str]]]:
    """The passage's prose sentences (list items count as sentences) and its short code blocks."""
    blocks: list[list[str]] = [[]]
    in_code = False
    for line in text.split("\n"):
        if line.startswith("```"):
            if not in_code and blocks[-1]:
                blocks.append([])
            blocks[-1].append(line)
            if in_code:
                blocks.append([])
            in_code = not in_code
        elif not line.strip() and not in_code:
            if blocks[-1]:
                blocks.append([])
        else:
            blocks[-1].append(line)
    sentences: list[_Sentence] = []
    code_blocks: list[tuple[int, str]] = []
    for index, lines in enumerate(blocks):
        if lines and lines[0].startswith("```"):
            if len(lines) <= 12:  # a long listing is not a quick example
                code_blocks.append((index, "\n".join(lines)))
        elif lines and not any(" | " in line for line in lines):  # tables read badly when quoted
            for line in lines:
                item = _LIST_MARK.sub("", line).strip()
                sentences += [
                    _Sentence(part.strip(), index) for part in _SENTENCE_END.split(item) if part.strip()
                ]
    return sentences, code_blocks


_KIND_CUES = {
    "why": re.compile(r"\b(because|so|otherwise|never|must|matters?)\b"),
    "error": re.compile(r"\w+Error\b|\braises?\b|\berrors?\b"),
    "how": re.compile(r"\b(use|until|as long as|by|with|up to)\b"),
    "easier": re.compile(r"\b(simple|small|first)\b"),
}
# "A dictionary maps keys to values.": a sentence that opens by naming the subject defines it.
_DEFINING_KINDS = {"what", "compare", "easier", "example", "other"}


def _sentence_scores(
    sentences: list[_Sentence], focus: dict[str, float], kind: str, topic: list[str], rivals: list[list[str]]
) -> list[float]:
    scores = []
    for sentence in sentences:
        said = terms(sentence.text)
        score = sum(focus.get(term, 0.0) for term in set(said) if term not in _WEAK_TERMS)
        if score:
            if topic and _contains_run(said, topic):
                score += 1.0  # names the very concept asked about ("for loop", not just "loop")
            elif any(_contains_run(said, rival) for rival in rivals):
                score -= 1.0  # about a neighbouring concept: "while loop" when asked about "for loop"
            if (cue := _KIND_CUES.get(kind)) and cue.search(sentence.text):
                score += 0.3
            opening = terms(" ".join(sentence.text.split()[:4]))
            if (
                kind in _DEFINING_KINDS
                and sentence.text.startswith(("A ", "An "))
                and focus.keys() & set(opening)
            ):
                score += 0.5
        if sentence.text.endswith(":"):
            score -= 0.2  # "You create one with an assignment:" means little without its code
        if sentence.text[:1].islower() or not sentence.text.endswith((".", "!", "?", ":", ")")):
            score -= 0.5  # a fragment: "a base case that is answered directly, and"
        if len(sentence.text.split()) < 5:
            score -= 0.3
        scores.append(score)
    return scores


def _best_sentences(
    sentences: list[_Sentence],
    focus: dict[str, float],
    *,
    kind: str,
    question: str,
    topic: str,
    scope_terms: list[str],
) -> list[_Sentence]:
    """The most relevant sentence, plus a neighbour or a close second, in their order in the notes;
    for a comparison, the best sentence about each of the two things compared."""
    topic_run = terms(topic)
    rivals = [
        run
        for run in (terms(term) for term in scope_terms)
        if len(run) > 1 and run != topic_run and set(run) & set(topic_run)
    ]
    if kind == "compare":
        # The two things compared: course topics the question names ("for loop", "while loop"),
        # else its first two words of substance.
        said = terms(question)
        named = [run for run in (terms(term) for term in scope_terms) if run and _contains_run(said, run)]
        items = [run for run in named if not any(len(o) > len(run) and _contains_run(o, run) for o in named)]
        if len(items) < 2:
            items = [[t] for t, w in focus.items() if w >= 1.0 and t not in _WEAK_TERMS | FOLLOW_UP_TERMS]
        picked: list[int] = []
        for item in items[:2] if len(items) >= 2 else []:
            scores = _sentence_scores(sentences, dict.fromkeys(item, 1.0), kind, item, [])
            candidates = [i for i in range(len(sentences)) if i not in picked and scores[i] > 0.5]
            if candidates:
                picked.append(max(candidates, key=lambda i: (scores[i], -i)))
        if len(picked) == 2:
            return [sentences[i] for i in sorted(picked)]
    scores = _sentence_scores(sentences, focus, kind, topic_run, rivals)
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    chosen = [best]
    seconds = [i for i in range(len(sentences)) if i != best and scores[i] > 0.5]
    if seconds:
        second = max(seconds, key=lambda i: (scores[i] + (0.5 if abs(i - best) == 1 else 0), -i))
        near = abs(second - best) == 1 or scores[second] >= 0.6 * scores[best]
        words = len(f"{sentences[best].text} {sentences[second].text}".split())
        if near and words <= _MAX_QUOTE_WORDS:
            chosen.append(second)
    return [sentences[i] for i in sorted(chosen)]


def _named_topic(context: TutorContext) -> str:
    """The longest course topic the question (or, for a follow-up, the latest message that names
    one) contains: "for loop" rather than "loop"; "" when none is named."""
    topics = [(topic, terms(topic)) for topic in context.scope_terms]
    for text in _subject_texts(context):
        said = terms(text)
        named = [(len(run), topic) for topic, run in topics if run and _contains_run(said, run)]
        if named:
            return max(named, key=lambda item: item[0])[1]
    return ""


def _section_name(heading: str) -> str:
    leaf = _HEADING_NUMBER.sub("", heading.split(" > ")[-1]).strip()
    return leaf.lower() if leaf else "this idea"


def _contains_run(haystack: list[str], needle: list[str]) -> bool:
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def _quote(sentences: list[_Sentence]) -> str:
    """Sentences as a Markdown quote; sentences of different paragraphs stay apart."""
    lines = [f"> {sentences[0].shown}"]
    for previous, sentence in itertools.pairwise(sentences):
        if previous.block != sentence.block:
            lines += [">", f"> {sentence.shown}"]
        else:
            lines[-1] += f" {sentence.shown}"
    return "\n".join(lines)


def _lecture_link(context: TutorContext, focus: dict[str, float]) -> list[str]:
    """The latest lecture line on the same subject, quoted, to tie the reply to the class."""
    subject = {term for term, weight in focus.items() if weight >= 1.0 and term not in FOLLOW_UP_TERMS}
    for line in reversed(context.lecture):
        if subject & set(terms(line.text)):
            return [f"Your professor said this in class at {line.at}:\n\n> {line.text.strip()}"]
    return []


def _not_covered(context: TutorContext, say: _Phrasing) -> list[str]:
    known = [term for term in context.scope_terms if term.strip()]
    # A different handful each time, in the course's order.
    topics = [known[i] for i in sorted(say.rng.sample(range(len(known)), min(5, len(known))))]
    if topics:
        listed = ", ".join(topics[:-1]) + f" and {topics[-1]}" if len(topics) > 1 else topics[0]
        scope = f"This course covers topics such as {listed}."
    else:
        scope = "Ask me about anything in the course notes."
    if context.room_topic:
        scope += f" This room is working on {context.room_topic}."
    if context.teaching_mode == "quiz_lock":
        return [f"{say.pick(_NOT_COVERED)} {scope} {say.pick(_QUIZ_ENCOURAGE)}"]
    return [f"{say.pick(_NOT_COVERED)} {scope}", say.pick(_ASK_WHAT_THEY_KNOW)]


# --- The engine ---------------------------------------------------------------------------------


def _context_text(context: TutorContext) -> str:
    """What the offline tutor reads, for the usage estimate of its "prompt"."""
    return "\n".join(
        [
            context.question,
            context.hint,
            context.room_topic,
            " ".join(context.scope_terms),
            *(line.text for line in context.history),
            *(passage.text for passage in context.passages),
            *(line.text for line in context.lecture),
        ]
    )


class OfflineTutorStream:
    """The reply streamed word by word; `aclose()` ends the iteration at once."""

    def __init__(self, text: str, *, prompt_tokens: int):
        self._deltas = re.findall(r"\s*\S+", text)
        self._prompt_tokens = prompt_tokens
        self._sent: list[str] = []
        self._closed = False
        self.usage: Usage | None = None

    def __aiter__(self) -> OfflineTutorStream:
        return self

    async def __anext__(self) -> str:
        if self._closed or len(self._sent) >= len(self._deltas):
            self._finish()
            raise StopAsyncIteration
        delta = self._deltas[len(self._sent)]
        self._sent.append(delta)
        return delta

    async def aclose(self) -> None:
        self._closed = True
        self._finish()

    def _finish(self) -> None:
        if self.usage is None:
            self.usage = Usage(
                prompt_tokens=self._prompt_tokens,
                completion_tokens=estimate_tokens("".join(self._sent)),
                estimated=True,
            )


class OfflineTutorEngine:
    """The `offline` provider: replies built from the course material, no network, no model."""

    provider = "offline"
    offline = True

    async def open(self, request: LLMRequest) -> OfflineTutorStream:
        """Compose the whole reply now (it takes microseconds) and stream it word by word."""
        if request.purpose != "reply" or request.context is None:
            # Without the structured context there is nothing to work from: this engine cannot
            # read a prompt, and it cannot judge a guardrail question either.
            raise LLMError(
                f"The offline tutor only writes tutor replies from a tutor context (purpose {request.purpose!r}).",
                transient=False,
            )
        text = offline_reply_text(request.context)
        return OfflineTutorStream(text, prompt_tokens=estimate_tokens(_context_text(request.context)))
