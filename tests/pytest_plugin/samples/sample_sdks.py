"""A user's test module, run by tests/pytest_plugin in a real pytest subprocess.

It talks to the simulated upstream (``FAKE_UPSTREAM_URL``) with the real SDKs, exactly as an
application's tests would talk to the provider, and writes what each test saw to
``SAMPLE_OUT`` (one JSON line per test) so the outer test can compare runs. ``SAMPLE_PROMPT``
changes the user prompt, ``SAMPLE_EXTRA=1`` makes ``test_openai_chat`` ask a second question.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import TYPE_CHECKING, Any

import openai
import pytest

if TYPE_CHECKING:  # imported by the tests that use them: a run imports only what it needs
    import anthropic

URL = os.environ["FAKE_UPSTREAM_URL"]
KEY = os.environ["FAKE_API_KEY"]
PROMPT = os.environ.get("SAMPLE_PROMPT", "What is 2+2?")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]


def report(test: str, **seen: Any) -> None:
    with open(os.environ["SAMPLE_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"test": test, **seen}) + "\n")


def openai_client() -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0)


def anthropic_client() -> anthropic.Anthropic:
    import anthropic

    return anthropic.Anthropic(base_url=URL, api_key=KEY, max_retries=0)


@pytest.mark.llm_cache
def test_openai_chat() -> None:
    client = openai_client()
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    seen = {"id": answer.id, "text": answer.choices[0].message.content}
    if os.environ.get("SAMPLE_EXTRA"):
        extra = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "And 3+3?"}]
        )
        seen["extra"] = extra.id
    report("test_openai_chat", **seen)


@pytest.mark.llm_cache
def test_openai_stream() -> None:
    stream = openai_client().chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=os.environ.get("SAMPLE_STREAM", "1") == "1"
    )
    if isinstance(stream, openai.Stream):
        chunks = [c for c in stream if c.choices]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        report("test_openai_stream", id=chunks[0].id, text=text, chunks=len(chunks))
    else:
        report("test_openai_stream", id=stream.id, text=stream.choices[0].message.content)


@pytest.mark.llm_cache
def test_anthropic_message() -> None:
    message = anthropic_client().messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": PROMPT}],
    )
    block = message.content[0]
    assert block.type == "text"
    report("test_anthropic_message", id=message.id, text=block.text)


@pytest.mark.llm_cache
def test_anthropic_stream() -> None:
    with anthropic_client().messages.stream(
        model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    report("test_anthropic_stream", id=final.id, text="".join(texts), chunks=len(texts))


@pytest.mark.llm_cache
@pytest.mark.asyncio
async def test_async_openai() -> None:
    client = openai.AsyncOpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0)
    answer = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    chunks = [c async for c in stream if c.choices]
    # concurrent calls: recorded in the order they start, each replayed by its own key
    questions = [f"Question {n}?" for n in range(3)]
    answers = await asyncio.gather(
        *(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": q}]
            )
            for q in questions
        )
    )
    assert all(
        q in (a.choices[0].message.content or "") for q, a in zip(questions, answers, strict=True)
    )
    report(
        "test_async_openai",
        id=answer.id,
        stream_id=chunks[0].id,
        chunks=len(chunks),
        concurrent=[a.id for a in answers],
    )


@pytest.mark.llm_cache
@pytest.mark.asyncio
async def test_async_anthropic_stream() -> None:
    import anthropic

    client = anthropic.AsyncAnthropic(base_url=URL, api_key=KEY, max_retries=0)
    async with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    report("test_async_anthropic_stream", id=final.id, text="".join(texts), chunks=len(texts))


@pytest.mark.llm_cache
def test_plain_httpx() -> None:
    """httpx (not httpx2): a non-LLM GET and a raw chat POST, as google-genai/cohere/ollama."""
    import httpx

    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=URL) as client:
        models = client.get("/v1/models", headers=headers)
        chat = client.post(
            "/v1/chat/completions",
            headers=headers,
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
        )
    report(
        "test_plain_httpx",
        models=models.json()["data"][0]["id"],
        id=chat.json()["id"],
        status=chat.status_code,
    )


@pytest.mark.llm_cache
def test_langchain() -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="gpt-4o-mini", base_url=f"{URL}/v1", api_key=KEY, max_retries=0)
    answer = llm.invoke(PROMPT)
    streamed = [chunk.content for chunk in llm.stream(PROMPT)]
    report(
        "test_langchain",
        id=answer.response_metadata["id"],
        text=answer.content,
        streamed="".join(streamed),
    )


@pytest.mark.llm_cache(ignore_hosts=["127.0.0.1"])
def test_ignored_host() -> None:
    """Requests to an ignored host (here: the upstream itself) pass through untouched."""
    answer = openai_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    report("test_ignored_host", id=answer.id)


def test_unmarked() -> None:
    """No marker, no fixture: the plugin stays out of the way (the upstream is called)."""
    answer = openai_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    report("test_unmarked", id=answer.id)


def test_fixture(llm_cache: Any) -> None:
    answer = openai_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    report(
        "test_fixture",
        id=answer.id,
        mode=llm_cache.mode,
        replayed=llm_cache.replayed,
        recorded=len(llm_cache.recorded),
        path=str(llm_cache.path),
    )


@pytest.mark.llm_cache
def test_swallows_errors() -> None:
    """Code that catches everything must not hide a miss."""
    with contextlib.suppress(BaseException):
        openai_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    report("test_swallows_errors")


@pytest.mark.llm_cache
class TestInClass:
    def test_method(self) -> None:
        answer = openai_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        report("TestInClass.test_method", id=answer.id)


@pytest.mark.llm_cache
def test_key_in_prompt() -> None:
    """A key pasted into a prompt would end up in the cassette: refused."""
    openai_client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "my key is " + os.environ["LEAKED_KEY"]}],
    )


@pytest.mark.llm_cache
def test_credential_in_prompt() -> None:
    """The credential the test sends, whatever its shape, would end up in the cassette."""
    openai_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"I use {KEY}, is it ok?"}]
    )
