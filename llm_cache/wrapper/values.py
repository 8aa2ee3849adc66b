"""How the wrapper stores a return value: tagged JSON, never pickle.

A shared cache (Redis) must not become a code-execution channel, so a stored value can only
ever turn back into plain data, into a pydantic model, or into a dataclass, and a class is only
looked up by import path when it is one of those. ``dump`` turns a value into JSON-able data;
``load`` is its inverse; ``dump_checked`` also proves the round trip gives back an equal value
(a value that does not is refused with ``UnstorableValue`` rather than cached wrong).

Tagged forms are dicts with a ``"__t"`` key; a user dict that has such a key is stored as a
list of pairs, so no user data can be mistaken for a tag.

Pydantic models are stored as the class path plus ``model_dump(mode="json",
exclude_unset=True)`` and restored with ``model_validate`` (4 µs for a typical
``ChatCompletion``, against about 50 µs for the SDKs' recursive ``construct``). Keeping only
the fields that were set keeps ``to_json()``/``model_fields_set`` identical to the original. A
value the SDK built leniently (an enum member newer than the installed SDK, say) fails
validation; for the SDKs' own models (openai, anthropic and other Stainless-generated SDKs,
whose ``construct`` is recursive) such an entry is marked ``lax`` and rebuilt with
``construct``, exactly as the SDK itself builds responses.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import importlib
import math
import sys
import uuid
from typing import Any

_TAG = "__t"
_INT_LIMIT = 2**63


class UnstorableValue(TypeError):
    """The value (or part of it) has no safe stored form."""


# -- dumping --------------------------------------------------------------------------------


def dump_checked(value: Any) -> Any:
    """``dump(value)``, verified: what ``load`` makes of the result must stand for ``value``.

    Forms are tried from the most faithful and cheapest on; the first that proves itself wins:

    1. pydantic models with only their set fields (faithful ``to_json``), then with all fields
       (a ``default_factory`` that makes a new value each time): ``load`` must give an equal
       value;
    2. pydantic models by their state (``__dict__``, extra and private attributes, set fields),
       nested values tagged, restored without validation as pydantic's own ``copy`` does: a
       litellm ``ModelResponse`` (private ``_hidden_params``), a llama-index
       ``CompletionResponse`` holding an SDK object in an ``Any`` field; equal again;
    3. a model whose class cannot be imported back (instructor makes subclasses at run time)
       is restored as its nearest importable pydantic base class, accepted only when the JSON
       form of the restored value equals the original's.

    Raises ``UnstorableValue`` when no form proves itself.
    """
    reason = "does not come back equal after storing"
    has_model = _has_model(value)
    for mode in _MODES if has_model else _MODES[:1]:
        try:
            data = dump(value, mode=mode)
        except UnstorableValue as exc:
            if mode == "set":
                raise
            reason = f"has no stored form ({exc})"
            continue
        try:
            restored = load(data)
            if restored == value if mode != "nearest" else _same_json(restored, value):
                return data
        except Exception as exc:
            reason = f"cannot be restored ({exc})"
    raise UnstorableValue(f"a value of type {_type_path(type(value))} {reason}")


#: The pydantic forms ``dump_checked`` tries, in order.
_MODES = ("set", "full", "state", "nearest")


def _same_json(restored: Any, value: Any) -> bool:
    from pydantic_core import to_jsonable_python

    try:
        return bool(to_jsonable_python(restored) == to_jsonable_python(value))
    except Exception:
        return False


def dump(value: Any, *, full: bool = False, mode: str | None = None) -> Any:
    """JSON-able stored form of ``value``; raises ``UnstorableValue`` for anything else.

    ``mode`` picks the pydantic form (``dump_checked``): ``set`` (default), ``full``,
    ``state`` or ``nearest``; ``full=True`` is ``mode="full"``.
    """
    if mode is None:
        mode = "full" if full else "set"
    full = mode != "set"
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        return value if -_INT_LIMIT < value < _INT_LIMIT else {_TAG: "int", "v": str(value)}
    if t is float:
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if t is list:
        return [dump(v, mode=mode) for v in value]
    if t is dict:
        if _TAG not in value and all(type(k) is str for k in value):
            return {k: dump(v, mode=mode) for k, v in value.items()}
        pairs = [[dump(k, mode=mode), dump(v, mode=mode)] for k, v in value.items()]
        return {_TAG: "dict", "v": pairs}
    if t is tuple:
        return {_TAG: "tuple", "v": [dump(v, mode=mode) for v in value]}
    if t is set or t is frozenset:
        return {_TAG: t.__name__, "v": [dump(v, mode=mode) for v in value]}
    if t is bytes:
        return {_TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if t is _dt.datetime or t is _dt.date or t is _dt.time:
        return {_TAG: t.__name__, "v": value.isoformat()}
    if t is _dt.timedelta:
        return {_TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if t is decimal.Decimal:
        return {_TAG: "decimal", "v": str(value)}
    if t is uuid.UUID:
        return {_TAG: "uuid", "v": str(value)}
    if _is_pydantic_model(value):
        if mode == "state":
            return _dump_state(value, t)
        path = _type_path(t) if mode != "nearest" else _nearest_importable(t)
        data = value.model_dump(mode="json", exclude_unset=not full)
        node: dict[str, Any] = {_TAG: "pydantic", "cls": path, "v": data}
        if _lax_needed(resolve_class(path, "pydantic") if mode == "nearest" else t, data):
            node["lax"] = 1
        return node
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: dump(getattr(value, f.name), mode=mode) for f in dataclasses.fields(value)
        }
        return {_TAG: "dataclass", "cls": _type_path(t), "v": fields}
    if isinstance(value, tuple) and hasattr(t, "_fields") and hasattr(t, "_make"):
        return {_TAG: "namedtuple", "cls": _type_path(t), "v": [dump(v, mode=mode) for v in value]}
    raise UnstorableValue(f"values of type {_type_path(t)} cannot be cached safely")


# -- loading --------------------------------------------------------------------------------


def load(data: Any) -> Any:
    """Inverse of ``dump``. Raises ``ValueError`` on a form it does not know."""
    t = type(data)
    if t is list:
        return [load(v) for v in data]
    if t is not dict:
        return data
    tag = data.get(_TAG)
    if tag is None:
        return {k: load(v) for k, v in data.items()}
    v = data.get("v")
    if tag == "pydantic":
        cls = resolve_class(data["cls"], "pydantic")
        if data.get("lax") and _is_sdk_model(cls):
            return cls.construct(**v)
        return cls.model_validate(v)
    if tag == "pydantic_state":
        return _load_state(data)
    if tag == "tuple":
        return tuple(load(x) for x in v)
    if tag == "dict":
        return {load(k): load(x) for k, x in v}
    if tag == "dataclass":
        cls = resolve_class(data["cls"], "dataclass")
        obj = cls.__new__(cls)
        for name, x in v.items():
            object.__setattr__(obj, name, load(x))
        return obj
    if tag == "namedtuple":
        cls = resolve_class(data["cls"], "namedtuple")
        return cls._make(load(x) for x in v)
    if tag == "set":
        return {load(x) for x in v}
    if tag == "frozenset":
        return frozenset(load(x) for x in v)
    if tag == "bytes":
        return base64.b64decode(v)
    if tag == "int":
        return int(v)
    if tag == "float":
        return float(v)
    if tag == "datetime":
        return _dt.datetime.fromisoformat(v)
    if tag == "date":
        return _dt.date.fromisoformat(v)
    if tag == "time":
        return _dt.time.fromisoformat(v)
    if tag == "timedelta":
        return _dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2])
    if tag == "decimal":
        return decimal.Decimal(v)
    if tag == "uuid":
        return uuid.UUID(v)
    raise ValueError(f"unknown stored value tag {tag!r}")


# -- pydantic models by state ---------------------------------------------------------------


def _dump_state(value: Any, t: type) -> dict[str, Any]:
    node: dict[str, Any] = {
        _TAG: "pydantic_state",
        "cls": _type_path(t),
        "v": dump(dict(value.__dict__), mode="state"),
        "set": sorted(value.__pydantic_fields_set__),
    }
    extra = getattr(value, "__pydantic_extra__", None)
    if extra is not None:
        node["extra"] = dump(dict(extra), mode="state")
    private = getattr(value, "__pydantic_private__", None)
    if private is not None:
        node["private"] = dump(dict(private), mode="state")
    return node


def _load_state(data: dict[str, Any]) -> Any:
    """A model rebuilt from its state without validation (what pydantic's ``__copy__`` does)."""
    cls = resolve_class(data["cls"], "pydantic")
    obj = cls.__new__(cls)
    state = load(data["v"])
    if not isinstance(state, dict):
        raise ValueError("a pydantic state must be a dict")
    object.__setattr__(obj, "__dict__", state)
    object.__setattr__(obj, "__pydantic_fields_set__", set(data.get("set") or ()))
    extra = data.get("extra")
    object.__setattr__(obj, "__pydantic_extra__", None if extra is None else load(extra))
    private = data.get("private")
    object.__setattr__(obj, "__pydantic_private__", None if private is None else load(private))
    return obj


def _nearest_importable(t: type) -> str:
    """The class path of ``t`` or of its nearest pydantic base that can be imported back."""
    base = _pydantic_base()
    for cls in t.__mro__:
        if base is None or not isinstance(cls, type) or not issubclass(cls, base):
            continue
        if cls is base:
            break
        path = _type_path(cls)
        try:
            if resolve_class(path, "pydantic") is cls:
                return path
        except (ValueError, AttributeError, ImportError):
            continue
    raise UnstorableValue(f"no importable pydantic class for {_type_path(t)}")


# -- classes --------------------------------------------------------------------------------

_resolved: dict[tuple[str, str], type] = {}


def resolve_class(path: str, kind: str) -> Any:
    """The class at ``module:qualname``, only if it is of ``kind`` (pydantic/dataclass/namedtuple).

    A module is imported only when it, or its top-level package, is already imported: a stored
    entry cannot make the process import (and so run) a module the program never used.
    """
    cached = _resolved.get((path, kind))
    if cached is not None:
        return cached
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname or "<" in qualname:
        raise ValueError(f"not a class path: {path!r}")
    module = sys.modules.get(module_name)
    if module is None:
        if module_name.partition(".")[0] not in sys.modules:
            raise ValueError(f"refusing to import {module_name!r} to restore a cached value")
        module = importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type) or not _is_kind(obj, kind):
        raise ValueError(f"{path!r} is not a {kind} class")
    _resolved[(path, kind)] = obj
    return obj


