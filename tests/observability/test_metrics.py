"""``GET /metrics`` through the real proxy: names and labels of SPEC "Observability", counters
checked against the requests made, savings checked against the stored entries."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import openai
import pytest
from genai_prices import Usage, calc_price

from llm_cache.cache.redis_storage import RedisStorage
from tests.conftest import Proxy, ProxyFactory, Upstream
from tests.observability.helpers import scrape, stored_entry, value
from tests.support.redis_servers import free_port

SECRET = "sk-test-secret-123"


def openai_client(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.openai_base, api_key=SECRET, max_retries=0)


def ask(client: openai.OpenAI, text: str, **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], **extra
    )


def test_counters_match_the_requests_made(proxy: Proxy, upstream: Upstream) -> None:
    client = openai_client(proxy)
    questions = ["first question", "second question", "third question"]
    hits: list[Any] = []
    for q in questions:  # three misses, with a measurable upstream time
        ask(client, q, extra_headers={"x-fake-latency-ms": "40"})
    for _ in range(2):  # six hits
        hits += [ask(client, q) for q in questions]
    ask(client, "asked fresh", extra_headers={"X-Cache-Bypass": "true"})  # one bypass
    with pytest.raises(openai.RateLimitError):  # one upstream error
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "rate limited"}],
            extra_headers={"x-fake-status": "429"},
        )
    claude = anthropic.Anthropic(base_url=proxy.url, api_key=SECRET, max_retries=0)
    for _ in range(2):  # one miss, one hit
        hits.append(
            claude.messages.with_raw_response.create(
                model="claude-sonnet-4-6",
                max_tokens=64,
                messages=[{"role": "user", "content": "hello claude"}],
            )
        )
    hits = [h for h in hits if h.headers["x-cache-status"] == "HIT"]
    assert len(hits) == 7

    m = scrape(proxy.url)
    requests = "llm_cache_requests_total"
    gpt = {"provider": "openai", "model": "gpt-4o-mini"}
    assert value(m, requests, status="hit", **gpt) == 6
    assert value(m, requests, status="miss", **gpt) == 3
    assert value(m, requests, status="bypass", **gpt) == 1
    assert value(m, requests, status="error", **gpt) == 1
    claude_labels = {"provider": "anthropic", "model": "claude-sonnet-4-6"}
    assert value(m, requests, status="hit", **claude_labels) == 1
    assert value(m, requests, status="miss", **claude_labels) == 1
    assert value(m, requests) == 13
    endpoints = {stored_entry(proxy.app.storage, h.headers["x-cache-key"]).endpoint for h in hits}
    assert {s.labels["endpoint"] for s in m[requests]} == endpoints
    assert "/chat/completions" in endpoints

    # Savings: what the stored entries say each hit avoided.
    expected_tokens = {("openai", "input"): 0, ("openai", "output"): 0}
    expected_tokens.update({("anthropic", "input"): 0, ("anthropic", "output"): 0})
    expected_seconds = {"openai": 0.0, "anthropic": 0.0}
    expected_cost = {"openai": 0.0, "anthropic": 0.0}
    for hit in hits:
        entry = stored_entry(proxy.app.storage, hit.headers["x-cache-key"])
        assert entry.usage is not None
        expected_tokens[(entry.provider, "input")] += entry.usage["input"]
        expected_tokens[(entry.provider, "output")] += entry.usage["output"]
        expected_seconds[entry.provider] += entry.upstream_duration
        usage = Usage(input_tokens=entry.usage["input"], output_tokens=entry.usage["output"])
        price = calc_price(usage, entry.model, provider_id=entry.provider)
        expected_cost[entry.provider] += float(price.total_price)
    # The usage the SDK saw on the hits is what was counted as saved.
    sdk_input = sum(h.parse().usage.prompt_tokens for h in hits[:6])
    assert sdk_input == expected_tokens[("openai", "input")] > 0
    for (provider, kind), tokens in expected_tokens.items():
        assert value(m, "llm_cache_saved_tokens_total", provider=provider, type=kind) == tokens
    for provider in ("openai", "anthropic"):
        assert value(m, "llm_cache_saved_seconds_total", provider=provider) == pytest.approx(
            expected_seconds[provider], abs=1e-4
        )
        assert value(m, "llm_cache_saved_cost_usd_total", provider=provider) == pytest.approx(
            expected_cost[provider], rel=1e-9
        )
    assert expected_seconds["openai"] >= 6 * 0.04  # each hit saved the 40 ms the miss took
    assert expected_cost["openai"] > 0

    # Histograms: one upstream call per miss and bypass; one request duration per request.
    assert value(m, "llm_cache_upstream_duration_seconds_count", provider="openai") == 4
    assert value(m, "llm_cache_upstream_duration_seconds_count", provider="anthropic") == 1
    assert value(m, "llm_cache_request_duration_seconds_count") == 13
    assert value(m, "llm_cache_request_duration_seconds_count", status="hit") == 7
    slow = value(m, "llm_cache_upstream_duration_seconds_bucket", provider="openai", le="0.025")
    assert slow <= 1  # the three 40 ms misses are above that bucket

    # Gauges measured from the storage.
    assert value(m, "llm_cache_entries") == proxy.app.storage.get_size() == 5
    assert value(m, "llm_cache_storage_bytes") > 0
    assert value(m, "llm_cache_evictions_total") == 0
    assert value(m, "llm_cache_storage_errors_total") == 0

    # /cache/stats carries the same savings.
    stats = httpx2.get(f"{proxy.url}/cache/stats").json()
    assert stats["tokens_saved"] == {
        "input": expected_tokens[("openai", "input")] + expected_tokens[("anthropic", "input")],
        "output": expected_tokens[("openai", "output")] + expected_tokens[("anthropic", "output")],
    }
    assert stats["cost_saved_usd"] == pytest.approx(sum(expected_cost.values()), abs=1e-6)
    assert stats["time_saved_seconds"] == pytest.approx(sum(expected_seconds.values()), abs=2e-3)
    rows = {(r["provider"], r["model"]): r for r in stats["by_model"]}
    assert set(rows) == {("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-6")}
    gpt_row = rows[("openai", "gpt-4o-mini")]
    assert (gpt_row["hits"], gpt_row["misses"]) == (6, 3)
    assert gpt_row["cost_saved_usd"] == pytest.approx(expected_cost["openai"], abs=1e-6)
    assert gpt_row["tokens_saved"]["input"] == expected_tokens[("openai", "input")]
    assert set(gpt_row) >= {"provider", "model", "hits", "misses", "tokens_saved", "cost_saved_usd"}
    assert "cost_note" not in stats  # both models have list prices


def test_an_unknown_model_counts_zero_cost_and_says_so(proxy: Proxy, upstream: Upstream) -> None:
    client = openai_client(proxy)
    for _ in range(2):
        client.chat.completions.create(
            model="my-private-finetune", messages=[{"role": "user", "content": "hi"}]
        )
    m = scrape(proxy.url)
    assert value(m, "llm_cache_saved_tokens_total", model="my-private-finetune") > 0
    cost = [
        s for s in m["llm_cache_saved_cost_usd_total"] if s.labels["model"] == "my-private-finetune"
    ]
    assert [s.value for s in cost] == [0.0]
    stats = httpx2.get(f"{proxy.url}/cache/stats").json()
    assert "openai/my-private-finetune" in stats["cost_note"]
    (row,) = stats["by_model"]
    assert row["price_known"] is False and row["cost_saved_usd"] == 0


def test_metrics_need_the_admin_token(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    with start_proxy(admin_token="s3cret") as proxy:
        assert httpx2.get(f"{proxy.url}/metrics").status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert httpx2.get(f"{proxy.url}/metrics", headers=wrong).status_code == 401
        m = scrape(proxy.url, token="s3cret")
        assert "llm_cache_entries" in m


def test_evictions_are_counted(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    with start_proxy(max_size=2) as proxy:
        client = openai_client(proxy)
        for q in ("one", "two", "three", "four"):
            ask(client, q)
        m = scrape(proxy.url)
        assert value(m, "llm_cache_evictions_total") == 2
        assert value(m, "llm_cache_entries") == 2


def test_storage_errors_are_counted(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    dead = RedisStorage(host="127.0.0.1", port=free_port())  # nothing listens there
    with start_proxy(storage=dead) as proxy:
        proxy.app.engine.retry_after = 0.0  # try the backend on every request
        client = openai_client(proxy)
        answer = ask(client, "storage is down")
        assert answer.http_response.status_code == 200  # fail open
        m = scrape(proxy.url)
        assert value(m, "llm_cache_storage_errors_total") >= 2  # the lookup and the store
        assert value(m, "llm_cache_requests_total", status="miss") == 1
        assert "llm_cache_entries" not in m  # not measurable: left out, not reported as 0
