"""static/js/markdown.js and static/js/chat.js under Node, without a DOM.

markdown.js must be safe before it is pretty: HTML in the text is escaped, only http(s) and
relative links survive. chat.js's reducer folds the conversation's WebSocket events into state:
deltas accumulate, a restart clears, the final message replaces, a refused message keeps the draft.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "static" / "js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(not NODE, reason="needs Node")


def node(script: str, *args: str):
    """Run an ES module script with the modules' file URLs as argv; return its JSON output."""
    completed = subprocess.run(
        [NODE, "--no-warnings", "--input-type=module", "-e", script,
         (STATIC / "markdown.js").as_uri(), (STATIC / "chat.js").as_uri(), *args],
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def render(*texts: str) -> list[str]:
    script = """
const { renderMarkdown } = await import(process.argv[1]);
console.log(JSON.stringify(JSON.parse(process.argv[3]).map(renderMarkdown)));
"""
    return node(script, json.dumps(texts))


# --- markdown.js ------------------------------------------------------------------------------------


def test_html_in_the_text_is_escaped_never_markup():
    script_tag, img, attr = render(
        "Hi <script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        '[x](https://a.example/" onmouseover="alert(1))',
    )
    assert "<script" not in script_tag and "&lt;script&gt;alert(1)&lt;/script&gt;" in script_tag
    assert "<img" not in img and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in img
    assert 'onmouseover="' not in attr  # the quote is escaped: no attribute can be injected


@pytest.mark.parametrize(
    "link",
    [
        "[click](javascript:alert(1))",
        "[click](JavaScript:alert(1))",
        "[click](data:text/html;base64,PHNjcmlwdD4=)",
        "[click](vbscript:msgbox)",
        "[click](java\tscript:alert(1))",
    ],
)
def test_dangerous_links_stay_text(link):
    (html,) = render(link)
    assert "<a" not in html and "href" not in html
    assert "click" in html


def test_http_and_relative_links_open_in_a_new_tab_safely():
    (html,) = render("See [the notes](/courses/1/documents/2/file/#page=3) and [docs](https://docs.python.org/3/?a=1&b=2).")
    assert '<a href="/courses/1/documents/2/file/#page=3" rel="noopener noreferrer" target="_blank">the notes</a>' in html
    assert '<a href="https://docs.python.org/3/?a=1&amp;b=2" rel="noopener noreferrer" target="_blank">docs</a>' in html
    (bare,) = render("More at https://example.org/loops.")
    assert '<a href="https://example.org/loops" rel="noopener noreferrer" target="_blank">https://example.org/loops</a>.' in bare


def test_fences_lists_emphasis_quotes_and_headings():
    fence, lists, inline, quote, heading = render(
        "Try this:\n\n```python\nfor i in range(3):\n    print(i < 3)\n```\nDone.",
        "- one\n- **two**\n  - nested\n\n1. first\n2. second",
        "**bold**, *italic*, _also italic_, snake_case_name and `a <b> *c*`",
        "> The notes say\n> loops repeat",
        "### Loops\n# Title",
    )
    assert '<pre><code class="language-python">for i in range(3):\n    print(i &lt; 3)</code></pre>' in fence
    assert fence.startswith("<p>Try this:</p>") and fence.endswith("<p>Done.</p>")
    assert lists == "<ul><li>one</li><li><strong>two</strong><ul><li>nested</li></ul></li></ul>\n<ol><li>first</li><li>second</li></ol>"
    assert "<strong>bold</strong>" in inline and "<em>italic</em>" in inline and "<em>also italic</em>" in inline
    assert "snake_case_name" in inline
    assert "<code>a &lt;b&gt; *c*</code>" in inline  # nothing is Markdown inside code
    assert quote == "<blockquote><p>The notes say<br>\nloops repeat</p></blockquote>"
    assert heading == "<h3>Loops</h3>\n<h3>Title</h3>"  # no h1/h2 inside a chat bubble


def test_an_unterminated_fence_while_streaming_is_a_code_block():
    (html,) = render("Look:\n```js\nlet x = 1;\nif (x < 2) {")
    assert html == '<p>Look:</p>\n<pre><code class="language-js">let x = 1;\nif (x &lt; 2) {</code></pre>'
    (lang,) = render('```"><script>\nx\n```')
    assert "<script" not in lang and 'class="language-script"' in lang


def test_half_written_emphasis_stays_literal():
    (html,) = render("This is **almost bold")
    assert html == "<p>This is **almost bold</p>"


# --- chat.js reducer ----------------------------------------------------------------------------------

REDUCE = """
const { applyEvent, initialState, canSend, retryableId, messageHtml } = await import(process.argv[2]);
const events = JSON.parse(process.argv[3]);
let state = initialState({ messages: JSON.parse(process.argv[4]), maxChars: 50 });
const trace = [];
for (const event of events) {
  const before = state;
  state = applyEvent(state, event);
  trace.push({ same: before === state });
}
const messages = state.order.map((id) => state.messages[id]);
console.log(JSON.stringify({
  order: state.order, messages, generating: state.generating, draft: state.draft, pending: state.pending,
  error: state.error, stopping: state.stopping, canSend: canSend(state), retry: retryableId(state), trace,
  html: messages.map((m) => messageHtml(m, { tutorName: "Professor Ada" })),
}));
"""


def reduce(events: list[dict], messages: list[dict] | None = None) -> dict:
    return node(REDUCE, json.dumps(events), json.dumps(messages or []))


def ev(event_type: str, data: dict, seq: int | None = None) -> dict:
    return {"type": event_type, "seq": seq, "ts": "2025-01-01T00:00:00.000Z", "data": data}


OPEN = ev("local.status", {"status": "open"})
STATUS = ev("conversation.status", {"id": 1, "title": "", "mode": "socratic", "last_seq": 2, "generating": None})


def question(message_id: int, seq: int, text: str = "How does a for loop stop?") -> dict:
    return ev("transcript.final", {
        "segment_id": message_id, "message_id": message_id, "conversation_id": 1, "room_id": None,
        "speaker": {"id": 7, "name": "Sam Student", "kind": "student"}, "text": text, "source": "text",
        "start_ms": 0, "end_ms": 0, "provider": "", "guardrail": None,
    }, seq)


def final(message_id: int, seq: int, text: str, **extra) -> dict:
    data = {"message_id": message_id, "text": text, "citations": [], "guardrail": "on_topic",
            "model": "offline-socratic", "offline": False, "status": "complete", **extra}
    return ev("tutor.message", data, seq)


def test_deltas_accumulate_and_the_final_text_replaces_them():
    citation = {"document": "CS101 course notes", "document_id": 3, "page": 2, "heading": "For loops",
                "snippet": "A for loop runs once per item.", "url": "/courses/1/documents/3/file/#page=2"}
    state = reduce([
        OPEN, STATUS, question(10, 1),
        ev("tutor.thinking", {"message_id": 11}),
        ev("tutor.delta", {"message_id": 11, "text": "A for "}),
        ev("tutor.delta", {"message_id": 11, "text": "loop"}),
    ])
    assert state["generating"] == 11
    tutor = state["messages"][-1]
    assert (tutor["text"], tutor["status"], tutor["thinking"]) == ("A for loop", "streaming", False)

    state = reduce([
        OPEN, STATUS, question(10, 1),
        ev("tutor.thinking", {"message_id": 11}),
        ev("tutor.delta", {"message_id": 11, "text": "A for lo"}),
        final(11, 2, "A for loop stops at the end of the sequence.", citations=[citation], offline=True),
        ev("tutor.delta", {"message_id": 11, "text": " late"}),  # after the final: ignored
    ])
    assert state["order"] == [10, 11]
    tutor = state["messages"][1]
    assert tutor["text"] == "A for loop stops at the end of the sequence."
    assert (tutor["status"], tutor["seq"], tutor["offline"]) == ("complete", 2, True)
    assert state["generating"] is None and state["trace"][-1]["same"] is True
    html = state["html"][1]
    assert "Offline tutor" in html and "Professor Ada" in html
    assert '<a href="/courses/1/documents/3/file/#page=2" target="_blank" rel="noopener noreferrer">CS101 course notes, p. 2 — For loops' in html
    assert "A for loop runs once per item." in html


def test_thinking_shows_dots_until_the_first_delta():
    state = reduce([OPEN, STATUS, question(10, 1), ev("tutor.thinking", {"message_id": 11})])
    assert state["messages"][-1]["thinking"] is True
    assert 'class="thinking"' in state["html"][-1] and "Professor Ada is thinking" in state["html"][-1]


def test_restart_clears_what_was_streamed_for_that_reply():
    state = reduce([
        OPEN, question(10, 1),
        ev("tutor.delta", {"message_id": 11, "text": "The first model said"}),
        ev("tutor.delta", {"message_id": 11, "text": "", "restart": True}),
        ev("tutor.delta", {"message_id": 11, "text": "Start over"}),
        ev("tutor.delta", {"message_id": 11, "text": "Again", "restart": True}),
    ])
    assert state["messages"][-1]["text"] == "Again"


def test_interrupted_and_failed_replies():
    stopped = reduce([
        OPEN, question(10, 1),
        ev("tutor.delta", {"message_id": 11, "text": "Half an"}),
        ev("local.interrupt", {}),
        final(11, 2, "Half an", status="interrupted"),
    ])
    assert stopped["stopping"] is False and stopped["generating"] is None
    assert stopped["messages"][-1]["status"] == "interrupted"
    assert "Stopped" in stopped["html"][-1] and stopped["retry"] == 11

    failed = reduce([
        OPEN, question(10, 1), ev("tutor.thinking", {"message_id": 11}),
        final(11, 2, "", status="failed", error={"code": "tutor_unavailable", "message": "The tutor is unavailable."}),
    ])
    assert failed["messages"][-1]["status"] == "failed" and failed["retry"] == 11
    assert "The tutor is unavailable right now; your message is saved." in failed["html"][-1]
    assert 'data-action="retry"' in failed["html"][-1]

    # Retry: the failed reply stays, the new one (a new message id) comes after it.
    retried = reduce([
        OPEN, question(10, 1), final(11, 2, "", status="failed"),
        ev("local.retry", {}), ev("tutor.thinking", {"message_id": 12}),
    ])
    assert retried["order"] == [10, 11, 12] and retried["retry"] is None and retried["generating"] == 12


def test_a_duplicate_final_changes_nothing():
    once = reduce([OPEN, question(10, 1), final(11, 2, "**Yes**, at the end.")])
    twice = reduce([OPEN, question(10, 1), final(11, 2, "**Yes**, at the end."), final(11, 2, "**Yes**, at the end.")])
    assert twice["order"] == once["order"] == [10, 11]
    assert twice["messages"] == once["messages"]
    assert "<strong>Yes</strong>" in twice["html"][1]


def test_a_refused_message_keeps_the_draft_and_an_accepted_one_clears_it():
    refused = reduce([
        OPEN,
        ev("local.draft", {"text": "x" * 40}),
        ev("local.send", {}),
        ev("error", {"code": "message_too_long", "message": "At most 30 characters."}),
    ])
    assert refused["draft"] == "x" * 40 and refused["pending"] is None
    assert refused["error"] == {"code": "message_too_long", "message": "At most 30 characters."}
    assert refused["canSend"] is True  # the student can shorten it and send again

    accepted = reduce([OPEN, ev("local.draft", {"text": "  What is a loop?  "}), ev("local.send", {}), question(10, 1, "What is a loop?")])
    assert accepted["draft"] == "" and accepted["pending"] is None and accepted["error"] is None


def test_send_waits_for_an_open_socket_and_checks_the_length():
    closed = reduce([ev("local.draft", {"text": "Hello"}), ev("local.send", {})])
    assert closed["pending"] is None and closed["canSend"] is False and closed["trace"][-1]["same"] is True

    too_long = reduce([OPEN, ev("local.draft", {"text": "y" * 51}), ev("local.send", {})])
    assert too_long["pending"] is None and too_long["error"]["code"] == "message_too_long"
    assert too_long["draft"] == "y" * 51

    pending = reduce([OPEN, ev("local.draft", {"text": "Hello"}), ev("local.send", {}), ev("local.status", {"status": "closed"})])
    assert pending["pending"] is None and pending["draft"] == "Hello"


def test_server_rendered_messages_and_a_reply_in_progress_on_connect():
    rendered = [
        {"id": 10, "seq": 1, "role": "student", "text": "What is a loop?", "status": "complete"},
        {"id": 11, "seq": 2, "role": "tutor", "text": "What do you think?", "status": "complete"},
    ]
    state = reduce([
        OPEN,
        ev("conversation.status", {"id": 1, "title": "Loops", "mode": "qa", "last_seq": 3, "generating": {"message_id": 13}}),
        question(12, 3, "And a while loop?"),  # replayed after_seq=2
        ev("tutor.delta", {"message_id": 13, "text": "It checks"}),
    ], rendered)
    assert state["order"] == [10, 11, 12, 13]
    assert state["generating"] == 13 and state["messages"][-1]["text"] == "It checks"


def test_off_topic_replies_and_notices_are_marked():
    state = reduce([OPEN, question(10, 1), final(11, 2, "Let's get back to loops.", guardrail="off_topic", notice="Budget reached: a cheaper model answered.")])
    html = state["html"][1]
    assert "Redirected: off topic" in html and "Budget reached: a cheaper model answered." in html


def test_message_text_is_escaped_in_bubbles():
    state = reduce([OPEN, question(10, 1, "<script>alert(1)</script>"), final(11, 2, '<img src=x onerror="alert(1)">')])
    assert "<script>" not in state["html"][0] and "&lt;script&gt;" in state["html"][0]
    assert "<img" not in state["html"][1]


def test_chat_module_imports_without_a_dom():
    keys = node("""
const chat = await import(process.argv[2]);
console.log(JSON.stringify(Object.keys(chat).sort()));
""")
    assert {"applyEvent", "initialState", "initChat"} <= set(keys)
