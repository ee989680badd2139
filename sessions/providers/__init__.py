"""LLM engines behind one interface (`base.py`); `engine_for` picks one for a chain entry.

Callers never import an engine module directly.
"""

from __future__ import annotations

from sessions.providers.base import LLMEngine, LLMError, ModelSpec


def engine_for(spec: ModelSpec) -> LLMEngine:
    """The engine serving `spec` ("openai", "offline" or "llama_cpp")."""
    if spec.provider == "openai":
        from sessions.providers.openai_llm import OpenAIChatEngine

        return OpenAIChatEngine(spec)
    if spec.provider == "offline":
        from sessions.providers.offline_tutor import OfflineTutorEngine

        return OfflineTutorEngine()
    if spec.provider == "llama_cpp":
        from sessions.providers.llama_cpp import LlamaCppEngine

        return LlamaCppEngine(spec)
    raise LLMError(f"unknown LLM provider {spec.provider!r}", transient=False)
