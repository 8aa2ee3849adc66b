"""Request controls, other gateways' aliases, tenants and partial embedding hits (issue 15),
through the real proxy with the openai SDK (``extra_headers``, ``extra_body``) and through the
httpx transport."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.wrapper.transport import httpx_client
from tests.conftest import Proxy, ProxyFactory, Upstream

MODEL = "gpt-4o-mini"


def client_for(proxy: Proxy, api_key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.openai_base, api_key=api_key, max_retries=0)


def ask(client: openai.OpenAI, text: str = "hello", **kwargs: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": text}], **kwargs
    )


def status(raw: Any) -> str:
    return str(raw.headers["x-cache-status"])


def answer_id(raw: Any) -> str:
    return str(raw.parse().id)


# -- Cache-Control directives ------------------------------------------------------------------


def test_no_cache_refreshes_and_no_store_keeps_nothing(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    first = ask(client)
    refreshed = ask(client, extra_headers={"Cache-Control": "no-cache"})
    assert (status(first), status(refreshed)) == ("MISS", "BYPASS")
    assert answer_id(refreshed) != answer_id(first)
    hit = ask(client)
    assert status(hit) == "HIT" and answer_id(hit) == answer_id(refreshed)  # the fresh one
    ask(client, "not kept", extra_headers={"Cache-Control": "no-store"})
    assert status(ask(client, "not kept")) == "MISS"


def test_age_and_max_age(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    first = ask(client, "aging")
    time.sleep(1.1)
    hit = ask(client, "aging")
    assert status(hit) == "HIT" and int(hit.headers["age"]) >= 1
    assert "age" not in first.headers
    fresh_enough = ask(client, "aging", extra_headers={"Cache-Control": "max-age=60"})
    assert status(fresh_enough) == "HIT"
    too_old = ask(client, "aging", extra_headers={"Cache-Control": "max-age=1"})
    assert status(too_old) == "MISS" and answer_id(too_old) != answer_id(first)
    after = ask(client, "aging")
    assert status(after) == "HIT" and answer_id(after) == answer_id(too_old)  # replaced


def test_only_if_cached(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, "cold", extra_headers={"Cache-Control": "only-if-cached"})
    assert info.value.status_code == 504
    assert info.value.code == "cache_miss"  # type: ignore[attr-defined]
    assert upstream.fake.request_count == 0
    ask(client, "cold")
    hit = ask(client, "cold", extra_headers={"Cache-Control": "only-if-cached"})
    assert status(hit) == "HIT"


def test_namespaces_keep_entries_apart(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    a = ask(client, extra_headers={"X-Cache-Namespace": "team-a"})
    b = ask(client, extra_headers={"X-Cache-Namespace": "team-b"})
    plain = ask(client)
    assert [status(r) for r in (a, b, plain)] == ["MISS", "MISS", "MISS"]
    assert len({answer_id(a), answer_id(b), answer_id(plain)}) == 3
    again = ask(client, extra_headers={"X-Cache-Namespace": "team-a"})
    assert status(again) == "HIT" and answer_id(again) == answer_id(a)
    assert "x-cache-namespace" not in upstream.fake.last_request.headers


def test_buckets_keep_n_answers_for_sampled_outputs(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    headers = {"X-Cache-Bucket-Size": "3"}
    fills = [ask(client, "poem", temperature=1, extra_headers=headers) for _ in range(3)]
    assert [status(r) for r in fills] == ["MISS"] * 3
    assert [r.headers["x-cache-bucket"] for r in fills] == ["0", "1", "2"]
    assert upstream.fake.count("/chat/completions") == 3
    ids = {answer_id(r) for r in fills}
    assert len(ids) == 3
    served = [ask(client, "poem", temperature=1, extra_headers=headers) for _ in range(12)]
    assert all(status(r) == "HIT" for r in served)
    assert {answer_id(r) for r in served} <= ids and len({answer_id(r) for r in served}) >= 2
    assert {r.headers["x-cache-bucket"] for r in served} <= {"0", "1", "2"}
    assert upstream.fake.count("/chat/completions") == 3
    with pytest.raises(openai.BadRequestError):
        ask(client, "poem", extra_headers={"X-Cache-Bucket-Size": "21"})


# -- other gateways' controls ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"cf-aig-skip-cache": "true"}, None),
        ({"x-portkey-cache-force-refresh": "true"}, None),
        ({}, {"cache": {"no-cache": True}}),
    ],
)
def test_bypass_aliases(
    proxy: Proxy, upstream: Upstream, headers: dict[str, str], body: dict[str, Any] | None
) -> None:
    client = client_for(proxy)
    first = ask(client, "alias")
    refreshed = ask(client, "alias", extra_headers=headers, extra_body=body)
    assert status(refreshed) == "BYPASS" and answer_id(refreshed) != answer_id(first)
    sent = upstream.fake.last_request
    assert not any(h.startswith(("cf-aig-", "x-portkey-cache")) for h in sent.headers)
    assert "cache" not in sent.body


@pytest.mark.parametrize(
    "headers",
    [
        {"x-portkey-cache-namespace": "ns1"},
        {"Helicone-Cache-Seed": "ns1"},
    ],
)
def test_namespace_aliases(proxy: Proxy, upstream: Upstream, headers: dict[str, str]) -> None:
    client = client_for(proxy)
    plain = ask(client, "seeded")
    seeded = ask(client, "seeded", extra_headers=headers)
    assert status(seeded) == "MISS" and answer_id(seeded) != answer_id(plain)
    native = ask(client, "seeded", extra_headers={"X-Cache-Namespace": "ns1"})
    assert status(native) == "HIT" and answer_id(native) == answer_id(seeded)
    litellm = ask(client, "seeded", extra_body={"cache": {"namespace": "ns1"}})
    assert status(litellm) == "HIT"
    assert not any(h.startswith("helicone-") for h in upstream.fake.last_request.headers)


def test_ttl_aliases_and_litellm_controls(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    ask(client, "short", extra_headers={"cf-aig-cache-ttl": "1"})
    ask(client, "short litellm", extra_body={"cache": {"ttl": 1}})
    assert status(ask(client, "short")) == "HIT"
    time.sleep(1.3)
    assert status(ask(client, "short")) == "MISS"
    assert status(ask(client, "short litellm")) == "MISS"
    ask(client, "kept out", extra_body={"cache": {"no-store": True}})
    assert status(ask(client, "kept out")) == "MISS"
    ask(client, "old")
    refreshed = ask(client, "old", extra_body={"cache": {"s-maxage": 0}})
    assert status(refreshed) == "MISS"


def test_bucket_alias(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    headers = {"Helicone-Cache-Bucket-Max-Size": "2"}
    fills = [ask(client, "bucketed", extra_headers=headers) for _ in range(2)]
    assert [r.headers["x-cache-bucket"] for r in fills] == ["0", "1"]
    assert status(ask(client, "bucketed", extra_headers=headers)) == "HIT"


# -- tenants -----------------------------------------------------------------------------------


def test_isolate_by_api_key(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    with start_proxy(isolate_by="api_key") as proxy:
        alice, bob = client_for(proxy, "sk-tenant-alice-1"), client_for(proxy, "sk-tenant-bob-22")
        a1, b1 = ask(alice, "shared question"), ask(bob, "shared question")
        assert (status(a1), status(b1)) == ("MISS", "MISS")
        assert answer_id(a1) != answer_id(b1)
        a2, b2 = ask(alice, "shared question"), ask(bob, "shared question")
        assert (answer_id(a2), answer_id(b2)) == (answer_id(a1), answer_id(b1))
        assert (status(a2), status(b2)) == ("HIT", "HIT")
        # No credential: a key of its own, shared only among requests without one.
        url = f"{proxy.openai_base}/chat/completions"
        body = {"model": MODEL, "messages": [{"role": "user", "content": "shared question"}]}
        anon = [httpx2.post(url, json=body).headers["x-cache-key"] for _ in range(2)]
        assert anon[0] == anon[1]
        assert anon[0] not in {a1.headers["x-cache-key"], b1.headers["x-cache-key"]}
        proxy.app.storage.close()
        data = b"".join(
            Path(proxy.config.sqlite_path + suffix).read_bytes()
            for suffix in ("", "-wal")
            if Path(proxy.config.sqlite_path + suffix).exists()
        )
        assert b"sk-tenant-alice-1" not in data and b"sk-tenant-bob-22" not in data


def test_shared_by_default(proxy: Proxy, upstream: Upstream) -> None:
    a = ask(client_for(proxy, "sk-one"), "team cache")
    b = ask(client_for(proxy, "sk-two"), "team cache")
    assert status(b) == "HIT" and answer_id(a) == answer_id(b)


# -- partial embeddings ------------------------------------------------------------------------


def test_partial_embedding_hits(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)

    def embed(items: list[str]) -> Any:
        return client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=items
        )

    first = embed(["alpha", "beta"])
    assert status(first) == "MISS"
    assert upstream.fake.last_request.body["input"] == ["alpha", "beta"]
    second = embed(["gamma", "alpha", "beta"])
    assert status(second) == "PARTIAL"
    assert upstream.fake.last_request.body["input"] == ["gamma"]  # only the missing item
    assert upstream.fake.count("/embeddings") == 2
    parsed = second.parse()
    assert [d.index for d in parsed.data] == [0, 1, 2]
    alone = {t: embed([t]).parse().data[0].embedding for t in ("gamma", "alpha", "beta")}
    assert [d.embedding for d in parsed.data] == [alone["gamma"], alone["alpha"], alone["beta"]]
    gamma_tokens = parsed.usage.prompt_tokens
    assert 0 < gamma_tokens < first.parse().usage.prompt_tokens + gamma_tokens
    third = embed(["beta", "gamma"])
    assert status(third) == "HIT" and third.parse().usage.prompt_tokens == 0
    assert upstream.fake.count("/embeddings") == 2


# -- the same controls through the httpx transport ---------------------------------------------


def test_controls_through_the_transport(upstream: Upstream) -> None:
    storage = MemoryStorage()
    client = openai.OpenAI(
        base_url=f"{upstream.url}/v1",
        api_key="sk",
        max_retries=0,
        http_client=httpx_client(storage),
    )
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, "t", extra_headers={"Cache-Control": "only-if-cached"})
    assert info.value.status_code == 504
    a = ask(client, "t", extra_headers={"X-Cache-Namespace": "x"})
    b = ask(client, "t")
    assert (status(a), status(b)) == ("MISS", "MISS")
    assert status(ask(client, "t", extra_headers={"x-portkey-cache-namespace": "x"})) == "HIT"
    fills = [ask(client, "b", extra_headers={"X-Cache-Bucket-Size": "2"}) for _ in range(3)]
    assert [status(r) for r in fills] == ["MISS", "MISS", "HIT"]
    emb = client.embeddings.with_raw_response.create(model="e", input=["p", "q"])
    emb2 = client.embeddings.with_raw_response.create(model="e", input=["q", "r"])
    assert (status(emb), status(emb2)) == ("MISS", "PARTIAL")
    assert upstream.fake.last_request.body["input"] == ["r"]
