"""Partitions: equal requests but for the last user text share one; anything else splits."""

from __future__ import annotations

from typing import Any

import pytest

from llm_cache.semantic.partition import partition_for

CHAT = "/v1/chat/completions"


def chat(text: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": text},
        ],
    }
    body.update(extra)
    return body


def key(endpoint: str, body: dict[str, Any], scope: str = "", provider: str = "openai") -> str:
    part = partition_for(provider, endpoint, body, scope)
    assert part is not None
    return part.key


def test_only_the_last_user_text_may_differ() -> None:
    a = partition_for("openai", CHAT, chat("What is the capital of France?"))
    b = partition_for("openai", CHAT, chat("Which city is France's capital?"))
    assert a is not None and b is not None
    assert a.key == b.key
    assert (a.text, b.text) == ("What is the capital of France?", "Which city is France's capital?")
    assert len(a.key) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"temperature": 0.5},
        {"max_tokens": 10},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"response_format": {"type": "json_object"}},
        {"unknown_field": 1},
    ],
)
def test_any_parameter_splits_the_partition(change: dict[str, Any]) -> None:
    assert key(CHAT, chat("q")) != key(CHAT, chat("q", **change))


def test_earlier_turns_and_system_prompt_split_the_partition() -> None:
    base = chat("And what about Germany?")
    other_turn = chat("And what about Germany?")
    other_turn["messages"][1]["content"] = "What is the capital of Italy?"
    other_system = chat("And what about Germany?")
    other_system["messages"][0]["content"] = "Answer in French."
    assert len({key(CHAT, base), key(CHAT, other_turn), key(CHAT, other_system)}) == 3


def test_scope_provider_and_endpoint_split_the_partition() -> None:
    body = chat("q")
    keys = {
        key(CHAT, body),
        key(CHAT, body, scope="ns=team-a"),
        key(CHAT, body, provider="groq"),
        key("/groq/v1/chat/completions", body),
    }
    assert len(keys) == 4


def test_the_body_is_not_modified() -> None:
    body = chat("q")
    before = repr(body)
    partition_for("openai", CHAT, body)
    assert repr(body) == before


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": []},
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "prefill"},
            ],
        },
        {"model": "m", "messages": [{"role": "tool", "tool_call_id": "1", "content": "42"}]},
        {"model": "m", "messages": [{"role": "user", "content": "   "}]},
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
            ],
        },
        {"model": "m", "messages": "not a list"},
        {"model": "m"},
    ],
)
def test_no_partition_without_a_last_user_text(body: dict[str, Any]) -> None:
    assert partition_for("openai", CHAT, body) is None


def test_not_chat_endpoints_have_no_partition() -> None:
    body = {"model": "m", "input": "hello"}
    assert partition_for("openai", "/v1/embeddings", body) is None
    assert partition_for("openai", "/v1/completions", {"model": "m", "prompt": "q"}) is None


def test_content_parts_keep_the_non_text_parts_in_the_partition() -> None:
    def with_image(text: str, url: str) -> dict[str, Any]:
        return {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": text},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        }

    a = partition_for("openai", CHAT, with_image("What is in this picture?", "data:a"))
    b = partition_for("openai", CHAT, with_image("What does this picture show?", "data:a"))
    c = partition_for("openai", CHAT, with_image("What is in this picture?", "data:b"))
    assert a and b and c
    assert a.key == b.key != c.key
    assert a.text == "What is in this picture?"


def test_anthropic_messages() -> None:
    def msg(text: Any, system: str = "s") -> dict[str, Any]:
        return {
            "model": "claude",
            "max_tokens": 100,
            "system": system,
            "messages": [{"role": "user", "content": text}],
        }

    blocks = [{"type": "text", "text": "What is 2+2?", "cache_control": {"type": "ephemeral"}}]
    a = partition_for("anthropic", "/v1/messages", msg("What is 2+2?"))
    b = partition_for("anthropic", "/v1/messages", msg(blocks))
    assert a and b and a.text == b.text == "What is 2+2?"
    assert a.key != b.key  # a string and a list of blocks are different requests
    assert key("/v1/messages", msg("x"), provider="anthropic") != key(
        "/v1/messages", msg("x", system="other"), provider="anthropic"
    )
    tool_result = {
        "model": "claude",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": "42"},
                    {"type": "text", "text": "so?"},
                ],
            }
        ],
    }
    assert partition_for("anthropic", "/v1/messages", tool_result) is None


def test_openai_responses() -> None:
    a = partition_for("openai", "/v1/responses", {"model": "m", "input": "Tell me a joke."})
    b = partition_for(
        "openai",
        "/v1/responses",
        {
            "model": "m",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Tell me a joke."}]}
            ],
        },
    )
    c = partition_for(
        "openai",
        "/v1/responses",
        {"model": "m", "input": "Tell me a joke.", "instructions": "pirate"},
    )
    assert a and b and c
    assert a.text == b.text == c.text == "Tell me a joke."
    assert len({a.key, b.key, c.key}) == 3
    call_output = {
        "model": "m",
        "input": [{"type": "function_call_output", "call_id": "c", "output": "42"}],
    }
    assert partition_for("openai", "/v1/responses", call_output) is None


def test_gemini_generate_content() -> None:
    """Gemini declares its shape (``semantic_shapes``); its path is not guessed here."""
    path = "/v1beta/models/gemini-2.0-flash:generateContent"

    def body(text: str, role: str | None = "user") -> dict[str, Any]:
        turn: dict[str, Any] = {"parts": [{"text": text}]}
        if role:
            turn["role"] = role
        return {"contents": [turn], "generationConfig": {"temperature": 0}}

    def part(endpoint: str, b: dict[str, Any]) -> Any:
        return partition_for("gemini", endpoint, b, shape="contents")

    a = part(path, body("Why is the sky blue?"))
    b = part(path, body("What makes the sky blue?", role=None))
    other_model = part(path.replace("2.0", "1.5"), body("Why is the sky blue?"))
    assert a and b and other_model
    assert a.text == "Why is the sky blue?"
    assert a.key != other_model.key
    assert part(path, body("q", role="model")) is None
    assert part(path, {"contents": "Why is the sky blue?"}).text == "Why is the sky blue?"
    inline = {
        "contents": [
            {
                "parts": [
                    {"text": "What is this?"},
                    {"inline_data": {"mime_type": "image/png", "data": "AA"}},
                ]
            }
        ]
    }
    other_image = {
        "contents": [
            {
                "parts": [
                    {"text": "What's this?"},
                    {"inline_data": {"mime_type": "image/png", "data": "AB"}},
                ]
            }
        ]
    }
    assert part(path, inline).key != part(path, other_image).key
    assert partition_for("gemini", path, body("Why is the sky blue?")) is None  # no shape given


def test_providers_declare_their_chat_shapes() -> None:
    from llm_cache.providers import get_provider

    assert dict(get_provider("openai").semantic_shapes) == {
        "/chat/completions": "messages",
        "/responses": "responses",
    }
    assert dict(get_provider("anthropic").semantic_shapes) == {"/messages": "messages"}
    assert set(get_provider("gemini").semantic_shapes.values()) == {"contents"}
    for name in ("ollama", "cohere", "bedrock"):
        assert not get_provider(name).semantic_shapes
