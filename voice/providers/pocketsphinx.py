"""Pocketsphinx: the offline speech-to-text engine, always last in the chain.

With no keywords it decodes with the wheel's general English model (en-us LM): it works, it is
not accurate. With keywords (the course's scope terms, StreamOptions.keywords) it decodes with a
JSGF grammar that loops over the words of those keywords, so sentences made of them decode
exactly (and nothing outside them can be heard: the caller chooses the list; a long list, say 100
words, is slower and less exact).
Words missing from the CMU dictionary get a pronunciation from espeak-ng's phonemes mapped to
ARPABET.

Decoding never runs on the event loop, nor in a thread of its process: pocketsphinx holds the GIL
while it decodes (a 2 s utterance stalled the loop for ~0.5 s in bench/audio_ingest.py). Each
decoder lives in its own process (a one-worker `ProcessPoolExecutor`, spawned), and each event
loop uses at most settings.VOICE_POCKETSPHINX_DECODERS of them at once, idle ones reused (~0.5 s to start, the
acoustic model ~35 MB each); one decoder holds every grammar it has been asked for, switching with
`activate_search`. A stream takes a decoder at its first audio if one is free (one is kept in
reserve for the next case) and decodes incrementally, every settings.VOICE_PARTIAL_INTERVAL_MS of audio, giving a partial each time;
otherwise it buffers and waits for a decoder in `finish`. A decoder process that fails is
discarded (SttUnavailable: the chain falls back or the utterance is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import multiprocessing
import os
import re
import shutil
import subprocess
import threading
import time
import weakref
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal

from channels.db import database_sync_to_async
from django.conf import settings

from voice.providers.base import (
    BYTES_PER_MS,
    PartialCallback,
    StreamOptions,
    SttUnavailable,
    Transcript,
    pcm_ms,
)

logger = logging.getLogger(__name__)

NAME = "pocketsphinx"
MODEL = "en-us"

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")

# espeak-ng's phoneme mnemonics (en-us, `-x`) to the CMU dictionary's ARPABET.
_ESPEAK_TO_ARPABET = {
    "a": "AE", "aa": "AA", "a#": "AH", "A:": "AA", "A@": "AA R", "0": "AA", "O": "AO", "O:": "AO",
    "O@": "AO R", "o@": "AO R", "V": "AH", "@": "AH", "@2": "AH", "@5": "AH", "@L": "AH L",
    "3": "ER", "3:": "ER", "e@": "EH R", "E": "EH", "E2": "EH", "I": "IH", "I#": "IH", "I2": "IH",
    "i": "IY", "i:": "IY", "i@": "IH R", "i@3": "IH R", "U": "UH", "U@": "UH R", "u:": "UW",
    "eI": "EY", "aI": "AY", "aI@": "AY ER", "aI3": "AY ER", "OI": "OY", "aU": "AW", "aU@": "AW ER",
    "oU": "OW", "p": "P", "b": "B", "t": "T", "t#": "T", "d": "D", "d#": "D", "k": "K", "g": "G",
    "x": "K", "f": "F", "v": "V", "T": "TH", "D": "DH", "s": "S", "z": "Z", "S": "SH", "Z": "ZH",
    "h": "HH", "m": "M", "n": "N", "n-": "N", "N": "NG", "l": "L", "l-": "L", "r": "R", "r-": "R",
    "w": "W", "j": "Y", "tS": "CH", "dZ": "JH", "*": "T", "?": "",
}


@functools.lru_cache(maxsize=4096)
def arpabet(word: str) -> str | None:
    """A pronunciation of `word` in ARPABET from espeak-ng's phonemes, or None."""
    espeak = shutil.which("espeak-ng")
    if not espeak or not _WORD.fullmatch(word):
        return None
    try:
        out = subprocess.run(  # noqa: S603 - fixed binary, a checked word
            [espeak, "-v", "en-us", "-q", "-x", "--sep=_", word],
            check=True, capture_output=True, text=True, timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    phones = []
    for symbol in out.replace(" ", "_").strip().split("_"):
        symbol = symbol.strip().lstrip("',%=")
        if not symbol:
            continue
        mapped = _ESPEAK_TO_ARPABET.get(symbol, _ESPEAK_TO_ARPABET.get(symbol.rstrip("#2345")))
        if mapped is None:
            logger.info("pocketsphinx: no ARPABET for espeak phoneme %r in %r", symbol, word)
            continue
        phones += mapped.split()
    return " ".join(phones) or None


def keyword_words(keywords) -> list[str]:
    """The distinct lower-case words of `keywords` (phrases split), in order."""
    seen: dict[str, None] = {}
    for keyword in keywords:
        for word in _WORD.findall(str(keyword).lower()):
            seen.setdefault(word, None)
    return list(seen)


class _Decoder:
    """A pocketsphinx Decoder and the grammars it already holds (inside a decoder process)."""

    def __init__(self):
        import pocketsphinx

        self.decoder = pocketsphinx.Decoder(loglevel="FATAL", bestpath=False)
        self.searches: set[str] = set()

    def use(self, words: tuple[str, ...]) -> None:
        """Activate the grammar for `words` (the general LM when empty); build it once."""
        if not words:
            self.decoder.activate_search(None)
            return
        name = "kw_" + hashlib.sha1(" ".join(words).encode(), usedforsecurity=False).hexdigest()[:16]
        if name not in self.searches:
            known = []
            for word in words:
                if self.decoder.lookup_word(word) is None:
                    phones = arpabet(word)
                    if not phones:
                        logger.warning("pocketsphinx: cannot pronounce %r, left out of the grammar", word)
                        continue
                    try:
                        self.decoder.add_word(word, phones, True)
                    except RuntimeError:
                        logger.warning("pocketsphinx: cannot add %r (%s)", word, phones)
                        continue
                known.append(word)
            if not known:
                self.decoder.activate_search(None)
                return
            grammar = (
                "#JSGF V1.0;\ngrammar kw;\npublic <utterance> = <word>+;\n"
                f"<word> = {' | '.join(known)};\n"
            )
            self.decoder.add_jsgf_string(name, grammar)
            self.searches.add(name)
        self.decoder.activate_search(name)


# --- inside a decoder process (one decoder each; one stream at a time uses it) ----------------
# pocketsphinx holds the GIL while it decodes, so decoding in a thread would stall the event
# loop: every decoder lives in its own process instead.

_process_decoder: _Decoder | None = None
# Decoder processes run at a lower priority than the process serving sockets: when the CPU is
# short, finals come later rather than every connection's frames.
DECODER_NICE = 10


def _process_init(nice: int = 0) -> None:
    global _process_decoder
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)  # the web process's event loop before decoding
    _process_decoder = _Decoder()


