"""Speech-to-text engines in the order the chain tries them (DESIGN.md, "Providers").

    chain = stt_chain_for()                  # Deepgram? -> OpenAI? -> pocketsphinx
    stream = await chain.open(options, on_partial=..., on_switch=...)

A cloud engine is in the chain only when its key is set; pocketsphinx (offline) is always last.
All chains of a process share one `EngineHealth`, so an engine that failed for one connection is
skipped by the others while it cools down. The cloud engines' modules are imported by name and
lazily: a missing module is logged and skipped.
"""

from __future__ import annotations

import importlib
import logging

from django.conf import settings

from voice.providers.base import EngineHealth, StreamOptions, SttChain, SttEngine, Transcript

logger = logging.getLogger(__name__)

# (setting with the key, module, class) for each cloud engine, in order of preference.
CLOUD_STT_ENGINES = (
    ("DEEPGRAM_API_KEY", "voice.providers.deepgram", "DeepgramEngine"),
    ("OPENAI_API_KEY", "voice.providers.openai_audio", "OpenAITranscriptionEngine"),
)

_health = EngineHealth()


def stt_health() -> EngineHealth:
    """The process-wide health of the STT engines."""
    return _health


def _cloud_engine(key_setting: str, module_name: str, class_name: str, api_key: str) -> SttEngine | None:
    try:
        module = importlib.import_module(module_name)
        engine_class = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        logger.warning("STT engine %s.%s is not available (%s): skipped", module_name, class_name, exc)
        return None
    return engine_class(api_key=api_key)


def stt_chain_for(*, keys_from=settings) -> SttChain:
    """The STT chain for a connection: cloud engines whose key is set (on `keys_from`, settings
    by default), then pocketsphinx."""
    from voice.providers.pocketsphinx import PocketsphinxEngine

    engines: list[SttEngine] = []
    for key_setting, module_name, class_name in CLOUD_STT_ENGINES:
        api_key = getattr(keys_from, key_setting, "") or ""
        if api_key:
            engine = _cloud_engine(key_setting, module_name, class_name, api_key)
            if engine is not None:
                engines.append(engine)
    engines.append(PocketsphinxEngine())
    return SttChain(engines, health=_health)


class NullSttEngine:
    """Hears nothing: for VAD alone (speech start, barge-in) when the client transcribes itself."""

    name = "none"
    provider = "none"

    async def open(self, options: StreamOptions, *, on_partial=None) -> NullSttEngine:
        return self

    async def feed(self, pcm: bytes) -> None:
        return None

    async def finish(self) -> Transcript:
        return Transcript(text="", is_final=True, provider=self.provider)

    async def aclose(self) -> None:
        return None
