"""The Azure OpenAI descriptor: Azure routes, api-version in the key, Azure's stream and errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import orjson
import pytest

from llm_cache.providers import openai as openai_provider
from llm_cache.providers.azure import PROVIDER
from llm_cache.providers.sse import encode_events, parse_sse
from tests.fake_providers.azure import AzureFake, create_azure_fake
from tests.providers.replay import serve_answer
from tests.servers import run_server

CHAT = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
PATH = "/openai/deployments/my-gpt4o/chat/completions"
QUERY = "?api-version=2024-10-21"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    fake: AzureFake = create_azure_fake()
    with run_server(fake.app) as base:
        yield base


def post(url: str, body: dict[str, Any], path: str = PATH, query: str = QUERY) -> httpx2.Response:
    return httpx2.post(f"{url}{path}{query}", headers={"api-key": "k"}, json=body)


def test_routes_and_model() -> None:
    m = PROVIDER.match(PATH)
    assert m is not None and m.endpoint == "/chat/completions"
    assert PROVIDER.model(m, CHAT) == "my-gpt4o"
    assert PROVIDER.match("/openai/deployments/d/completions").endpoint == "/completions"  # type: ignore[union-attr]
    assert PROVIDER.match("/openai/deployments/d/embeddings").endpoint == "/embeddings"  # type: ignore[union-attr]
    v1 = PROVIDER.match("/openai/v1/chat/completions")
    assert v1 is not None and PROVIDER.model(v1, {"model": "dep"}) == "dep"
    assert PROVIDER.match("/openai/v1/responses") is not None
    assert PROVIDER.match("/openai/deployments/d/images/generations") is None
    assert PROVIDER.wants_stream(m, {"stream": True}) and not PROVIDER.wants_stream(m, {})
    # the more specific Azure pattern beats OpenAI's bare suffix
    assert m.route.literal_length > openai_provider.PROVIDER.match(PATH).route.literal_length  # type: ignore[union-attr]


def test_api_version_enters_the_key_credentials_do_not() -> None:
    query = [("api-version", "2024-10-21"), ("api-key", "secret")]
    assert PROVIDER.key_query("/chat/completions", query) == [("api-version", "2024-10-21")]


def test_azure_stream_merges_with_its_filter_annotations(url: str) -> None:
    full = post(url, CHAT).json()
    events = parse_sse(post(url, {**CHAT, "stream": True}).content)
    assert orjson.loads(events[0].data)["choices"] == []  # Azure's filter chunk
    assert PROVIDER.stream_finished("/chat/completions", events)
    merged = PROVIDER.events_to_response("/chat/completions", events)
    assert merged is not None
    assert merged["choices"][0]["message"]["content"] == full["choices"][0]["message"]["content"]
    assert merged["prompt_filter_results"] == full["prompt_filter_results"]
    assert merged["id"] and merged["model"]  # the filter chunk's empty values do not win
    with serve_answer("application/json", orjson.dumps(merged)) as replay:
        client = openai.AzureOpenAI(azure_endpoint=replay, api_version="2024-10-21", api_key="k")
        r = client.chat.completions.create(model="my-gpt4o", messages=CHAT["messages"])  # type: ignore[arg-type]
    assert r.choices[0].message.content == full["choices"][0]["message"]["content"]


def test_full_to_stream_is_read_by_azure_openai(url: str) -> None:
    full = post(url, CHAT).json()
    events = PROVIDER.response_to_events("/chat/completions", full, CHAT)
    assert events is not None and PROVIDER.stream_finished("/chat/completions", events)
    with serve_answer("text/event-stream", encode_events(events)) as replay:
        client = openai.AzureOpenAI(azure_endpoint=replay, api_version="2024-10-21", api_key="k")
        with client.chat.completions.stream(model="my-gpt4o", messages=CHAT["messages"]) as s:  # type: ignore[arg-type]
            final = s.get_final_completion()
    assert final.choices[0].message.content == full["choices"][0]["message"]["content"]
    assert final.choices[0].finish_reason == "stop"


def test_error_shape_and_cut_stream(url: str) -> None:
    body = orjson.loads(PROVIDER.error_body(404, "not cached", "cache_miss"))
    assert body == {"error": {"code": "cache_miss", "message": "not cached"}}
    assert PROVIDER.body_is_error("/chat/completions", body)
    events = parse_sse(post(url, {**CHAT, "stream": True}).content)
    assert not PROVIDER.stream_finished("/chat/completions", events[:-1])
    usage = PROVIDER.usage_tokens("/chat/completions", post(url, CHAT).json())
    assert usage is not None and usage.input > 0 and usage.output > 0
