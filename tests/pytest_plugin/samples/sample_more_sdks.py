"""A user's test module for the SDKs built on ``httpx``: google-genai, ollama, cohere.

Run by tests/pytest_plugin in a real pytest subprocess against the simulated Gemini, Ollama and
Cohere servers (``GEMINI_URL``, ``OLLAMA_URL``, ``COHERE_URL``); each test writes what it saw
to ``SAMPLE_OUT`` (one JSON line per test).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

pytestmark = [pytest.mark.llm_cache, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
KEY = os.environ["FAKE_API_KEY"]


def report(test: str, **seen: Any) -> None:
    with open(os.environ["SAMPLE_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"test": test, **seen}) + "\n")


def test_gemini() -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=KEY,
        http_options=types.HttpOptions(
            base_url=os.environ["GEMINI_URL"], retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )
    full = client.models.generate_content(model="gemini-2.5-flash", contents="Capital of France?")
    parts = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi"))
    report(
        "test_gemini",
        id=full.response_id,
        text=full.text,
        stream="".join(p.text or "" for p in parts),
        chunks=len(parts),
    )


def test_ollama() -> None:
    import ollama

    client = ollama.Client(host=os.environ["OLLAMA_URL"])
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    parts = list(client.chat(model="llama3.2", messages=messages, stream=True))
    report(
        "test_ollama",
        text="".join(p.message.content or "" for p in parts),
        chunks=len(parts),
        duration=parts[-1].total_duration,  # unique per upstream call
    )


def test_cohere() -> None:
    import cohere

    client = cohere.ClientV2(api_key=KEY, base_url=os.environ["COHERE_URL"], max_retries=0)
    messages: Any = [{"role": "user", "content": "Hi"}]
    answer = client.chat(model="command-a-03-2025", messages=messages)
    events = list(client.chat_stream(model="command-a-03-2025", messages=messages))
    report("test_cohere", id=answer.id, stream_id=events[0].id, events=len(events))
