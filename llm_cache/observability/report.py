"""Savings for ``llm-cache stats``: asked of the running proxy, which is where they are counted.

Hits and misses live in the storage, so the command line reads them there. Savings (tokens,
dollars, seconds) are counted by the proxy from each hit's event -- summed over its workers --
so ``llm-cache stats`` asks the proxy at the configured host and port for them. When none
answers, the command says so instead of printing zeros.
"""

from __future__ import annotations

from typing import Any

import httpx2

from llm_cache.config import Config

__all__ = ["SAVINGS_FIELDS", "add_proxy_savings", "savings_lines"]

SAVINGS_FIELDS = ("tokens_saved", "cost_saved_usd", "time_saved_seconds", "by_model", "cost_note")


def proxy_url(config: Config) -> str:
    host = config.proxy_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.proxy_port}"


def add_proxy_savings(config: Config, stats: dict[str, Any], timeout: float = 2.0) -> bool:
    """Copy the running proxy's savings fields into ``stats``; ``False`` when none answers
    (``stats["savings_error"]`` then says why)."""
    url = f"{proxy_url(config)}/cache/stats"
    headers = {"authorization": f"Bearer {config.admin_token}"} if config.admin_token else {}
    try:
        response = httpx2.get(url, headers=headers, timeout=timeout)
        body = response.json() if response.status_code == 200 else None
    except (httpx2.HTTPError, ValueError) as exc:
        stats["savings_error"] = f"no proxy answering at {url} ({type(exc).__name__})"
        return False
    if not isinstance(body, dict) or "tokens_saved" not in body:
        stats["savings_error"] = f"{url} answered {response.status_code} without savings"
        return False
    for name in SAVINGS_FIELDS:
        if name in body:
            stats[name] = body[name]
    return True


def savings_lines(stats: dict[str, Any]) -> list[str]:
    """The savings part of the ``llm-cache stats`` table."""
    if "tokens_saved" not in stats:
        reason = stats.get("savings_error", "no proxy answering")
        return [f"saved     unknown: {reason} (savings are counted by the running proxy)"]
    tokens = stats["tokens_saved"]
    lines = [
        f"saved     {tokens['input'] + tokens['output']:,} tokens "
        f"({tokens['input']:,} in, {tokens['output']:,} out), "
        f"${stats['cost_saved_usd']:.4f}, {stats['time_saved_seconds']:.1f} s of upstream time",
    ]
    for row in stats.get("by_model", [])[:10]:
        row_tokens = row["tokens_saved"]["input"] + row["tokens_saved"]["output"]
        price = f"${row['cost_saved_usd']:.4f}" if row.get("price_known", True) else "unpriced"
        lines.append(
            f"  {row['provider']}/{row['model']}: {row['hits']} hits, {row['misses']} misses, "
            f"{row_tokens:,} tokens, {price}"
        )
    if stats.get("cost_note"):
        lines.append(f"  note: {stats['cost_note']}")
    return lines
