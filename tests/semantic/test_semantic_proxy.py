"""The semantic cache through the real proxy, with the official SDKs as clients."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from tests.conftest import Proxy, ProxyFactory, Upstream
from tests.semantic.embedding_upstream import API_KEY, EmbeddingUpstream
from tests.servers import run_server

FRANCE = "What is the capital of France?"
FRANCE_AGAIN = "Tell me the capital of France."


def client_for(proxy: Proxy, api_key: str = "sk-test-secret-123") -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.openai_base, api_key=api_key, max_retries=0)


def ask(
    client: openai.OpenAI,
    text: str,
    *,
    history: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> Any:
    messages = [*(history or []), {"role": "user", "content": text}]
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=messages,
        extra_headers=headers or {},
        **params,  # type: ignore[arg-type]
    )


def wait_stored(proxy: Proxy, count: int) -> None:
    """The question's vector is filed just after its answer is sent: wait for it."""
    semantic = proxy.app.semantic
    assert semantic is not None
    deadline = time.monotonic() + 5
    while semantic.counters["stored"] < count:
        assert time.monotonic() < deadline, "the question was never filed"
        time.sleep(0.01)


@pytest.fixture
def semantic_proxy(start_proxy: ProxyFactory) -> Iterator[Proxy]:
    with start_proxy(semantic=True) as proxy:
        yield proxy


def test_a_paraphrase_is_a_semantic_hit(semantic_proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(semantic_proxy)
    first = ask(client, FRANCE)
    assert first.headers["x-cache-status"] == "MISS"
    wait_stored(semantic_proxy, 1)
    second = ask(client, FRANCE_AGAIN)
    assert second.headers["x-cache-status"] == "SEMANTIC-HIT"
    assert second.headers["x-cache-hit"] == "true"
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]
    similarity = second.headers["x-cache-similarity"]
    assert len(similarity.split(".")[1]) == 4 and 0.8 <= float(similarity) <= 1.0
    assert second.http_response.content == first.http_response.content
    assert "age" in second.headers
    assert upstream.fake.count("/chat/completions") == 1
    stats = httpx2.get(f"{semantic_proxy.url}/cache/stats").json()
    assert stats["semantic"]["hits"] == 1
    assert stats["by_status"]["semantic_hit"] == 1
    assert stats["by_status"]["miss"] == 1


def test_a_stream_is_answered_from_a_semantic_hit(
    semantic_proxy: Proxy, upstream: Upstream
) -> None:
    client = client_for(semantic_proxy)
    first = ask(client, FRANCE).parse()
    wait_stored(semantic_proxy, 1)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": FRANCE_AGAIN}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == first.choices[0].message.content
    assert upstream.fake.count("/chat/completions") == 1


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("What is the capital of Austria?", "What is the capital of Australia?"),
        ("Is coffee good for your health?", "Is coffee not good for your health?"),
        ("Convert Celsius to Fahrenheit.", "Convert Fahrenheit to Celsius."),
        ("What is 15% of 200?", "What is 15% of 300?"),
    ],
)
def test_hard_negatives_go_upstream(
    semantic_proxy: Proxy, upstream: Upstream, stored: str, asked: str
) -> None:
    client = client_for(semantic_proxy)
    first = ask(client, stored)
    wait_stored(semantic_proxy, 1)
    second = ask(client, asked)
    assert second.headers["x-cache-status"] == "MISS"
    assert second.parse().choices[0].message.content != first.parse().choices[0].message.content
    assert upstream.fake.count("/chat/completions") == 2


