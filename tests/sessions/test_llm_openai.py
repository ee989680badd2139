"""The OpenAI-compatible engine, driven through the real SDK against the local stand-in."""

from __future__ import annotations

import asyncio
import time

import pytest

from sessions.providers import engine_for
from sessions.providers.base import LLMError, LLMRequest, ModelSpec, Usage
from sessions.providers.openai_llm import OpenAIChatEngine
from tests.support.openai_standin import DropAfter, Hang, OpenAIStandin, Reply, Status

QUESTION = [{"role": "system", "content": "You are a tutor."}, {"role": "user", "content": "What is a loop?"}]


def engine(standin: OpenAIStandin, *, key: str = "sk-test-key") -> OpenAIChatEngine:
    spec = ModelSpec(id=1, provider="openai", model_name="model-a", base_url=standin.base_url, api_key=key)
    chosen = engine_for(spec)
    assert isinstance(chosen, OpenAIChatEngine)
    return chosen


def request(**fields) -> LLMRequest:
    return LLMRequest(messages=QUESTION, model="model-a", **fields)


async def read_all(stream) -> list[str]:
    try:
        return [text async for text in stream]
    finally:
        await stream.aclose()


async def test_deltas_arrive_while_the_provider_is_still_writing(openai_standin):
    answer = "A loop repeats a block. What do you think stops it?"
    openai_standin.script(Reply(answer, chunk_delay=0.05))
    started = time.monotonic()
    stream = await engine(openai_standin).open(request())
    deltas = aiter(stream)
    first = await anext(deltas)

    assert first == "A "
    assert time.monotonic() - started < 0.4  # the whole reply takes 0.55 s to write
    assert not openai_standin.streams[-1].finished
    rest = [text async for text in deltas]
    assert first + "".join(rest) == answer
    assert openai_standin.streams[-1].finished


async def test_request_carries_key_model_limits_and_asks_for_usage(openai_standin):
    openai_standin.script(Reply("Hi."))
    await read_all(await engine(openai_standin).open(request(temperature=0.2, max_tokens=55)))

    sent = openai_standin.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer sk-test-key"
    assert sent["json"]["model"] == "model-a"
    assert sent["json"]["messages"] == QUESTION
    assert sent["json"]["stream"] is True
    assert sent["json"]["stream_options"] == {"include_usage": True}
    assert sent["json"]["max_tokens"] == 55
    assert sent["json"]["temperature"] == 0.2


async def test_usage_is_read_from_the_usage_chunk(openai_standin):
    openai_standin.script(Reply("Two words.", prompt_tokens=31, completion_tokens=9))
    stream = await engine(openai_standin).open(request())
    assert await read_all(stream) == ["Two ", "words."]
    assert stream.usage == Usage(prompt_tokens=31, completion_tokens=9, estimated=False)


async def test_usage_is_estimated_when_the_provider_sends_none(openai_standin):
    openai_standin.script(Reply("x" * 40, send_usage=False))
    stream = await engine(openai_standin).open(request())
    await read_all(stream)
    assert stream.usage is not None
    assert stream.usage.estimated
    assert stream.usage.completion_tokens == 10  # 40 characters / 4
    assert stream.usage.prompt_tokens > 0


async def test_connections_are_reused_between_requests(openai_standin):
    chat = engine(openai_standin)
    for _ in range(3):
        openai_standin.script(Reply("Again."))
        await read_all(await chat.open(request()))
    ports = {sent["client"][1] for sent in openai_standin.requests}
    assert len(ports) == 1


@pytest.mark.parametrize(
    ("behaviour", "transient", "status", "retry_after"),
    [
        (Status(429, retry_after=0.5), True, 429, 0.5),
        (Status(500), True, 500, None),
        (Status(503), True, 503, None),
        (Status(401), False, 401, None),
        (Status(403), False, 403, None),
        (Status(404), False, 404, None),
        (Status(400), False, 400, None),
    ],
)
async def test_http_errors_map_to_llm_errors(openai_standin, behaviour, transient, status, retry_after):
    openai_standin.script(behaviour)
    with pytest.raises(LLMError) as caught:
        await engine(openai_standin).open(request())
    assert caught.value.transient is transient
    assert caught.value.status_code == status
    assert caught.value.retry_after == retry_after
    assert caught.value.outcome == "error"
    assert str(status) in caught.value.message
    assert len(openai_standin.requests) == 1  # the SDK's own retries are off


async def test_a_silent_provider_times_out_as_a_transient_timeout(openai_standin, settings):
    settings.LLM_READ_TIMEOUT_SECONDS = 0.2
    openai_standin.script(Hang(5))
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        await engine(openai_standin).open(request())
    assert time.monotonic() - started < 2
    assert caught.value.transient
    assert caught.value.outcome == "timeout"


async def test_a_stream_cut_midway_is_a_transient_error_after_the_first_deltas(openai_standin):
    openai_standin.script(DropAfter(2, "one two three four five"))
    stream = await engine(openai_standin).open(request())
    received = []
    with pytest.raises(LLMError) as caught:
        async for text in stream:
            received.append(text)
    await stream.aclose()
    assert received == ["one ", "two "]
    assert caught.value.transient
    assert stream.usage is not None and stream.usage.estimated


async def test_an_unreachable_provider_is_a_transient_connection_error(settings):
    spec = ModelSpec(id=1, provider="openai", model_name="m", base_url="http://127.0.0.1:9/v1", api_key="sk")
    with pytest.raises(LLMError) as caught:
        await OpenAIChatEngine(spec).open(request())
    assert caught.value.transient
    assert "connection" in caught.value.message.lower()


async def test_aclose_mid_stream_drops_the_upstream_connection(openai_standin):
    words = " ".join(f"word{i}" for i in range(200))
    openai_standin.script(Reply(words, chunk_delay=0.02))
    stream = await engine(openai_standin).open(request())
    deltas = aiter(stream)
    received = [await anext(deltas) for _ in range(3)]
    await stream.aclose()
    await stream.aclose()  # safe twice

    record = openai_standin.streams[-1]
    assert await asyncio.to_thread(record.wait_ended, 5)
    assert record.client_disconnected
    assert not record.finished
    assert record.chunks_written < 20  # of 200 scripted
    assert received == ["word0 ", "word1 ", "word2 "]
    assert stream.usage is not None and stream.usage.estimated
