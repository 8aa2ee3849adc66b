"""The dashboard's entry API on each backend: listing, search, show and delete; looking at an
entry never counts a hit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest

from llm_cache.cache.memory_storage import MemoryStorage
from tests.conftest import ProxyFactory, Upstream


def use(url: str, questions: list[str], times: int = 2) -> dict[str, str]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0)
    keys = {}
    for _ in range(times):
        for q in questions:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": q}]
            )
            keys[q] = raw.headers["x-cache-key"]
    return keys


def check_entry_api(url: str) -> None:
    keys = use(url, ["apples and pears", "stream of bytes"])
    hits_before = httpx2.get(f"{url}/cache/stats").json()["hits"]
    listed = httpx2.get(f"{url}/dashboard/api/entries").json()
    assert {e["key"] for e in listed["entries"]} == set(keys.values())
    assert all(e["model"] == "gpt-4o-mini" and e["usage"]["input"] > 0 for e in listed["entries"])
    found = httpx2.get(f"{url}/dashboard/api/entries", params={"q": "PEARS"}).json()
    assert [e["key"] for e in found["entries"]] == [keys["apples and pears"]]
    assert found["entries"][0]["request_preview"] == "apples and pears"
    assert (
        httpx2.get(f"{url}/dashboard/api/entries", params={"q": "claude"}).json()["entries"] == []
    )
    shown = httpx2.get(f"{url}/dashboard/api/entry", params={"key": keys["stream of bytes"]})
    assert shown.status_code == 200
    body = shown.json()
    assert body["request"]["body"]["messages"][0]["content"] == "stream of bytes"
    assert "authorization" not in {h.lower() for h in body["request"]["headers"]}
    assert "stream of bytes" in body["response"]["text"]
    # Browsing counted no hit.
    assert httpx2.get(f"{url}/cache/stats").json()["hits"] == hits_before
    deleted = httpx2.delete(f"{url}/dashboard/api/entry", params={"key": keys["stream of bytes"]})
    assert deleted.json() == {"status": "success", "message": "Entry deleted"}
    again = httpx2.get(f"{url}/dashboard/api/entry", params={"key": keys["stream of bytes"]})
    assert again.status_code == 404
    assert (
        httpx2.delete(
            f"{url}/dashboard/api/entry", params={"key": keys["stream of bytes"]}
        ).status_code
        == 404
    )
    listed = httpx2.get(f"{url}/dashboard/api/entries").json()
    assert [e["key"] for e in listed["entries"]] == [keys["apples and pears"]]
    assert httpx2.get(f"{url}/dashboard/api/entry").status_code == 400


def test_entry_api_on_sqlite(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    with start_proxy() as proxy:
        check_entry_api(proxy.url)


def test_entry_api_on_memory(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    with start_proxy(storage=MemoryStorage(max_size=100)) as proxy:
        check_entry_api(proxy.url)


def test_entry_api_on_redis(
    start_proxy: ProxyFactory, upstream: Upstream, make_redis_storage: Callable[..., Any]
) -> None:
    with start_proxy(storage=make_redis_storage(max_size=100)) as proxy:
        check_entry_api(proxy.url)


def test_summary_reports_a_failing_storage(start_proxy: ProxyFactory, upstream: Upstream) -> None:
    from llm_cache.cache.redis_storage import RedisStorage
    from tests.support.redis_servers import free_port

    with start_proxy(storage=RedisStorage(host="127.0.0.1", port=free_port())) as proxy:
        use(proxy.url, ["still answered"], times=1)
        summary = httpx2.get(f"{proxy.url}/dashboard/api/summary").json()
        assert summary["health"]["status"] == "degraded"
        assert summary["storage"]["error"]
        assert summary["requests_by_status"] == {"miss": 1}
        assert httpx2.get(f"{proxy.url}/dashboard/api/entries").json()["entries"] == []
        shown = httpx2.get(f"{proxy.url}/dashboard/api/entry", params={"key": "0" * 64})
        assert shown.status_code == 503 and "storage failed" in shown.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/dashboard/api/nothing", "/dashboard/static/secret.txt"])
def test_unknown_dashboard_paths_are_404(
    start_proxy: ProxyFactory, upstream: Upstream, path: str
) -> None:
    with start_proxy() as proxy:
        assert httpx2.get(f"{proxy.url}{path}").status_code == 404
