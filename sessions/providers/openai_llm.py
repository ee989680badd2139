"""OpenAI-compatible chat completions (OpenAI, Groq, vLLM, Ollama...) through the official SDK.

The SDK's own retries are off: the chain (sessions/tutor/chain.py) decides every retry. Errors are
mapped once, here, to `LLMError` with `transient` saying whether trying again could help.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Mapping

import openai
from django.conf import settings
from openai.types.chat import ChatCompletionChunk

from courses.openai_clients import openai_loop_client, openai_loop_clients_close
from sessions.providers.base import LLMError, LLMRequest, ModelSpec, Usage, estimate_tokens

TRANSIENT_STATUSES = {408, 409, 429}


def llm_timeout() -> openai.Timeout:
    """The httpx2 timeout from settings: connect, and read = the longest wait for the next chunk."""
    read = float(settings.LLM_READ_TIMEOUT_SECONDS)
    return openai.Timeout(read, connect=float(settings.LLM_CONNECT_TIMEOUT_SECONDS), read=read)


def openai_client(*, base_url: str, api_key: str) -> openai.AsyncOpenAI:
    """The shared client for this loop, base URL and key (courses.openai_clients)."""
    return openai_loop_client(purpose="llm", base_url=base_url, api_key=api_key, timeout=llm_timeout())


# Re-exported for code that runs a loop of its own (analytics' summary and refinement).
openai_clients_close = openai_loop_clients_close


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from `Retry-After-Ms` / `Retry-After` (a number or an HTTP date), if present."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            pass
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return None


def llm_error_from(exc: openai.OpenAIError) -> LLMError:
    """The `LLMError` for an SDK exception: 429, 5xx, timeouts and cut connections are transient."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(
            f"timed out (no data for {float(settings.LLM_READ_TIMEOUT_SECONDS):g} s)",
            transient=True,
            outcome="timeout",
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return LLMError(f"connection failed: {type(cause).__name__}: {cause}", transient=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        transient = status in TRANSIENT_STATUSES or status >= 500
        return LLMError(
            exc.message,  # "Error code: 429 - <the provider's message>"
            transient=transient,
            status_code=status,
            retry_after=retry_after_seconds(exc.response.headers) if transient else None,
        )
    if isinstance(exc, openai.APIError):
        # An error event inside a stream that had started: the provider failed mid-reply.
        return LLMError(f"error during the stream: {exc.message}", transient=True)
    return LLMError(f"{type(exc).__name__}: {exc}", transient=False)


class OpenAIChatStream:
    """The deltas of one streamed chat completion; `aclose()` drops the HTTP connection."""

    def __init__(self, response: openai.AsyncStream[ChatCompletionChunk], request: LLMRequest):
        self.usage: Usage | None = None
        self._response = response
        self._prompt_tokens = sum(estimate_tokens(message.get("content", "")) for message in request.messages)
        self._parts: list[str] = []
        self._iterator: AsyncIterator[str] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterator is None:
            self._iterator = self._deltas()
        return self._iterator

    async def _deltas(self) -> AsyncIterator[str]:
        reported: Usage | None = None
        finished = False
        try:
            async for chunk in self._response:
                if chunk.usage is not None:
                    reported = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    finished = finished or choice.finish_reason is not None
                    if choice.delta and choice.delta.content:
                        self._parts.append(choice.delta.content)
                        yield choice.delta.content
        except openai.OpenAIError as exc:
            raise llm_error_from(exc) from exc
        finally:
            self.usage = reported or self._estimated_usage()
        if not finished:
            # A server that closes a close-delimited body early looks like a normal end.
            raise LLMError("the stream ended before the reply was complete", transient=True)

    def _estimated_usage(self) -> Usage:
        return Usage(self._prompt_tokens, estimate_tokens("".join(self._parts)), estimated=True)

    async def aclose(self) -> None:
        """Close the response: an unfinished HTTP/1.1 body means the connection is closed too."""
        await self._response.close()
        if self.usage is None:
            self.usage = self._estimated_usage()


class OpenAIChatEngine:
    """An `LLMEngine` for one chain entry served by an OpenAI-compatible API."""

    provider = "openai"
    offline = False

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    async def open(self, request: LLMRequest) -> OpenAIChatStream:
        """Send the request; errors before the first byte of the body are raised here."""
        client = openai_client(base_url=self.spec.base_url, api_key=self.spec.api_key)
        try:
            response = await client.chat.completions.create(
                model=request.model or self.spec.model_name,
                messages=request.messages,  # type: ignore[arg-type]
                temperature=request.temperature,
                max_tokens=request.max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                timeout=llm_timeout(),  # per request: settings may change while clients are cached
            )
        except openai.OpenAIError as exc:
            raise llm_error_from(exc) from exc
        return OpenAIChatStream(response, request)