def _is_kind(cls: type, kind: str) -> bool:
    if kind == "pydantic":
        return _pydantic_base() is not None and issubclass(cls, _pydantic_base())  # type: ignore[arg-type]
    if kind == "dataclass":
        return dataclasses.is_dataclass(cls)
    return issubclass(cls, tuple) and hasattr(cls, "_fields") and hasattr(cls, "_make")


def _type_path(t: type) -> str:
    return f"{t.__module__}:{t.__qualname__}"


def _pydantic_base() -> type | None:
    module = sys.modules.get("pydantic")
    return getattr(module, "BaseModel", None) if module is not None else None


def _is_pydantic_model(value: Any) -> bool:
    base = _pydantic_base()
    return base is not None and isinstance(value, base)


def _is_sdk_model(cls: type) -> bool:
    """A Stainless-generated SDK model (openai, anthropic...) with a recursive ``construct``."""
    return any(
        c.__name__ == "BaseModel"
        and c.__module__.partition(".")[0] != "pydantic"
        and "construct" in c.__dict__
        for c in cls.__mro__
    )


def _lax_needed(cls: Any, data: Any) -> bool:
    """Whether ``data`` fails validation but the class's SDK ``construct`` can rebuild it."""
    if not _is_sdk_model(cls):
        return False
    try:
        cls.model_validate(data)
    except Exception:
        return True
    return False


def _has_model(value: Any) -> bool:
    if _is_pydantic_model(value):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_has_model(v) for v in value)
    if isinstance(value, dict):
        return any(_has_model(v) for v in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_has_model(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False
