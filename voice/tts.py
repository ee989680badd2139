"""Which voice speaks the tutor's replies: the engines in order, each with the persona's voice.

`settings.VOICE_TTS` picks the policy; a persona (sessions.models.AvatarPersona, duck-typed here:
`voice` never imports `sessions`) picks the voice per engine:

- "auto": OpenAI speech if OPENAI_API_KEY is set, then piper, then espeak-ng;
- "server": piper, then espeak-ng (offline only);
- "browser": no engine on the server: the client speaks the text (`tts.speak`);
- "off": nothing is spoken.

In every mode but "off" the browser's speechSynthesis is the last resort when every server engine
fails. Engines are made once per process (piper's model is loaded once, lazily).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from courses.usage import record_provider_call
from voice.providers.base import TtsEngine

logger = logging.getLogger(__name__)

TTS_MODES = ("auto", "server", "browser", "off")
USAGE_KEYS = ("tenant_id", "course_id", "session_id", "conversation_id", "user_id")


@dataclass(frozen=True)
class TtsChoice:
    """How one listener hears the tutor: server engines in order, then (if `browser`) the
    browser's speechSynthesis with `browser_voice`."""

    engines: tuple[TtsEngine, ...] = ()
    voices: Mapping[str, str] = field(default_factory=dict)  # engine name -> voice
    browser_voice: str = ""
    browser: bool = True
    mode: str = "auto"

    @property
    def off(self) -> bool:
        return not self.engines and not self.browser

    def voice_for(self, engine_name: str) -> str:
        return self.voices.get(engine_name, "")


def tts_choice_for(*, persona: Any = None, mode: str | None = None, usage: dict | None = None) -> TtsChoice:
    """The engines and voices for `mode` (default settings.VOICE_TTS) and the persona's voices.
    `usage` (tenant_id, course_id, session_id, conversation_id, user_id) goes to the OpenAI
    engine, which takes it when built; the offline ones get it from ReplySpeaker(usage=)."""
    mode = (mode if mode is not None else settings.VOICE_TTS).strip().lower()
    if mode not in TTS_MODES:
        raise ValueError(f"VOICE_TTS must be one of {', '.join(TTS_MODES)}, not {mode!r}")
    voices = {
        "openai": getattr(persona, "voice_openai", "") or "alloy",
        "piper": getattr(persona, "voice_piper", "") or "",
        "espeak": "",
    }
    browser_voice = getattr(persona, "voice_browser", "") or ""
    if mode == "off":
        return TtsChoice(browser=False, voices=voices, browser_voice=browser_voice, mode=mode)
    engines: list[TtsEngine] = []
    if mode == "auto" and settings.OPENAI_API_KEY:
        openai_engine = _openai_engine(usage)
        if openai_engine is not None:
            engines.append(openai_engine)
    if mode in ("auto", "server"):
        engines += [_piper_engine(), _espeak_engine()]
    return TtsChoice(engines=tuple(engines), voices=voices, browser_voice=browser_voice, mode=mode)


@cache
def _piper_engine() -> TtsEngine:
    from voice.providers.piper import PiperEngine

    engine = PiperEngine()
    # The first listener of this process: load the model now, in the background, so the first
    # reply does not wait the ~0.7 s of loading on top of its first sentence.
    threading.Thread(target=_warm_up, args=(engine,), name="piper-warm-up", daemon=True).start()
    return engine


def _warm_up(engine: Any) -> None:
    try:
        engine.warm_up()
    except Exception as exc:  # the first sentence will report it and fall back
        logger.warning("piper could not load: %s", exc)


@cache
def _espeak_engine() -> TtsEngine:
    from voice.providers.espeak import EspeakEngine

    return EspeakEngine()


def _openai_engine(usage: dict | None) -> TtsEngine | None:
    """OpenAI speech (voice/providers/openai_audio.py), or None where it is not available."""
    try:
        module = importlib.import_module("voice.providers.openai_audio")
        return module.OpenAISpeechEngine(usage=usage)
    except (ImportError, AttributeError, TypeError) as exc:
        logger.warning("OpenAI speech is not available, using the offline voices: %s", exc)
        return None


async def tts_usage_record(
    *,
    usage: Mapping[str, Any],
    provider: str,
    model: str,
    characters: int,
    latency_ms: int = 0,
    outcome: str = "ok",
    error: str = "",
) -> None:
    """Announce one synthesis (kind tts, units characters, cost 0: offline engines are free)."""
    if not usage.get("tenant_id"):
        return
    try:
        await database_sync_to_async(record_provider_call)(
            kind="tts", provider=provider, model=model, units=characters, latency_ms=latency_ms,
            outcome=outcome, error=error, **{key: usage.get(key) for key in USAGE_KEYS},
        )
    except Exception:  # usage is bookkeeping: it must never silence the tutor
        logger.warning("could not record TTS usage", exc_info=True)
