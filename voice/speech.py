"""Speaking a streamed reply sentence by sentence, so the first words are heard while the model
is still writing the rest.

`sentences(buffer)` cuts finished sentences off the text received so far (markdown, code and
citation markers removed: they are for the eye). A `ReplySpeaker` lives on one socket: the
consumer feeds it the reply's deltas and tells it when the reply is over; it queues each sentence,
synthesises them in order with the first engine that works and sends

    tts.audio {message_id, sentence, format: "pcm16", sample_rate, channels: 1, engine, text}
    <binary frames of PCM16 LE mono, at most 8 KiB each>
    ... one pair per sentence ...
    tts.end {message_id, sentences}

or, for the browser's voice, `tts.speak` {message_id, sentence, text, voice} per sentence.
`stop()` (a barge-in) cancels what is queued or being synthesised and sends `tts.stop`.

Several sockets of one room hear the same reply: a per-process cache keyed (engine, voice, text)
holds the PCM of recent sentences, and a sentence being synthesised is shared by every socket
that asks for it meanwhile (they stream the same chunks), so it is synthesised once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from voice.providers.base import TtsEngine, TtsUnavailable
from voice.tts import TtsChoice

logger = logging.getLogger(__name__)

MAX_BINARY_FRAME = 8 * 1024  # bytes of PCM per WebSocket frame (WS_MAX_BINARY_FRAME_BYTES)
MAX_SENTENCE_CHARS = 300  # a longer run without a full stop is cut at a clause boundary
# A reply's first words go out at its first clause when the first sentence is long: a sentence is
# synthesised whole, so a shorter first piece is heard sooner (piper: ~2x sooner at 70 characters).
FIRST_CLAUSE_MIN_CHARS = 20
FIRST_SENTENCE_SPLIT_CHARS = 50
BROWSER_CHARS_PER_SECOND = 14.0  # to estimate how long the browser speaks a sentence
ACK_GRACE_SECONDS = 2.0  # after the estimated end of playback, a client that never acknowledges stops counting as listening

# --- Sentences ---------------------------------------------------------------------------------

# Words that end with a full stop without ending the sentence (lower case, without the stop).
ABBREVIATIONS = frozenset(
    {
        "cf", "vs", "viz", "al", "dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "fig", "figs", "eq",
        "eqs", "approx", "ca", "resp", "p", "pp", "vol", "ch", "sec", "dept", "univ",
    }
)  # fmt: skip
_TERMINATORS = ".!?…"
_CLOSERS = "\"')]}\u201d\u2019\u00bb"  # closing quotes and brackets
_FENCE = "```"
_FENCED_BLOCK = re.compile(r"```.*?```", re.S)
_CITATION = re.compile(r"\s*\[\^?\d+(?:\s*[,;\u2013-]\s*\d+)*\]")
_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")
_LINE_MARKUP = re.compile(r"(?m)^[ \t]*(?:#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+|\d{1,3}[.)][ \t]+)")
_INLINE_MARKUP = re.compile(r"\*\*|__|~~|[*`]")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>\n]*>")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_CLAUSE_BREAK = re.compile(r"[,;:\u2014\u2013]\s")
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # e.g, i.e, U.S, a.m
_OPEN_CITATION = re.compile(r"\[\^?[\d,;\s\u2013-]{0,12}$")  # "[1" waiting for its "]"


def speakable(text: str) -> str:
    """`text` without what is only for the eye: code blocks, markdown, citation markers, tags."""
    text = _FENCED_BLOCK.sub("\n", text)
    text = _CITATION.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _LINE_MARKUP.sub("", text)
    text = _INLINE_MARKUP.sub("", text)
    text = _HTML_TAG.sub("", text)
    return _SPACES.sub(" ", text)


def sentences(buffer: str, *, final: bool = False) -> tuple[list[str], str]:
    """Split the text received so far into finished sentences and the rest still being written.

    A sentence ends at . ! ? (with closing quotes or brackets) followed by white space, or at a
    line break; not at a decimal point (3.14), an abbreviation (e.g., Dr.) or an initial (J.).
    Text inside an unclosed code fence waits for the fence to close. With `final`, the rest is a
    sentence too. Returned sentences are cleaned for speech (`speakable`) and never empty; the
    rest is returned cleaned as well, so feeding it back with more text is safe.
    """
    held = ""
    if buffer.count(_FENCE) % 2:  # a code block still streaming: say nothing of it
        cut = buffer.rfind(_FENCE)
        buffer, held = buffer[:cut], buffer[cut:]
        if final:
            held = ""
    text = speakable(buffer)
    if not final and held == "":
        # A marker may be cut in two ("[1" ... "]", "**" ... "): keep an open bracket's tail back.
        opened = _OPEN_CITATION.search(text)
        if opened:
            text, held = text[: opened.start()], text[opened.start() :]
    found: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\n":
            _append(found, text[start:i])
            start = i + 1
        elif char in _TERMINATORS:
            end = i + 1
            while end < n and (text[end] in _TERMINATORS or text[end] in _CLOSERS):
                end += 1
            if end < n and text[end].isspace():
                if not _is_abbreviation(text, i):
                    _append(found, text[start:end])
                    start = end
                i = end
                continue
            if end >= n:
                break  # maybe more is coming (3. then 14); `final` takes it below
            i = end
            continue
        i += 1
    rest = text[start:]
    if not final and len(rest) > MAX_SENTENCE_CHARS:
        breaks = [m.end() for m in _CLAUSE_BREAK.finditer(rest, 0, MAX_SENTENCE_CHARS)]
        cut = breaks[-1] if breaks else rest.rfind(" ", 0, MAX_SENTENCE_CHARS) + 1
        if cut > 0:
            _append(found, rest[:cut])
            rest = rest[cut:]
    if final:
        _append(found, rest + speakable(held))
        return found, ""
    return found, rest.lstrip() + held


def _append(found: list[str], sentence: str) -> None:
    sentence = sentence.strip()
    if any(c.isalnum() for c in sentence):
        found.append(sentence)


def first_clause(text: str) -> tuple[str, str] | None:
    """`text` cut after its first clause (, ; : or a dash) of at least FIRST_CLAUSE_MIN_CHARS,
    if a real remainder follows; else None."""
    for match in _CLAUSE_BREAK.finditer(text, FIRST_CLAUSE_MIN_CHARS):
        head, tail = text[: match.end()].strip(), text[match.end() :].strip()
        if len(tail) >= 10:
            return head, tail
        break
    return None


def _first_clause_apart(complete: list[str], rest: str) -> tuple[list[str], str]:
    """For a reply's first words: its first long sentence (or a long unfinished one) in two."""
    if complete:
        if len(complete[0]) > FIRST_SENTENCE_SPLIT_CHARS and (cut := first_clause(complete[0])):
            return [*cut, *complete[1:]], rest
        return complete, rest
    if len(rest) > FIRST_SENTENCE_SPLIT_CHARS:
        cut = first_clause(rest)
        if cut:
            return [cut[0]], rest[rest.index(cut[0]) + len(cut[0]) :].lstrip()
    return complete, rest


