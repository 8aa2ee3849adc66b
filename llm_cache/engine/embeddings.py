"""Partial embedding hits: each item of a list ``input`` is cached on its own.

A batch job that resends mostly the same inputs sends only the missing items upstream; the
answer lists every item in request order, and its ``usage`` counts only what the upstream
processed. The wire shapes here are OpenAI's embeddings (``data[i].index``/``embedding``).
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["ITEM_MARK", "assemble", "split_answer"]

#: Body field (never sent upstream) that keeps per-item keys apart from whole-request keys.
ITEM_MARK = "llm_cache_item"


def split_answer(response: Any, count: int) -> list[dict[str, Any]] | None:
    """The ``count`` item objects of an upstream answer, in request order; ``None`` when the
    answer does not have exactly one well-formed item per input."""
    if not isinstance(response, dict) or not isinstance(response.get("data"), list):
        return None
    data = response["data"]
    if len(data) != count:
        return None
    ordered: list[dict[str, Any] | None] = [None] * count
    for item in data:
        if not isinstance(item, dict):
            return None
        index = item.get("index")
        if not isinstance(index, int) or not 0 <= index < count or ordered[index] is not None:
            return None
        ordered[index] = item
    return [item for item in ordered if item is not None]


def assemble(items: list[dict[str, Any]], model: str, usage: Any) -> bytes:
    """The full answer: every item re-indexed in request order."""
    return orjson.dumps(
        {
            "object": "list",
            "data": [{**item, "index": i} for i, item in enumerate(items)],
            "model": model,
            "usage": usage,
        }
    )
