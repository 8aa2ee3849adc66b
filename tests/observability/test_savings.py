"""Savings: list prices from genai-prices (unknown models count 0 and say so), and the savings
in ``llm-cache stats`` (asked of the running proxy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import orjson
import pytest
from genai_prices import Usage, calc_price

from llm_cache.observability.savings import PriceTable
from tests.conftest import Proxy, Upstream
from tests.support.redis_servers import free_port

BIN = Path(sys.executable).parent


def test_known_models_cost_their_list_price() -> None:
    table = PriceTable()
    for provider, model in (("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-6")):
        cost = table.cost(provider, model, {"input": 1200, "output": 340})
        price = calc_price(Usage(input_tokens=1200, output_tokens=340), model, provider_id=provider)
        assert cost == pytest.approx(float(price.total_price)) and cost > 0
    assert table.note() is None


def test_a_model_served_by_another_upstream_is_found_by_its_name() -> None:
    # A named OpenAI-compatible upstream reports provider "openai" with a model OpenAI does not
    # sell: the table is asked by model name alone.
    table = PriceTable()
    cost = table.cost("openai", "claude-sonnet-4-6", {"input": 1000, "output": 0})
    assert cost is not None and cost > 0


def test_unknown_and_local_models_count_zero_and_say_so() -> None:
    table = PriceTable()
    assert table.cost("openai", "acme-private-model", {"input": 10, "output": 10}) is None
    assert table.cost("ollama", "llama3.2", {"input": 10, "output": 10}) is None
    note = table.note()
    assert note is not None
    assert "openai/acme-private-model" in note and "ollama/llama3.2" in note and "$0" in note


def test_without_the_price_package_costs_are_zero_with_an_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # as if it were not installed
    table = PriceTable()
    assert table.cost("openai", "gpt-4o-mini", {"input": 10, "output": 10}) is None
    assert not table.available
    assert "llm-caching[prices]" in (table.note() or "")


def run_stats(proxy_port: int, db: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(BIN),
        "LLM_CACHE_SQLITE_PATH": db,
        "LLM_CACHE_PROXY_PORT": str(proxy_port),
    }
    return subprocess.run(
        [str(BIN / "llm-cache"), "stats"], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_llm_cache_stats_shows_the_running_proxys_savings(
    proxy: Proxy, upstream: Upstream, tmp_path: Path
) -> None:
    client = openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test", max_retries=0)
    for _ in range(3):
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "save me"}]
        )
    assert answer.usage is not None
    saved = 2 * answer.usage.total_tokens  # two hits, each the stored answer's usage
    port = int(proxy.url.rsplit(":", 1)[1])
    result = run_stats(port, proxy.config.sqlite_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"saved     {saved:,} tokens" in result.stdout
    assert "openai/gpt-4o-mini: 2 hits, 1 misses" in result.stdout

    as_json = subprocess.run(
        [str(BIN / "llm-cache"), "stats", "--json"],
        capture_output=True,
        text=True,
        env={
            "PATH": str(BIN),
            "LLM_CACHE_SQLITE_PATH": proxy.config.sqlite_path,
            "LLM_CACHE_PROXY_PORT": str(port),
        },
        cwd=tmp_path,
    )
    data = orjson.loads(as_json.stdout)
    assert sum(data["tokens_saved"].values()) == saved
    assert data["cost_saved_usd"] > 0 and data["by_model"][0]["hits"] == 2


def test_llm_cache_stats_without_a_proxy_says_where_savings_come_from(tmp_path: Path) -> None:
    result = run_stats(free_port(), str(tmp_path / "c.db"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "saved     unknown: no proxy answering at http://127.0.0.1:" in result.stdout
