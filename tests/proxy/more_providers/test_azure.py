"""Azure OpenAI through the real proxy, openai.AzureOpenAI as the client (SPEC: More providers)."""

from __future__ import annotations

import openai
import pytest

from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.wrapper.transport import httpx_client
from tests.proxy.more_providers.conftest import Fakes, Proxy, ProxyFactory, stored_bytes

CHAT = [{"role": "user", "content": "What is the capital of France?"}]
VERSION = "2024-10-21"
KEY = "azure-secret-key-0077"
DEPLOYMENT = "my-gpt4o"


def client(url: str, version: str = VERSION, **kwargs: object) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=url,
        api_version=version,
        api_key=KEY,
        max_retries=0,
        **kwargs,  # type: ignore[arg-type]
    )


def chat(c: openai.AzureOpenAI, **params: object) -> openai.types.chat.ChatCompletion:
    params.setdefault("model", DEPLOYMENT)
    params.setdefault("messages", CHAT)
    return c.chat.completions.create(**params)  # type: ignore[no-any-return,call-overload]


def test_miss_then_hit(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    first, second = chat(c), chat(c)
    assert fakes.azure.request_count == 1
    assert (
        second.id == first.id
        and second.choices[0].message.content == first.choices[0].message.content
    )
    assert fakes.azure.last_request.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"


def test_streamed_miss_then_streamed_hit(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    one = list(chat(c, stream=True))  # type: ignore[call-overload]
    two = list(chat(c, stream=True))  # type: ignore[call-overload]
    assert fakes.azure.request_count == 1
    assert [x.model_dump() for x in one] == [x.model_dump() for x in two]
    assert one[0].choices == []  # Azure's content-filter chunk, replayed as recorded


def test_conversions_both_ways(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    full = chat(c)
    with c.chat.completions.stream(model=DEPLOYMENT, messages=CHAT) as s:  # type: ignore[arg-type]
        final = s.get_final_completion()
    assert fakes.azure.request_count == 1
    assert final.choices[0].message.content == full.choices[0].message.content
    other = [{"role": "user", "content": "And of Italy?"}]
    chunks = list(chat(c, messages=other, stream=True))  # type: ignore[call-overload]
    merged = chat(c, messages=other)
    assert fakes.azure.request_count == 2
    text = "".join(x.choices[0].delta.content or "" for x in chunks if x.choices)
    assert merged.choices[0].message.content == text
    assert merged.model_extra and "prompt_filter_results" in merged.model_extra


def test_deployment_api_version_or_parameter_change_is_a_miss(proxy: Proxy, fakes: Fakes) -> None:
    a = chat(client(proxy.url))
    b = chat(client(proxy.url), model="other-deployment")
    d = chat(client(proxy.url, version="2024-02-01"))
    e = chat(client(proxy.url), temperature=0.5)
    assert fakes.azure.request_count == 4
    assert len({x.choices[0].message.content for x in (a, b, d, e)}) == 4


def test_v1_route(proxy: Proxy, fakes: Fakes) -> None:
    c = openai.OpenAI(
        base_url=f"{proxy.url}/openai/v1", api_key=KEY, default_headers={"api-key": KEY}
    )
    a = c.chat.completions.create(model=DEPLOYMENT, messages=CHAT)  # type: ignore[arg-type]
    b = c.chat.completions.create(model=DEPLOYMENT, messages=CHAT)  # type: ignore[arg-type]
    assert a.id == b.id and fakes.azure.request_count == 1
    assert fakes.azure.last_request.path == "/openai/v1/chat/completions"


def test_credentials_absent_from_storage(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    chat(c)
    chat(c)
    assert fakes.azure.last_request.headers["api-key"] == KEY
    data = stored_bytes(proxy.db)
    assert b"capital of France" in data and KEY.encode() not in data


def test_offline_miss_in_azure_error_shape(start_proxy: ProxyFactory, fakes: Fakes) -> None:
    with start_proxy(mode="offline") as proxy:
        c = client(proxy.url)
        with pytest.raises(openai.NotFoundError) as info:
            chat(c)
    assert info.value.code == "cache_miss" and "offline" in info.value.message
    assert fakes.azure.request_count == 0


def test_stream_cut_midway_is_not_stored(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.azure.abort_after = 2
    with pytest.raises(openai.APIError):
        list(chat(c, stream=True))  # type: ignore[call-overload]
    fakes.azure.abort_after = None
    list(chat(c, stream=True))  # type: ignore[call-overload]
    assert fakes.azure.request_count == 2


def test_errors_pass_through_in_azure_shape(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.azure.status = 429
    with pytest.raises(openai.RateLimitError) as info:
        chat(c)
    assert info.value.code == "429" and info.value.response.headers["retry-after"] == "7"
    fakes.azure.status = None
    with pytest.raises(openai.NotFoundError) as nf:
        chat(c, model="missing-deployment")
    assert nf.value.code == "DeploymentNotFound"
    chat(c)
    assert fakes.azure.request_count == 3


def test_through_the_httpx_transport(fakes: Fakes) -> None:
    storage = MemoryStorage(max_size=100)
    c = client(fakes.urls["azure"], http_client=httpx_client(storage))
    first = chat(c)
    second = chat(c)
    chunks = list(chat(c, stream=True))  # type: ignore[call-overload]
    assert fakes.azure.request_count == 1
    assert second.id == first.id
    text = "".join(x.choices[0].delta.content or "" for x in chunks if x.choices)
    assert text == first.choices[0].message.content