def _is_abbreviation(text: str, stop: int) -> bool:
    """Whether the full stop at `stop` belongs to the word before it."""
    if text[stop] != ".":
        return False
    begin = stop
    while begin > 0 and not text[begin - 1].isspace() and text[begin - 1] not in "([{\"'\u201c\u2018":
        begin -= 1
    word = text[begin:stop]
    if not word:
        return False
    if len(word) == 1 and word.isalpha() and word.isupper() and word != "I":
        return True  # an initial: J. S. Bach
    return word.lower() in ABBREVIATIONS or bool(_DOTTED.fullmatch(word))


# --- The shared synthesis cache ------------------------------------------------------------------


class _Synthesis:
    """One sentence being synthesised by one engine; any number of listeners stream its chunks."""

    def __init__(self, engine: TtsEngine, text: str, voice: str, usage: dict | None):
        self.loop = asyncio.get_running_loop()
        self.chunks: list[bytes] = []
        self.done = False
        self.error: TtsUnavailable | None = None
        self.listeners = 0
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(engine, text, voice, usage))

    async def _run(self, engine: TtsEngine, text: str, voice: str, usage: dict | None) -> None:
        try:
            stream = _synthesize(engine, text, voice=voice, usage=usage)
            try:
                async for chunk in stream:
                    if chunk:
                        self.chunks.append(chunk)
                        self._wake()
            finally:
                await stream.aclose()
        except TtsUnavailable as exc:
            self.error = exc
        except asyncio.CancelledError:
            self.error = TtsUnavailable("synthesis cancelled")
            raise
        except Exception as exc:  # an engine bug must fall back like an outage
            logger.exception("TTS engine %s failed", engine.name)
            self.error = TtsUnavailable(f"{engine.name} failed: {exc}")
        finally:
            self.done = True
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def cancel(self) -> None:
        self._task.cancel()

    async def stream(self) -> AsyncIterator[bytes]:
        index = 0
        while True:
            if index < len(self.chunks):
                index += 1
                yield self.chunks[index - 1]
                continue
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            await self._changed.wait()


