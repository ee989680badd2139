"""One OpenAI SDK client per (event loop, purpose, base URL, key), for every app's async calls
(the tutor's chat completions, speech to text and text to speech).

Connections are reused between requests, and a pool is never shared across loops (tests,
Celery's asyncio.run), which would break it. Clients of closed loops are dropped (their pooled
connections keep the loop alive, so no weak refs). In `courses`, the app every other imports, so
`sessions` and `voice` share it without importing each other.
"""

from __future__ import annotations

import asyncio

import openai

_clients: dict[asyncio.AbstractEventLoop, dict[tuple[str, str, str], openai.AsyncOpenAI]] = {}


def openai_loop_client(*, purpose: str, base_url: str, api_key: str, timeout: openai.Timeout) -> openai.AsyncOpenAI:
    """The shared client of this loop for `purpose` ("llm", "audio": each its own timeouts), base
    URL and key. The SDK's own retries are off: callers decide every retry."""
    for loop in [loop for loop in _clients if loop.is_closed()]:
        del _clients[loop]
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    key = (purpose, base_url, api_key)
    client = per_loop.get(key)
    if client is None:
        client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url or None, max_retries=0, timeout=timeout)
        per_loop[key] = client
    return client


async def openai_loop_clients_close() -> None:
    """Close the running loop's clients. For code that runs a short-lived loop of its own
    (`async_to_sync` in a worker): otherwise their pooled connections outlive the loop, and the
    client's finaliser, run later in another loop, fails with "Event loop is closed"."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.close()
