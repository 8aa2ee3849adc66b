"""Cache keys: SHA-256 over canonical JSON of everything that can change an answer.

The key is a deny-list: every field enters unless it is in ``EXCLUDED_FIELDS`` (fields one stored
entry can answer for every value of) or starts with ``_cache_`` (our own per-request controls).
A key-schema version is hashed in front of the payload, so a change in normalization can never
collide with entries written under the old rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from typing import Any

import orjson

KEY_SCHEMA_VERSION = "llm-cache/key/v1"
_PREFIX = KEY_SCHEMA_VERSION.encode() + b"\x00"

#: Body fields that never change the answer, or whose every value one entry can serve.
EXCLUDED_FIELDS: frozenset[str] = frozenset({"stream", "user", "metadata"})

#: Fields whose names hold credentials; never enter a key (nor storage, nor logs).
CREDENTIAL_FIELDS: frozenset[str] = frozenset({"api_key", "api-key", "authorization"})

CONTROL_PREFIX = "_cache_"

_ORJSON_OPTS = orjson.OPT_SORT_KEYS
_TAGGED_MARK = b"T"
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson encodes natively


def normalize_request_params(
    request: Mapping[str, Any], excluded: frozenset[str] = EXCLUDED_FIELDS
) -> dict[str, Any]:
    """Return the request without the fields that never enter a key: ``excluded`` (by default
    ``EXCLUDED_FIELDS``; a provider passes its own per endpoint), credentials, our controls.

    Only top-level fields are dropped: a nested ``user`` (say, inside a tool schema) is content.
    """
    return {
        k: v
        for k, v in request.items()
        if k not in excluded
        and k.lower() not in CREDENTIAL_FIELDS
        and not k.startswith(CONTROL_PREFIX)
    }


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` deterministically: sorted keys at every depth, no whitespace.

    JSON-native data (strings, 64-bit ints, finite floats, bools, ``None``, lists, dicts with
    string keys) takes orjson's fast path and is exactly its JSON text. Anything else goes
    through ``_tagged``, which spells out every type, and is marked with a leading ``T`` that no
    JSON text starts with: so a tagged form never equals a plain one, and inside a tagged form
    every dict is wrapped, so no real dict can pass for a tag.
    """
    if _is_plain(value):
        return orjson.dumps(value, option=_ORJSON_OPTS)
    return _TAGGED_MARK + orjson.dumps(_tagged(value), option=_ORJSON_OPTS)


def hash_payload(payload: bytes) -> str:
    """Hash canonical bytes under the current key schema; 64 hex characters."""
    return hashlib.sha256(_PREFIX + payload).hexdigest()


def key_for(value: Any) -> str:
    """Key of any JSON-able value (the engine's and wrapper's common entry point)."""
    return hash_payload(canonical_json(value))


def key_for_parsed_json(value: Any) -> str:
    """``key_for`` of data parsed from JSON text (dicts, lists, strings, numbers, booleans,
    ``None`` only), skipping the walk that checks for other types: parsed JSON is plain except
    for integers past 64 bits, which orjson refuses, so those take the tagged path.

    ``TypeError`` when nested deeper than orjson serializes (about 250 levels)."""
    try:
        return hash_payload(orjson.dumps(value, option=_ORJSON_OPTS))
    except TypeError as exc:
        if "ecursion" in str(exc):
            raise
        return key_for(value)


def generate_cache_key(
    provider: str,
    model: str,
    messages: str | list[dict[str, Any]] | Any,
    temperature: float | None = None,
    max_tokens: int | None = None,
    **kwargs: Any,
) -> str:
    """Key of a chat-style request (SPEC: 64 hex characters, SHA-256 of canonical JSON).

    A string ``messages`` is the single user message it stands for; the provider name is
    case-insensitive. ``temperature``/``max_tokens`` of ``None`` mean "not sent" and so equal
    leaving them out.
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    params: dict[str, Any] = dict(kwargs)
    params["model"] = model
    params["messages"] = messages
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    body = normalize_request_params(params)
    return key_for({"provider": provider.lower(), "body": body})


# -- canonical form ------------------------------------------------------------------------


def _is_plain(value: Any) -> bool:
    """True when orjson's output for ``value`` is unambiguous (JSON-native, finite floats)."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return bool(_INT_MIN <= value <= _INT_MAX)
    if t is float:
        return math.isfinite(value)
    if t is dict:
        return all(type(k) is str and _is_plain(v) for k, v in value.items())
    if t is list:
        return all(_is_plain(v) for v in value)
    return False


def _tagged(value: Any) -> Any:
    """A JSON-native stand-in for ``value`` in which distinct values stay distinct.

    Scalars JSON spells unambiguously stay as they are; every container and every other type
    becomes a one-key dict naming its type, so ``(1, 2)``, ``[1, 2]`` and
    ``{"__tuple__": [1, 2]}`` all differ.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _INT_MAX else {"__int__": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, Mapping):
        if all(type(k) is str for k in value):
            return {"__dict__": {k: _tagged(v) for k, v in value.items()}}
        items = sorted(
            ([canonical_json(k).decode(), _tagged(v)] for k, v in value.items()),
            key=lambda kv: kv[0],
        )
        return {"__map__": items}
    if isinstance(value, list):
        return {"__list__": [_tagged(v) for v in value]}
    if isinstance(value, tuple):
        return {"__tuple__": [_tagged(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"__set__": sorted(canonical_json(v).decode() for v in value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": bytes(value).hex()}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):  # pydantic v2 models (SDK request params)
        return {"__model__": _type_name(value), "data": _tagged(model_dump(mode="json"))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": _type_name(value), "data": _tagged(dataclasses.asdict(value))}
    raise TypeError(f"cannot build a cache key from a value of type {_type_name(value)}")


def _type_name(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"