def _process_ready() -> bool:
    return _process_decoder is not None


def _hyp() -> str:
    hyp = _process_decoder.decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def _process_start(words: tuple[str, ...]) -> None:
    _process_decoder.use(words)
    _process_decoder.decoder.start_utt()


def _process_feed(pcm: bytes) -> str:
    _process_decoder.decoder.process_raw(pcm, False, False)
    return _hyp()


def _process_end(pcm: bytes) -> str:
    if pcm:
        _process_decoder.decoder.process_raw(pcm, False, False)
    _process_decoder.decoder.end_utt()
    return _hyp()


def _process_abort() -> None:
    with contextlib.suppress(RuntimeError):
        _process_decoder.decoder.end_utt()


class DecoderSlot:
    """One decoder process (a single-worker process pool), spawned and loaded when created."""

    def __init__(self):
        self.executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_process_init,
            initargs=(DECODER_NICE,),
        )
        self.executor.submit(_process_ready).result()  # blocks: create it with asyncio.to_thread

    async def call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


# Idle decoder processes of this process, shared by the pools of every event loop (a process has
# one loop in production; tests have one per test).
_idle_slots: list[DecoderSlot] = []
_idle_lock = threading.Lock()


class DecoderPool:
    """At most `size` decoders in use at once by one event loop; idle processes are reused.

    `available()` (may a stream take a decoder now to decode as the audio comes?) keeps `reserve`
    decoders back for streams that buffered their utterance and need one at its end: those wait
    only for a decode, never behind someone's whole utterance."""

    def __init__(self, size: int, *, reserve: int = 1):
        self.size = max(1, size)
        self.reserve = max(0, min(reserve, self.size - 1))
        self._in_use = 0
        self._waiters: deque[asyncio.Future] = deque()

    def available(self) -> bool:
        return self.size - self._in_use > self.reserve

    async def acquire(self) -> DecoderSlot:
        while self._in_use >= self.size:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake()  # it was woken as it was cancelled: pass the turn on
                raise
        self._in_use += 1
        try:
            with _idle_lock:
                slot = _idle_slots.pop() if _idle_slots else None
            return slot or await asyncio.to_thread(DecoderSlot)
        except BaseException:
            self._in_use -= 1
            self._wake()
            raise

    def release(self, slot: DecoderSlot | None, *, broken: bool = False) -> None:
        if slot is not None:
            if broken:
                slot.close()
            else:
                with _idle_lock:
                    _idle_slots.append(slot)
        self._in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DecoderPool] = weakref.WeakKeyDictionary()


def decoder_pool() -> DecoderPool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = DecoderPool(settings.VOICE_POCKETSPHINX_DECODERS)
    return pool


