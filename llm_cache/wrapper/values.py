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
    """``dump(value)``, verified: ``load`` of the result must equal ``value``.

    Pydantic models are first dumped with only their set fields (faithful ``to_json``); when
    that does not round-trip (a ``default_factory`` that makes a new value each time), with all
    fields. Raises ``UnstorableValue`` when neither gives back an equal value.
    """
    reason = "does not come back equal after storing"
    for full in (False, True):
        data = dump(value, full=full)
        try:
            if load(data) == value:
                return data
        except Exception as exc:
            reason = f"cannot be restored ({exc})"
        if not _has_model(value):
            break
    raise UnstorableValue(f"a value of type {_type_path(type(value))} {reason}")


def dump(value: Any, *, full: bool = False) -> Any:
    """JSON-able stored form of ``value``; raises ``UnstorableValue`` for anything else."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        return value if -_INT_LIMIT < value < _INT_LIMIT else {_TAG: "int", "v": str(value)}
    if t is float:
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if t is list:
        return [dump(v, full=full) for v in value]
    if t is dict:
        if _TAG not in value and all(type(k) is str for k in value):
            return {k: dump(v, full=full) for k, v in value.items()}
        pairs = [[dump(k, full=full), dump(v, full=full)] for k, v in value.items()]
        return {_TAG: "dict", "v": pairs}
    if t is tuple:
        return {_TAG: "tuple", "v": [dump(v, full=full) for v in value]}
    if t is set or t is frozenset:
        return {_TAG: t.__name__, "v": [dump(v, full=full) for v in value]}
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
        data = value.model_dump(mode="json", exclude_unset=not full)
        node: dict[str, Any] = {_TAG: "pydantic", "cls": _type_path(t), "v": data}
        if _lax_needed(t, data):
            node["lax"] = 1
        return node
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: dump(getattr(value, f.name), full=full) for f in dataclasses.fields(value)
        }
        return {_TAG: "dataclass", "cls": _type_path(t), "v": fields}
    if isinstance(value, tuple) and hasattr(t, "_fields") and hasattr(t, "_make"):
        return {_TAG: "namedtuple", "cls": _type_path(t), "v": [dump(v, full=full) for v in value]}
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