class SynthesisCache:
    """Recent sentences' PCM by (engine, voice, text), LRU; in-flight syntheses are shared."""

    def __init__(self, size: int = 64):
        self.size = size
        self._entries: OrderedDict[tuple[str, str, str], bytes | _Synthesis] = OrderedDict()
        self.syntheses = 0  # how many times an engine was asked (tests, benchmarks)

    def clear(self) -> None:
        self._entries.clear()

    async def stream(
        self, engine: TtsEngine, text: str, *, voice: str, usage: dict | None
    ) -> AsyncIterator[bytes]:
        """The PCM of `text` in `engine`'s voice: cached, shared with another listener, or new."""
        key = (engine.name, voice, text)
        entry = self._entries.get(key)
        if isinstance(entry, bytes):
            self._entries.move_to_end(key)
            yield entry
            return
        if entry is None or entry.loop is not asyncio.get_running_loop() or (entry.done and entry.error):
            entry = _Synthesis(engine, text, voice, usage)
            self.syntheses += 1
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self._trim()
        entry.listeners += 1
        finished = False
        try:
            async for chunk in entry.stream():
                yield chunk
            finished = True
        except TtsUnavailable:
            if self._entries.get(key) is entry:
                del self._entries[key]
            raise
        finally:
            entry.listeners -= 1
            if finished and entry.error is None and self._entries.get(key) is entry:
                self._entries[key] = b"".join(entry.chunks)
            elif not entry.done and entry.listeners == 0:
                # Nobody listens any more (a barge-in): stop the engine now.
                entry.cancel()
                if self._entries.get(key) is entry:
                    del self._entries[key]

    def _trim(self) -> None:
        while len(self._entries) > self.size:
            key, entry = next(iter(self._entries.items()))
            if isinstance(entry, _Synthesis) and not entry.done:
                self._entries.move_to_end(key)  # still in use; evict an older finished one
                if all(isinstance(e, _Synthesis) and not e.done for e in self._entries.values()):
                    return
                continue
            del self._entries[key]


synthesis_cache = SynthesisCache()

_accepts_usage: dict[type, bool] = {}


def _synthesize(engine: TtsEngine, text: str, *, voice: str, usage: dict | None) -> AsyncIterator[bytes]:
    """engine.synthesize, with the usage context for engines that record it themselves."""
    kind = type(engine)
    if kind not in _accepts_usage:
        try:
            _accepts_usage[kind] = "usage" in inspect.signature(engine.synthesize).parameters
        except (TypeError, ValueError):
            _accepts_usage[kind] = False
    if usage and _accepts_usage[kind]:
        return engine.synthesize(text, voice=voice, usage=usage)  # type: ignore[call-arg]
    return engine.synthesize(text, voice=voice)


# --- The speaker of one socket --------------------------------------------------------------------

SendEvent = Callable[[str, dict], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]


@dataclass
class _Sentence:
    message_id: int
    number: int  # 1-based within the reply
    text: str


@dataclass
class _End:
    message_id: int


@dataclass
class _Reply:
    fed: str = ""  # every delta so far, as received
    rest: str = ""  # the cleaned text not yet cut into a sentence
    count: int = 0  # sentences queued
    finished: bool = False  # finish() was called
    ended: bool = False  # tts.end was sent
    acknowledged: bool = False


