"""``llm-cache warm --openai-batch INPUT OUTPUT``: an OpenAI Batch job's answers as entries.

A Batch job has an input file (one request a line: ``custom_id``, ``method``, ``url`` such as
``/v1/chat/completions``, ``body``) and an output file (one result a line: ``custom_id``,
``response: {status_code, body}``, ``error``). Each successful result becomes the entry the
proxy would have stored for that request sent through it: keyed on the configured OpenAI
upstream URL and the request body, so making the same request later is a hit. Failed results
and requests without a result are counted, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_cache.engine.entry import Entry
from llm_cache.ops.files import open_lines
from llm_cache.ops.records import ImportItem, rekey
from llm_cache.providers import get_provider

_ENDPOINTS = ("/chat/completions", "/completions", "/embeddings", "/responses")


class BatchFileError(ValueError):
    """A line of a Batch input or output file that cannot be read: ``path:line: what``."""


@dataclass(slots=True)
class WarmPlan:
    items: list[ImportItem] = field(default_factory=list)
    failed: int = 0  # results with an error or a non-2xx status
    unanswered: int = 0  # requests with no result in the output file
    unknown: int = 0  # results whose custom_id is not in the input file
    unsupported: list[str] = field(default_factory=list)  # endpoints the cache does not serve


def _objects(path: str) -> list[tuple[int, dict[str, Any]]]:
    out = []
    with open_lines(path) as lines:
        for number, line in lines:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise BatchFileError(f"{path}:{number}: not valid JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise BatchFileError(f"{path}:{number}: expected a JSON object")
            out.append((number, obj))
    return out


def _requests(path: str) -> dict[str, tuple[str, dict[str, Any]]]:
    requests: dict[str, tuple[str, dict[str, Any]]] = {}
    for number, obj in _objects(path):
        custom_id, url, body = obj.get("custom_id"), obj.get("url"), obj.get("body")
        where = f"{path}:{number}"
        if not isinstance(custom_id, str) or not custom_id:
            raise BatchFileError(f"{where}: 'custom_id' must be a non-empty string")
        if custom_id in requests:
            raise BatchFileError(f"{where}: custom_id {custom_id!r} appears twice")
        if not isinstance(url, str) or not url.startswith("/"):
            raise BatchFileError(f"{where}: 'url' must be a path such as /v1/chat/completions")
        if str(obj.get("method", "POST")).upper() != "POST":
            raise BatchFileError(f"{where}: 'method' must be POST")
        if not isinstance(body, dict):
            raise BatchFileError(f"{where}: 'body' must be an object")
        requests[custom_id] = (url, body)
    return requests


def plan_openai_batch(input_path: str, output_path: str, openai_base_url: str) -> WarmPlan:
    """Read both files and build the entries to store; ``BatchFileError`` for a bad line."""
    requests = _requests(input_path)
    provider = get_provider("openai")
    plan = WarmPlan()
    answered: set[str] = set()
    for number, obj in _objects(output_path):
        custom_id = obj.get("custom_id")
        if not isinstance(custom_id, str):
            raise BatchFileError(f"{output_path}:{number}: 'custom_id' must be a string")
        answered.add(custom_id)
        if custom_id not in requests:
            plan.unknown += 1
            continue
        response = obj.get("response")
        status = response.get("status_code") if isinstance(response, dict) else None
        body = response.get("body") if isinstance(response, dict) else None
        if obj.get("error") or not isinstance(status, int) or not 200 <= status < 300:
            plan.failed += 1
            continue
        if not isinstance(body, dict):
            raise BatchFileError(f"{output_path}:{number}: 'response.body' must be an object")
        path, request_body = requests[custom_id]
        endpoint = path.removeprefix("/v1")
        if endpoint not in _ENDPOINTS:
            plan.unsupported.append(path)
            continue
        request = {
            "method": "POST",
            "url": openai_base_url.rstrip("/") + endpoint,
            "headers": {},
            "body": request_body,
        }
        key = rekey(request, "openai")
        model = request_body.get("model")
        usage = provider.usage_tokens(endpoint, body)
        entry = Entry(
            status,
            "application/json",
            body=orjson.dumps(body),
            request=request,
            provider=provider.name,
            endpoint=endpoint,
            model=model if isinstance(model, str) else "",
            usage=usage.as_dict() if usage is not None else None,
        )
        metadata = {"provider": provider.name, "endpoint": endpoint, "model": entry.model}
        plan.items.append(ImportItem(key, key, entry.encode(), metadata, None))
    plan.unanswered = len(set(requests) - answered)
    return plan