def test_a_different_earlier_turn_misses(semantic_proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(semantic_proxy)
    italy = [
        {"role": "user", "content": "Let's talk about Italy."},
        {"role": "assistant", "content": "Sure, what about it?"},
    ]
    spain = [
        {"role": "user", "content": "Let's talk about Spain."},
        {"role": "assistant", "content": "Sure, what about it?"},
    ]
    ask(client, "What is its capital?", history=italy)
    wait_stored(semantic_proxy, 1)
    other = ask(client, "Tell me its capital.", history=spain)
    assert other.headers["x-cache-status"] == "MISS"
    same = ask(client, "Tell me its capital.", history=italy)
    assert same.headers["x-cache-status"] == "SEMANTIC-HIT"
    assert upstream.fake.count("/chat/completions") == 2


def test_other_parameters_miss(semantic_proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(semantic_proxy)
    ask(client, FRANCE)
    wait_stored(semantic_proxy, 1)
    assert ask(client, FRANCE_AGAIN, temperature=0.2).headers["x-cache-status"] == "MISS"
    assert ask(client, FRANCE_AGAIN, max_tokens=5).headers["x-cache-status"] == "MISS"


def test_request_headers_switch_it_off_or_make_it_stricter(
    semantic_proxy: Proxy, upstream: Upstream
) -> None:
    client = client_for(semantic_proxy)
    ask(client, FRANCE)
    wait_stored(semantic_proxy, 1)
    off = ask(client, FRANCE_AGAIN, headers={"X-Cache-Semantic": "off"})
    assert off.headers["x-cache-status"] == "MISS"
    strict = ask(
        client, "Name the capital of France.", headers={"X-Cache-Semantic-Threshold": "0.9999"}
    )
    assert strict.headers["x-cache-status"] == "MISS"
    with pytest.raises(openai.BadRequestError) as caught:
        ask(
            client,
            "Could you tell me what the capital of France is?",
            headers={"X-Cache-Semantic-Threshold": "very"},
        )
    assert "X-Cache-Semantic-Threshold" in caught.value.message
    assert upstream.fake.count("/chat/completions") == 3


def test_only_readwrite_and_readonly_consult_it(
    start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    with start_proxy(semantic=True) as proxy:
        ask(client_for(proxy), FRANCE)
        wait_stored(proxy, 1)
    with start_proxy(semantic=True, mode="readonly") as proxy:
        assert ask(client_for(proxy), FRANCE_AGAIN).headers["x-cache-status"] == "SEMANTIC-HIT"
    with start_proxy(semantic=True, mode="offline") as proxy, pytest.raises(openai.NotFoundError):
        ask(client_for(proxy), FRANCE_AGAIN)
    with start_proxy(semantic=True, mode="record") as proxy:
        assert ask(client_for(proxy), FRANCE_AGAIN).headers["x-cache-status"] == "MISS"
    with start_proxy() as proxy:  # semantic off (the default)
        assert proxy.app.semantic is None
        assert (
            ask(client_for(proxy), "Name the capital of France.").headers["x-cache-status"]
            == "MISS"
        )


def test_an_evicted_entry_is_a_plain_miss(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    with start_proxy(semantic=True, max_size=1) as proxy:
        client = client_for(proxy)
        ask(client, FRANCE)
        ask(client, "How do I boil an egg?")  # evicts the first entry
        wait_stored(proxy, 2)
        assert ask(client, FRANCE_AGAIN).headers["x-cache-status"] == "MISS"
        assert upstream.fake.count("/chat/completions") == 3


def test_anthropic_messages(semantic_proxy: Proxy, upstream: Upstream) -> None:
    client = anthropic.Anthropic(base_url=semantic_proxy.url, api_key="sk-ant-test", max_retries=0)

    def ask_claude(text: str) -> Any:
        return client.messages.with_raw_response.create(
            model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": text}]
        )

    first = ask_claude("How do I reverse a list in Python?")
    wait_stored(semantic_proxy, 1)
    second = ask_claude("How can I reverse a list in Python?")
    assert second.headers["x-cache-status"] == "SEMANTIC-HIT"
    assert second.http_response.content == first.http_response.content
    assert ask_claude("How can I reverse a list in Ruby?").headers["x-cache-status"] == "MISS"


def test_an_upstream_embedder(start_proxy: ProxyFactory) -> None:
    """``openai:<model>`` embeds through the proxy's own OpenAI upstream, with the client's key."""
    app = EmbeddingUpstream()
    with (
        run_server(app) as url,
        start_proxy(
            semantic=True,
            semantic_embedder="openai:text-embedding-3-small",
            openai_base_url=f"{url}/v1",
        ) as proxy,
    ):
        client = client_for(proxy, api_key=API_KEY)
        first = ask(client, FRANCE)
        wait_stored(proxy, 1)
        second = ask(client, FRANCE_AGAIN)
        assert second.headers["x-cache-status"] == "SEMANTIC-HIT"
        assert second.http_response.content == first.http_response.content
        embedded = [call["input"] for call in app.calls]
        assert ["What is the capital of France?"] in embedded  # once: lookup and store share it
        assert embedded.count(["What is the capital of France?"]) == 1
        assert app.chats == 1
        # a client whose key the embedder refuses still gets its answer (fail-open)
        refused = ask(client_for(proxy, api_key="sk-wrong"), "Name the capital of France.")
        assert refused.headers["x-cache-status"] == "MISS"


def test_namespaces_never_share_semantic_answers(semantic_proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(semantic_proxy)
    ask(client, FRANCE, headers={"X-Cache-Namespace": "team-a"})
    wait_stored(semantic_proxy, 1)
    other = ask(client, FRANCE_AGAIN, headers={"X-Cache-Namespace": "team-b"})
    assert other.headers["x-cache-status"] == "MISS"
    none = ask(client, "Name the capital of France.")
    assert none.headers["x-cache-status"] == "MISS"
    same = ask(
        client,
        "Could you tell me what the capital of France is?",
        headers={"X-Cache-Namespace": "team-a"},
    )
    assert same.headers["x-cache-status"] == "SEMANTIC-HIT"


def test_tenants_never_share_semantic_answers(
    start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    with start_proxy(semantic=True, isolate_by="api_key", secret="s3cret") as proxy:
        ask(client_for(proxy, api_key="sk-alice"), FRANCE)
        wait_stored(proxy, 1)
        bob = ask(client_for(proxy, api_key="sk-bob"), FRANCE_AGAIN)
        assert bob.headers["x-cache-status"] == "MISS"
        alice = ask(client_for(proxy, api_key="sk-alice"), FRANCE_AGAIN)
        assert alice.headers["x-cache-status"] == "SEMANTIC-HIT"


def test_max_age_applies_to_semantic_hits(semantic_proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(semantic_proxy)
    ask(client, FRANCE)
    wait_stored(semantic_proxy, 1)
    time.sleep(1.1)
    old = ask(client, FRANCE_AGAIN, headers={"Cache-Control": "max-age=1"})
    assert old.headers["x-cache-status"] == "MISS"
    fresh = ask(
        client,
        "Could you tell me what the capital of France is?",
        headers={"Cache-Control": "max-age=60"},
    )
    assert fresh.headers["x-cache-status"] == "SEMANTIC-HIT"