class PocketsphinxEngine:
    name = NAME

    def __init__(self, *, pool: DecoderPool | None = None):
        self._pool = pool

    async def open(self, options: StreamOptions, *, on_partial: PartialCallback | None = None):
        try:
            import pocketsphinx  # noqa: F401
        except ImportError as exc:
            raise SttUnavailable(f"pocketsphinx is not installed: {exc}") from exc
        return PocketsphinxStream(options, on_partial=on_partial, pool=self._pool or decoder_pool())


class PocketsphinxStream:
    provider = NAME

    def __init__(self, options: StreamOptions, *, on_partial: PartialCallback | None, pool: DecoderPool):
        self.options = options
        self.on_partial = on_partial
        self.pool = pool
        self.words = tuple(keyword_words(options.keywords))
        self.interval_bytes = max(1, settings.VOICE_PARTIAL_INTERVAL_MS) * BYTES_PER_MS
        self._decoder: DecoderSlot | None = None
        self._pending = bytearray()  # audio not yet given to the decoder
        self._utterance_bytes = 0
        self._last_partial = ""

    # --- loop side ---------------------------------------------------------------------------

    async def _take_decoder(self) -> None:
        try:
            slot = await self.pool.acquire()
        except Exception as exc:
            raise SttUnavailable(f"pocketsphinx could not start a decoder: {exc}") from exc
        try:
            await slot.call(_process_start, self.words)
        except Exception as exc:
            self.pool.release(slot, broken=True)  # a decoder that failed is not reused
            raise SttUnavailable(f"pocketsphinx failed to start: {exc}") from exc
        self._decoder = slot

    async def feed(self, pcm: bytes) -> None:
        self._pending += pcm
        self._utterance_bytes += len(pcm)
        if self._decoder is None:
            if not self.pool.available():
                return  # decode at finish, when a decoder is free
            await self._take_decoder()
        if len(self._pending) < self.interval_bytes:
            return
        chunk = bytes(self._pending)
        self._pending.clear()
        try:
            text = await self._decoder.call(_process_feed, chunk)
        except Exception as exc:
            await self._drop_decoder()
            raise SttUnavailable(f"pocketsphinx failed: {exc}") from exc
        if text and text != self._last_partial and self.on_partial is not None:
            self._last_partial = text
            await self.on_partial(
                Transcript(text=text, is_final=False, provider=NAME, end_ms=pcm_ms(self._utterance_bytes))
            )

    async def finish(self) -> Transcript:
        started = time.monotonic()
        audio_ms = pcm_ms(self._utterance_bytes)
        if self._decoder is None and self._utterance_bytes:
            await self._take_decoder()
        text = ""
        if self._decoder is not None:
            chunk = bytes(self._pending)
            self._pending.clear()
            try:
                text = await self._decoder.call(_process_end, chunk)
            except Exception as exc:
                await self._drop_decoder()
                raise SttUnavailable(f"pocketsphinx failed: {exc}") from exc
            self.pool.release(self._decoder)
            self._decoder = None
        latency_ms = int((time.monotonic() - started) * 1000)
        self._pending.clear()
        self._utterance_bytes = 0
        self._last_partial = ""
        if audio_ms:
            await self._record_usage(audio_ms, latency_ms)
        return Transcript(text=text, is_final=True, provider=NAME, end_ms=audio_ms, latency_ms=latency_ms)

    async def _drop_decoder(self) -> None:
        slot, self._decoder = self._decoder, None
        if slot is not None:
            self.pool.release(slot, broken=True)

    async def _record_usage(self, audio_ms: int, latency_ms: int) -> None:
        usage = self.options.usage or {}
        if not usage.get("tenant_id"):
            return
        from courses.usage import record_provider_call

        try:
            await database_sync_to_async(record_provider_call)(
                tenant_id=usage["tenant_id"],
                kind="stt",
                provider=NAME,
                model=MODEL,
                units=(Decimal(audio_ms) / 1000).quantize(Decimal("0.001")),
                cost=Decimal(0),
                latency_ms=latency_ms,
                course_id=usage.get("course_id"),
                session_id=usage.get("session_id"),
                conversation_id=usage.get("conversation_id"),
                user_id=usage.get("user_id"),
            )
        except Exception:  # usage is bookkeeping: never lose the transcript over it
            logger.warning("recording pocketsphinx usage failed", exc_info=True)

    async def aclose(self) -> None:
        decoder = self._decoder
        if decoder is None:
            return
        self._decoder = None
        broken = True  # until the abort is known to have run (a cancelled close included)
        try:
            await decoder.call(_process_abort)
            broken = False
        except Exception:
            logger.warning("closing a pocketsphinx stream failed", exc_info=True)
        finally:
            # Always back to the pool (a broken one is closed), or the slot is lost for good.
            self.pool.release(decoder, broken=broken)