class ReplySpeaker:
    """Speaks one socket's tutor replies as they stream (see the module's docstring)."""

    def __init__(
        self,
        *,
        choice: TtsChoice,
        send_event: SendEvent,
        send_bytes: SendBytes,
        usage: dict | None = None,
        cache: SynthesisCache | None = None,
    ):
        self.choice = choice
        self.send_event = send_event
        self.send_bytes = send_bytes
        self.usage = usage
        self.cache = cache or synthesis_cache
        self._engine_index = 0  # engines before it failed for this socket
        self._replies: dict[int, _Reply] = {}
        self._stopped: set[int] = set()  # replies cut off by stop(): their late deltas are ignored
        self._queue: asyncio.Queue[_Sentence | _End] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._busy = False  # the worker is speaking an item
        self._playback_until = 0.0  # monotonic estimate of when the client stops playing

    # -- what the consumer calls --

    @property
    def speaking(self) -> bool:
        """Audio is queued or sent for a reply not yet ended, or ended and not acknowledged
        (while the client may still be playing it)."""
        if self.choice.off:
            return False
        if self._busy or not self._queue.empty():
            return True
        for reply in self._replies.values():
            if reply.count and not reply.ended:
                return True
            if reply.count and not reply.acknowledged and time.monotonic() < self._playback_until + ACK_GRACE_SECONDS:
                return True
        return False

    def _reply(self, message_id: int) -> _Reply:
        """The reply's state, begun (and earlier, played replies forgotten) at its first text."""
        reply = self._replies.get(message_id)
        if reply is None:
            self._forget_played()
            reply = self._replies[message_id] = _Reply()
        return reply

    async def feed(self, message_id: int, delta: str, *, restart: bool = False) -> None:
        """More of the reply's text: every sentence it completes is queued to be spoken.
        `restart` (a `tutor.delta` with restart: true): another model starts the reply over, so
        the unfinished sentence is dropped (what was said stays said)."""
        if self.choice.off or message_id in self._stopped or not (delta or restart):
            return
        reply = self._reply(message_id)
        if reply.finished:
            return
        if restart:
            reply.fed = reply.rest = ""
        reply.fed += delta
        complete, reply.rest = sentences(reply.rest + delta)
        if not reply.count:
            complete, reply.rest = _first_clause_apart(complete, reply.rest)
        self._enqueue(message_id, reply, complete)

    async def finish(self, message_id: int, text: str | None = None, *, status: str = "complete") -> None:
        """The reply is over (`text`: its final text, if known): speak the rest, then `tts.end`.
        `status` of the `tutor.message`: "interrupted" silences the reply at once (`tts.stop`
        if any of it was spoken); "failed" speaks what was queued, not the unfinished rest."""
        if self.choice.off or message_id in self._stopped:
            return
        if status == "interrupted":
            reply = self._replies.get(message_id)
            if reply is not None and reply.count and not reply.ended:
                await self.stop("interrupted")
            else:
                self._replies.pop(message_id, None)
                self._stopped.add(message_id)
            return
        if status == "failed":
            text = None
            if message_id in self._replies:
                self._replies[message_id].rest = ""
        reply = self._reply(message_id)
        if reply.finished:
            return
        reply.finished = True
        buffer = reply.rest
        if text is not None:
            if text.startswith(reply.fed):
                buffer += text[len(reply.fed):]
            elif not reply.count:
                buffer = text  # nothing said yet: the final text replaces the deltas
        complete, reply.rest = sentences(buffer, final=True) if status != "failed" else ([], "")
        if not reply.count:
            complete, _ = _first_clause_apart(complete, "")
        self._enqueue(message_id, reply, complete)
        if reply.count:
            self._queue.put_nowait(_End(message_id))
            self._ensure_worker()
        else:
            reply.ended = reply.acknowledged = True  # nothing to say (only code, say)

    async def stop(self, reason: str = "barge_in") -> None:
        """Stop at once: queued sentences dropped, synthesis cancelled; `tts.stop` {reason}.
        Later text of the stopped replies is ignored, except after reason "restart" (another
        model starts the reply over: its new text is spoken from the start)."""
        if reason != "restart":
            self._stopped.update(self._replies)
        self._replies.clear()
        self._queue = asyncio.Queue()
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        self._busy = False
        self._playback_until = 0.0
        if len(self._stopped) > 100:  # message ids only grow; old ones cannot come back
            self._stopped = set(sorted(self._stopped)[-50:])
        await self.send_event("tts.stop", {"reason": reason})

    def acknowledge(self, message_id: int | None = None) -> None:
        """The client played everything (`tts.done`), or everything of `message_id`."""
        for reply_id, reply in list(self._replies.items()):
            if message_id is None or reply_id == message_id:
                reply.acknowledged = True
                if reply.ended:
                    del self._replies[reply_id]

    async def aclose(self) -> None:
        """The socket is gone: cancel quietly (no `tts.stop`)."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    def _forget_played(self) -> None:
        """A new reply begins: drop ended replies that the client has played (or must have by now)."""
        if time.monotonic() < self._playback_until + ACK_GRACE_SECONDS:
            return
        for reply_id, reply in list(self._replies.items()):
            if reply.ended:
                del self._replies[reply_id]

    # -- the worker --

    def _enqueue(self, message_id: int, reply: _Reply, complete: list[str]) -> None:
        for text in complete:
            reply.count += 1
            self._queue.put_nowait(_Sentence(message_id, reply.count, text))
        if complete:
            self._ensure_worker()

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(self._queue))

    async def _work(self, queue: asyncio.Queue) -> None:
        while not queue.empty():
            item = queue.get_nowait()
            self._busy = True
            try:
                if isinstance(item, _End):
                    reply = self._replies.get(item.message_id)
                    if reply is not None:
                        reply.ended = True
                    await self.send_event("tts.end", {"message_id": item.message_id, "sentences": reply.count if reply else 0})
                else:
                    await self._speak(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a closed socket, say: stop speaking, never crash the consumer
                logger.warning("speaking a reply failed", exc_info=True)
                return
            finally:
                self._busy = False

    async def _speak(self, sentence: _Sentence) -> None:
        engines = self.choice.engines
        while self._engine_index < len(engines):
            engine = engines[self._engine_index]
            try:
                await self._speak_with(engine, sentence)
                return
            except TtsUnavailable as exc:
                logger.warning("TTS engine %s failed, falling back: %s", engine.name, exc)
                self._engine_index += 1
        if engines:
            logger.warning("no server TTS engine could speak; the browser speaks instead")
        if self.choice.browser:
            await self.send_event(
                "tts.speak",
                {
                    "message_id": sentence.message_id,
                    "sentence": sentence.number,
                    "text": sentence.text,
                    "voice": self.choice.browser_voice,
                },
            )
            self._played(len(sentence.text) / BROWSER_CHARS_PER_SECOND)

    async def _speak_with(self, engine: TtsEngine, sentence: _Sentence) -> None:
        """Stream one sentence; TtsUnavailable before its first audio means: try the next engine."""
        voice = self.choice.voice_for(engine.name)
        stream = self.cache.stream(engine, sentence.text, voice=voice, usage=self.usage)
        announced = False
        carry = b""
        try:
            async for chunk in stream:
                if not announced:
                    await self.send_event(
                        "tts.audio",
                        {
                            "message_id": sentence.message_id,
                            "sentence": sentence.number,
                            "format": "pcm16",
                            "sample_rate": engine.sample_rate,
                            "channels": 1,
                            "engine": engine.name,
                            "text": sentence.text,
                        },
                    )
                    announced = True
                data = carry + chunk
                cut = len(data) - len(data) % 2
                data, carry = data[:cut], data[cut:]
                for offset in range(0, len(data), MAX_BINARY_FRAME):
                    await self.send_bytes(data[offset : offset + MAX_BINARY_FRAME])
                self._played(len(data) / 2 / engine.sample_rate)
        except TtsUnavailable as exc:
            if not announced:
                raise
            # Part of the sentence was heard: another engine would say it again from its start.
            # The sentence ends short; the next ones go to the next engine.
            logger.warning("TTS engine %s failed mid-sentence, the sentence ends short: %s", engine.name, exc)
            self._engine_index += 1
        finally:
            await stream.aclose()

    def _played(self, seconds: float) -> None:
        self._playback_until = max(self._playback_until, time.monotonic()) + seconds
