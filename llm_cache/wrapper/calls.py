"""What a wrapped call's key covers: the function's code, the data it reads, its arguments.

A key must change whenever the answer can. For a wrapped function that is:

- its **code**: bytecode, constants and names, nested code objects (inner functions,
  comprehensions, lambdas) included; so an edited body, or another script's ``ask`` in
  ``__main__``, never shares entries (Python's bytecode differs between minor versions, so a
  new Python re-keys);
- the **data it reads** from its closure and from module globals, read once at the first call
  (a snapshot; like joblib, an object changed in place later is not seen, so a call log the
  function appends to does not stop it hitting). A name rebound to another object is read
  again at the next call, except names the function assigns itself (``nonlocal n; n += 1``,
  ``global n``): those are its own state. Functions it calls are keyed the same way when they
  are the user's code, by name and bytecode when they come from an installed package;
- its **bound arguments**, defaults applied.

Values are keyed by content: JSON-like data, enums, dataclasses and other plain objects by
their attributes (so an attribute derived from an ``InitVar`` counts), pydantic models by their
fields, extra and private attributes, SDK clients by provider, base URL, the headers that
change answers, default query and Azure ``api_version``, never by the API key. What has no
such form (a socket, a database connection) makes the call *unkeyable*: ``Unkeyable`` names
it, and the wrapper returns that call uncached with one ``CacheWarning``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import decimal
import dis
import enum
import fractions
import functools
import hashlib
import inspect
import logging
import math
import os
import pathlib
import re
import sys
import sysconfig
import threading
import types
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import orjson

__all__ = ["Canonicalizer", "FunctionIdentity", "Unkeyable", "canonical", "sdk_identity"]

_CACHE_KEY_ATTR = "__cache_key__"
#: Client headers that change an answer (the proxy and transport key the same ones).
KEY_HEADERS = ("openai-beta", "anthropic-version", "anthropic-beta")
#: Top-level packages whose clients are keyed as SDK clients (provider name).
SDK_PACKAGES = {"openai": "openai", "anthropic": "anthropic"}
_MAX_DEPTH = 200
_MAX_NODES = 200_000
_INT_LIMIT = 2**63


class Unkeyable(TypeError):
    """A value the key cannot cover (its ``path`` says where it was found)."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"{path} ({what}) has no key form")
        self.path = path
        self.what = what


# -- where code comes from ------------------------------------------------------------------


def _library_roots() -> tuple[str, ...]:
    roots = set()
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(name)
        if path:
            roots.add(str(pathlib.Path(path).resolve()))
            roots.add(path)
    roots.add(sys.prefix)
    roots.add(sys.base_prefix)
    return tuple(sorted(roots))


_LIBRARY_ROOTS = _library_roots()


@functools.lru_cache(maxsize=4096)
def is_library_file(filename: str) -> bool:
    """Whether code in ``filename`` belongs to Python or an installed package (not the user's)."""
    if filename.startswith("<frozen") or "site-packages" in filename:
        return True
    if "dist-packages" in filename:
        return True
    return filename.startswith(_LIBRARY_ROOTS) and not filename.startswith("<")


@functools.lru_cache(maxsize=256)
def package_version(module: str | None) -> str | None:
    """The installed version of the package ``module`` belongs to, when it can be told."""
    if not module:
        return None
    top = module.partition(".")[0]
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version(top)
    except (PackageNotFoundError, ValueError):
        found = getattr(sys.modules.get(top), "__version__", None)
        return found if isinstance(found, str) else None


def _is_user_code(obj: Any) -> bool:
    """Whether ``obj`` (a function, class or module) is the user's code, not Python's or an
    installed package's. Built-in and frozen modules are Python's."""
    code = getattr(obj, "__code__", None)
    if isinstance(code, types.CodeType):
        return not is_library_file(code.co_filename)
    if isinstance(obj, types.ModuleType):
        module: Any = obj
        name = obj.__name__
    else:
        name = getattr(obj, "__module__", None) or ""
        module = sys.modules.get(name)
    filename = getattr(module, "__file__", None)
    if module is None or filename is None:
        if name in sys.builtin_module_names or name == "builtins":
            return False
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.origin in ("built-in", "frozen"):
            return False
        return name in ("__main__", "")  # run from stdin, exec'd into a fresh namespace
    return not is_library_file(str(filename))


# -- code ----------------------------------------------------------------------------------

_code_digests: dict[types.CodeType, str] = {}
_code_lock = threading.Lock()


def code_digest(code: types.CodeType) -> str:
    """SHA-256 of a code object's behaviour: bytecode, constants, names, nested code."""
    digest = _code_digests.get(code)
    if digest is not None:
        return digest
    h = hashlib.sha256()
    h.update(repr((sys.version_info[:2], code.co_argcount, code.co_kwonlyargcount)).encode())
    h.update(repr((code.co_posonlyargcount, code.co_flags & 0xFF)).encode())
    h.update(code.co_code)
    h.update(repr((code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)).encode())
    for const in code.co_consts:
        h.update(_const_form(const).encode() + b"\x00")
    digest = h.hexdigest()
    with _code_lock:
        if len(_code_digests) > 50_000:
            _code_digests.clear()
        _code_digests[code] = digest
    return digest


def _const_form(const: Any) -> str:
    """A constant's text, the same in every process (frozenset order follows string hashing,
    which differs per process)."""
    if isinstance(const, types.CodeType):
        return "code:" + code_digest(const)
    if isinstance(const, tuple):
        return "(" + ",".join(_const_form(c) for c in const) + ")"
    if isinstance(const, frozenset):
        return "{" + ",".join(sorted(_const_form(c) for c in const)) + "}"
    return f"{type(const).__name__}:{const!r}"


def safe_repr(value: Any) -> str:
    """``repr`` without memory addresses (they differ per process)."""
    return _ADDRESS.sub("", repr(value))


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _all_code(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _all_code(const)


#: Methods that change a container in place: a global or closure value the function calls
#: them on is its own state (a call log), not an input.
MUTATORS = frozenset(
    {
        "append", "extend", "insert", "pop", "popleft", "appendleft", "remove", "clear",
        "add", "discard", "update", "setdefault", "popitem", "sort", "reverse",
        "__setitem__", "__delitem__", "write", "put", "put_nowait",
    }
)  # fmt: skip
_LOADS = ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF")


@functools.lru_cache(maxsize=4096)
def code_names(code: types.CodeType) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """``(globals read, globals written, closure names written)`` by ``code`` and nested code.

    Written means rebound (``global n; n += 1``, ``nonlocal n``) or changed in place through a
    mutating method (``log.append(x)``), an item or an attribute (``log[k] = v``).
    """
    read: set[str] = set()
    written: set[str] = set()
    cells_written: set[str] = set()
    for c in _all_code(code):
        instructions = list(dis.get_instructions(c))
        for i, ins in enumerate(instructions):
            name = ins.opname
            if name in ("LOAD_GLOBAL", "LOAD_NAME"):
                read.add(str(ins.argval))
            elif name in ("STORE_GLOBAL", "DELETE_GLOBAL"):
                written.add(str(ins.argval))
            elif name in ("STORE_DEREF", "DELETE_DEREF"):
                cells_written.add(str(ins.argval))
            if name in _LOADS and _mutated(instructions, i):
                target = str(ins.argval)
                (cells_written if name.endswith("DEREF") else written).add(target)
    return frozenset(read), frozenset(written), frozenset(cells_written)


def _mutated(instructions: list[dis.Instruction], i: int) -> bool:
    """Whether the value loaded at ``i`` is changed in place right after."""
    nxt = instructions[i + 1] if i + 1 < len(instructions) else None
    if nxt is None:
        return False
    if nxt.opname in ("LOAD_ATTR", "LOAD_METHOD") and str(nxt.argval) in MUTATORS:
        return True
    if nxt.opname in ("STORE_ATTR", "DELETE_ATTR"):
        return True
    after = instructions[i + 2] if i + 2 < len(instructions) else None
    return after is not None and after.opname in ("STORE_SUBSCR", "DELETE_SUBSCR")


@functools.lru_cache(maxsize=4096)
def _attribute_names(code: types.CodeType) -> frozenset[str]:
    names: set[str] = set()
    for c in _all_code(code):
        names.update(c.co_names)
    return frozenset(names)


# -- SDK clients ---------------------------------------------------------------------------


def _sdk_provider(obj: Any) -> str | None:
    module = type(obj).__module__.partition(".")[0]
    return SDK_PACKAGES.get(module)


def sdk_identity(client: Any) -> dict[str, Any]:
    """What about an SDK client changes its answers: never its API key."""
    out: dict[str, Any] = {
        "provider": _sdk_provider(client) or type(client).__module__.partition(".")[0],
        "base_url": str(client.base_url),
    }
    headers = _str_items(getattr(client, "default_headers", None))
    kept = {k.lower(): v for k, v in headers.items() if k.lower() in KEY_HEADERS}
    if kept:
        out["headers"] = kept
    query = _str_items(getattr(client, "default_query", None))
    if query:
        out["query"] = query
    version = getattr(client, "_api_version", None)
    if isinstance(version, str):
        out["api_version"] = version
    return out


def _str_items(mapping: Any) -> dict[str, str]:
    if not isinstance(mapping, dict):
        return {}
    return {str(k): str(v) for k, v in mapping.items() if isinstance(v, (str, int, float))}


def sdk_client_of(obj: Any) -> Any:
    """The SDK client ``obj`` is, or the one behind an SDK resource; else ``None``."""
    if _sdk_provider(obj) is None:
        return None
    if hasattr(obj, "base_url") and hasattr(obj, "default_headers"):
        return obj
    inner = getattr(obj, "_client", None)
    if inner is not None and hasattr(inner, "base_url") and hasattr(inner, "default_headers"):
        return inner
    return None


def _module_client(module: types.ModuleType) -> dict[str, Any]:
    """The module-level client settings of an SDK module (``openai.base_url = ...`` then
    ``openai.chat.completions.create``): every annotated module setting with a plain value,
    credentials (``*key*``, ``*token*``, ``*secret*``) and the client object left out."""
    out: dict[str, Any] = {}
    for name in sorted(getattr(module, "__annotations__", {})):
        low = name.lower()
        if name.startswith("_") or any(word in low for word in ("key", "token", "secret")):
            continue
        value = getattr(module, name, None)
        if value is None:
            continue
        if name == "default_headers":
            headers = _str_items(value)
            kept = {k.lower(): v for k, v in headers.items() if k.lower() in KEY_HEADERS}
            if kept:
                out["headers"] = kept
        elif name == "default_query":
            if query := _str_items(value):
                out["query"] = query
        elif isinstance(value, (str, int, float, bool)) or type(value).__name__ == "URL":
            out[name] = str(value)
    return out


# -- values --------------------------------------------------------------------------------

_REPR_TYPES: tuple[type, ...] = (
    _dt.datetime,
    _dt.date,
    _dt.time,
    _dt.timedelta,
    _dt.timezone,
    decimal.Decimal,
    uuid.UUID,
    pathlib.PurePath,
    fractions.Fraction,
    complex,
    range,
    slice,
)
_NEUTRAL_TYPES: tuple[type, ...] = tuple(
    t
    for t in (
        type(threading.Lock()),
        type(threading.RLock()),
        threading.Event,
        threading.Condition,
        threading.Semaphore,
        logging.Handler,
        logging.Filter,
    )
    if isinstance(t, type)
)
_BUILTIN_CALLABLES = (
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)
_SKIP_CLASS_ATTRS = frozenset(
    {"__dict__", "__weakref__", "__module__", "__qualname__", "__slots__", "__annotations__"}
)


def type_path(t: type) -> str:
    return f"{t.__module__}:{t.__qualname__}"


class Canonicalizer:
    """Turns values into a JSON-able form in which different values stay different.

    One instance per key computation: it tracks cycles (a value met again on its own path
    becomes a back-reference) and a node budget. When it keys a function it also records
    *watches* (where each global and closure value was read from), so the caller can tell later
    whether a name was rebound.
    """

    def __init__(self, ignore: frozenset[str] = frozenset(), *, ordered: bool = True) -> None:
        self.ignore = ignore
        #: Dicts keep their insertion order (a prompt built by iterating one depends on it);
        #: ``False`` for what becomes a JSON request body, where order means nothing.
        self.ordered = ordered
        self.nodes = 0
        self.stack: dict[int, int] = {}
        self.watches: list[tuple[Any, str, Any]] = []
        self.functions: dict[int, int] = {}

    # -- entry ---------------------------------------------------------------------------------

    def value(self, value: Any, path: str) -> Any:
        t = type(value)
        if value is None or t is bool or t is str:
            return value
        if t is int:
            return value if -_INT_LIMIT < value < _INT_LIMIT else {"int": str(value)}
        if t is float:
            return value if math.isfinite(value) else {"float": repr(value)}
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise Unkeyable(path, f"more than {_MAX_NODES} values to key")
        oid = id(value)
        if oid in self.stack:
            return {"ref": self.stack[oid]}
        if len(self.stack) >= _MAX_DEPTH:
            raise Unkeyable(path, f"nested deeper than {_MAX_DEPTH}")
        self.stack[oid] = len(self.stack)
        try:
            return self._value(value, t, path)
        finally:
            del self.stack[oid]

    def _value(self, value: Any, t: type, path: str) -> Any:
        if t is list or t is tuple:
            return {t.__name__: [self.value(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if t is dict:
            return self._mapping(value, path)
        if t is set or t is frozenset:
            items = sorted(self._json(self.value(v, f"{path} item")) for v in value)
            return {t.__name__: items}
        if t is bytes or t is bytearray:
            return {t.__name__: bytes(value).hex()}
        if isinstance(value, enum.Enum):
            return {"enum": type_path(t), "name": value.name}
        if isinstance(value, (*_REPR_TYPES, re.Pattern)):
            return {"repr": type_path(t), "v": repr(value)}
        if isinstance(value, types.ModuleType):
            return self._module(value, path)
        if isinstance(value, type):
            return self._class(value, path)
        wrapped = _cached_function(value)
        if wrapped is not None:
            return {"cached": self.value(wrapped, path)}
        if isinstance(value, types.FunctionType):
            return self.function(value, path)
        if isinstance(value, types.MethodType):
            return {
                "method": self.value(value.__func__, path),
                "self": self.value(value.__self__, f"{path}.__self__"),
            }
        if isinstance(value, _BUILTIN_CALLABLES):
            return self._builtin(value, path)
        if isinstance(value, functools.partial):
            return {
                "partial": self.value(value.func, f"{path}.func"),
                "args": self.value(value.args, f"{path}.args"),
                "kw": self.value(value.keywords, f"{path}.keywords"),
            }
        client = sdk_client_of(value)
        if client is not None:
            node: dict[str, Any] = {"sdk": sdk_identity(client)}
            if client is not value:
                node["resource"] = type_path(t)
            return node
        if isinstance(value, (logging.Logger, logging.LoggerAdapter)):
            return {"logger": getattr(value, "name", None) or type_path(t)}
        if isinstance(value, _NEUTRAL_TYPES):
            return {"neutral": type_path(t)}
        if isinstance(value, (str, int, float, bytes)):  # subclasses (not enums)
            base: Any = next(b for b in (str, int, float, bytes) if isinstance(value, b))
            return {
                "sub": type_path(t),
                "v": self.value(base(value), path),
                **self._state(value, path),
            }
        if isinstance(value, (list, tuple, dict, set, frozenset)):  # subclasses
            return {
                "sub": type_path(t),
                "v": self._container(value, path),
                **self._state(value, path),
            }
        numpy_form = _numpy(value)
        if numpy_form is not None:
            return numpy_form
        if _is_pydantic(value):
            return self._pydantic(value, t, path)
        if hasattr(value, "__dict__") or hasattr(t, "__slots__"):
            if not _plain_object_type(t):
                raise Unkeyable(path, type_path(t))
            return {
                "obj": type_path(t),
                "cls": self._class_body(t, path),
                **self._state(value, path),
            }
        raise Unkeyable(path, type_path(t))

    # -- pieces ----------------------------------------------------------------------------------

    def _json(self, node: Any) -> str:
        return orjson.dumps(node, option=orjson.OPT_SORT_KEYS).decode()

    def _mapping(self, value: dict[Any, Any], path: str) -> Any:
        if all(type(k) is str for k in value):
            if self.ordered:
                return {"dict": [[k, self.value(v, f"{path}[{k!r}]")] for k, v in value.items()]}
            return {"dict": {k: self.value(v, f"{path}[{k!r}]") for k, v in value.items()}}
        pairs = [
            (self._json(self.value(k, f"{path} key")), self.value(v, f"{path}[{k!r}]"))
            for k, v in value.items()
        ]
        return {"map": [list(p) for p in (pairs if self.ordered else sorted(pairs))]}

    def _container(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return self._mapping(dict(value), path)
        if isinstance(value, (set, frozenset)):
            return sorted(self._json(self.value(v, f"{path} item")) for v in value)
        return [self.value(v, f"{path}[{i}]") for i, v in enumerate(value)]

    def _state(self, value: Any, path: str) -> dict[str, Any]:
        """An object's instance attributes (``__dict__`` and slots)."""
        out: dict[str, Any] = {}
        attrs = getattr(value, "__dict__", None)
        if isinstance(attrs, dict) and attrs:
            out["attrs"] = {
                str(k): self.value(v, f"{path}.{k}") for k, v in sorted(attrs.items(), key=_first)
            }
        slots: dict[str, Any] = {}
        for cls in type(value).__mro__:
            names = cls.__dict__.get("__slots__", ())
            for name in (names,) if isinstance(names, str) else names:
                if name in ("__dict__", "__weakref__") or name in slots:
                    continue
                try:
                    slots[name] = self.value(getattr(value, name), f"{path}.{name}")
                except AttributeError:
                    slots[name] = {"unset": True}
        if slots:
            out["slots"] = slots
        if isinstance(value, dict) and hasattr(value, "default_factory"):
            out["factory"] = self.value(value.default_factory, f"{path}.default_factory")
        return out

    def _pydantic(self, value: Any, t: type, path: str) -> Any:
        node: dict[str, Any] = {"model": type_path(t), "cls": self._class_body(t, path)}
        node["fields"] = self.value(dict(value.__dict__), path)
        for part in ("__pydantic_extra__", "__pydantic_private__"):
            extra = getattr(value, part, None)
            if extra:
                node[part.strip("_")] = self.value(dict(extra), f"{path}.{part}")
        return node

    def _module(self, module: types.ModuleType, path: str) -> Any:
        node: dict[str, Any] = {"module": module.__name__}
        if module.__name__ in SDK_PACKAGES:
            node["client"] = _module_client(module)
        return node

    def module_attributes(
        self, module: types.ModuleType, names: frozenset[str], path: str
    ) -> dict[str, Any]:
        """The attributes of a user module that a function's code may read (``config.MODEL``)."""
        out: dict[str, Any] = {}
        for name in sorted(names):
            if name.startswith("__") or name in self.ignore:
                continue
            try:
                attr = module.__dict__[name]
            except KeyError:
                continue
            if isinstance(attr, types.ModuleType):
                out[name] = {"module": attr.__name__}
                continue
            self.watches.append((module.__dict__, name, attr))
            out[name] = self.value(attr, f"{path}.{name}")
        return out

    def _builtin(self, value: Any, path: str) -> Any:
        owner = getattr(value, "__self__", None)
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", "?")
        objclass = getattr(value, "__objclass__", None)
        module = getattr(value, "__module__", None) or getattr(objclass, "__module__", "?")
        node: dict[str, Any] = {"builtin": f"{module}:{name}"}
        if owner is not None and not isinstance(owner, (types.ModuleType, type)):
            node["self"] = self.value(owner, f"{path}.__self__")
        return node

    def _class(self, cls: type, path: str) -> Any:
        return {"class": type_path(cls), "body": self._class_body(cls, path)}

    def _class_body(self, cls: type, path: str) -> Any:
        """A user class's own definition (methods' code, fields, class data) as a digest;
        ``None`` for classes from Python or installed packages (their version fixes them).

        Kept per class while none of its attributes is rebound (``Bot.persona = ...`` is seen).
        """
        if not _is_user_code(cls):
            return None
        stamp = tuple(map(id, cls.__dict__.values()))
        known = _class_digests.get(cls)
        if known is not None and known[0] == stamp:
            return known[1]
        building = _building_classes()
        if cls in building:
            return {"classref": type_path(cls)}
        building.add(cls)
        try:
            body = Canonicalizer(self.ignore)._class_definition(cls, path)
        finally:
            building.discard(cls)
        digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        with contextlib.suppress(TypeError):  # a class that cannot be weakly referenced
            _class_digests[cls] = (stamp, digest)
        return digest

    def _class_definition(self, cls: type, path: str) -> Any:
        oid = id(cls)
        self.stack[oid] = len(self.stack)
        try:
            body: dict[str, Any] = {}
            fields = getattr(cls, "model_fields", None)
            if _is_pydantic_class(cls) and isinstance(fields, dict):
                body["fields"] = {
                    name: [
                        safe_repr(f.annotation),
                        self._quiet(f.default, path),
                        self._quiet(f.default_factory, path),
                    ]
                    for name, f in fields.items()
                }
            annotations = inspect.get_annotations(cls)
            if annotations:
                body["annotations"] = {str(k): safe_repr(v) for k, v in annotations.items()}
            for name, attr in sorted(cls.__dict__.items(), key=_first):
                if name in _SKIP_CLASS_ATTRS or name.startswith(("__pydantic", "_abc_")):
                    continue
                if name.startswith("model_") and _is_pydantic_class(cls):
                    continue
                body[name] = self._class_attr(attr, f"{path}.{cls.__qualname__}.{name}")
            body["bases"] = [self._class(b, path) for b in cls.__bases__ if b is not object]
            return body
        finally:
            del self.stack[oid]

    def _class_attr(self, attr: Any, path: str) -> Any:
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if isinstance(attr, property):
            return [self._class_attr(f, path) for f in (attr.fget, attr.fset, attr.fdel) if f]
        if isinstance(attr, types.FunctionType):
            return {"code": code_digest(attr.__code__), "name": attr.__qualname__}
        if (
            isinstance(attr, dict)
            and attr
            and all(isinstance(v, dataclasses.Field) for v in attr.values())
        ):  # __dataclass_fields__
            return {
                k: [
                    safe_repr(f.type),
                    self._quiet(f.default, path),
                    self._quiet(f.default_factory, path),
                    str(getattr(f, "_field_type", "")),
                ]
                for k, f in attr.items()
            }
        return self._quiet(attr, path)

    def _quiet(self, value: Any, path: str) -> Any:
        """Class-level data of a user class: keyed when it can be; machinery (descriptors,
        caches, sentinels) by its type only."""
        if value is dataclasses.MISSING:
            return "MISSING"
        try:
            return self.value(value, path)
        except Unkeyable:
            return {"type": type_path(type(value))}

    # -- functions ------------------------------------------------------------------------------

    def function(self, fn: types.FunctionType, path: str, *, top: bool = False) -> Any:
        """A function: its name and code; for user code also the globals, closure and defaults
        it reads (recorded as watches), functions it calls keyed the same way."""
        oid = id(fn)
        if oid in self.functions:
            return {"fnref": self.functions[oid]}
        self.functions[oid] = len(self.functions)
        code = fn.__code__
        node: dict[str, Any] = {
            "fn": f"{getattr(fn, '__module__', None)}:{fn.__qualname__}",
            "code": code_digest(code),
        }
        if not _is_user_code(fn):  # an installed package's: its version fixes the rest
            version = package_version(getattr(fn, "__module__", None))
            if version:
                node["version"] = version
            return node
        read, written, cells_written = code_names(code)
        skip = self.ignore if top else frozenset()
        namespace = fn.__globals__
        builtins_ns = namespace.get("__builtins__", {})
        if isinstance(builtins_ns, types.ModuleType):
            builtins_ns = builtins_ns.__dict__
        attr_names = _attribute_names(code)
        globals_node: dict[str, Any] = {}
        for name in sorted(read | written):
            if name in skip:
                continue
            where = f"global {name!r} of {fn.__qualname__}" if not top else f"global {name!r}"
            if name in namespace:
                value = namespace[name]
                if name in written:  # the function's own state (a counter, a call log)
                    globals_node[name] = {"state": type_path(type(value))}
                    continue
                self.watches.append((namespace, name, value))
                if isinstance(value, types.ModuleType) and _is_user_code(value):
                    globals_node[name] = {
                        "module": value.__name__,
                        "attrs": self.module_attributes(value, attr_names, where),
                    }
                else:
                    globals_node[name] = self.value(value, where)
            elif isinstance(builtins_ns, dict) and name in builtins_ns:
                globals_node[name] = {"builtin": name}
            else:
                globals_node[name] = {"unbound": True}
        if globals_node:
            node["globals"] = globals_node
        cells = fn.__closure__ or ()
        closure_node: dict[str, Any] = {}
        for name, cell in zip(code.co_freevars, cells, strict=False):
            if name in skip:
                continue
            where = f"closure variable {name!r}"
            if not top:
                where += f" of {fn.__qualname__}"
            try:
                value = cell.cell_contents
            except ValueError:
                closure_node[name] = {"empty": True}
                continue
            if name in cells_written:  # the function's own state (a counter, a call log)
                closure_node[name] = {"state": type_path(type(value))}
                continue
            self.watches.append((cell, "", value))
            closure_node[name] = self.value(value, where)
        if closure_node:
            node["closure"] = closure_node
        environment = _environment(code, read, attr_names)
        if environment:
            node["environ"] = environment
        if not top:  # the wrapped function's own defaults are in its bound arguments
            if fn.__defaults__:
                node["defaults"] = self.value(fn.__defaults__, f"defaults of {fn.__qualname__}")
            if fn.__kwdefaults__:
                node["kwdefaults"] = self.value(fn.__kwdefaults__, f"defaults of {fn.__qualname__}")
        return node


_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_CREDENTIAL_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")


def _environment(
    code: types.CodeType, read: frozenset[str], attr_names: frozenset[str]
) -> dict[str, str | None]:
    """Environment variables the code reads by a constant name (``os.environ["MODEL"]``,
    ``os.getenv("MODEL")``): their values now. Credentials (``*_KEY``, ``*_TOKEN``...) stay
    out, like API keys everywhere else."""
    names = read | attr_names
    if not ({"environ", "getenv"} & names):
        return {}
    out: dict[str, str | None] = {}
    for c in _all_code(code):
        for const in c.co_consts:
            if not isinstance(const, str) or not _ENV_NAME.match(const):
                continue
            if any(word in const for word in _CREDENTIAL_WORDS):
                continue
            out[const] = os.environ.get(const)
    return out


_class_digests: weakref.WeakKeyDictionary[type, tuple[tuple[int, ...], str]] = (
    weakref.WeakKeyDictionary()
)
_local = threading.local()


def _building_classes() -> set[type]:
    """Classes whose definition this thread is keying now (a class attribute may lead back)."""
    building: set[type] | None = getattr(_local, "classes", None)
    if building is None:
        building = _local.classes = set()
    return building


def _first(item: tuple[Any, Any]) -> str:
    return str(item[0])


def _cached_function(value: Any) -> Any:
    """The function inside one of our cached wrappers (it has ``__cache_key__``)."""
    if callable(value) and hasattr(value, _CACHE_KEY_ATTR) and hasattr(value, "cache_wrapper"):
        return getattr(value, "__wrapped__", None)
    return None


def _is_pydantic(value: Any) -> bool:
    module = sys.modules.get("pydantic")
    base = getattr(module, "BaseModel", None) if module is not None else None
    return base is not None and isinstance(value, base)


def _is_pydantic_class(cls: type) -> bool:
    module = sys.modules.get("pydantic")
    base = getattr(module, "BaseModel", None) if module is not None else None
    return base is not None and issubclass(cls, base)


@functools.lru_cache(maxsize=1024)
def _plain_object_type(t: type) -> bool:
    """A class written in Python whose instances are their attributes (no C-level state).

    A class from a C extension module (a socket, a database connection) keeps its state where
    no attribute shows it, so it has no key form.
    """
    return all(cls is object or _python_class(cls) for cls in t.__mro__)


def _python_class(cls: type) -> bool:
    if not _python_module(cls.__module__):
        return False
    for name, attr in cls.__dict__.items():  # C types show their methods as descriptors
        if isinstance(attr, _C_DESCRIPTORS) and name not in ("__dict__", "__weakref__"):
            return False
    return True


_C_DESCRIPTORS = (
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
)


@functools.lru_cache(maxsize=1024)
def _python_module(name: str) -> bool:
    if name == "builtins" or name in sys.builtin_module_names:
        return False
    module = sys.modules.get(name)
    filename = getattr(module, "__file__", None) if module is not None else None
    if filename is None:
        return True  # __main__ run from stdin, a class made at run time
    return str(filename).endswith((".py", ".pyc"))


def _numpy(value: Any) -> Any:
    t = type(value)
    if t.__module__.partition(".")[0] != "numpy" or not hasattr(value, "tobytes"):
        return None
    try:
        raw = value.tobytes()
        dtype, shape = str(value.dtype), list(getattr(value, "shape", ()))
    except Exception:
        return None
    return {
        "numpy": type_path(t),
        "dtype": dtype,
        "shape": shape,
        "sha": hashlib.sha256(raw).hexdigest(),
    }


def canonical(value: Any, path: str = "value") -> Any:
    """The key form of one value; raises ``Unkeyable``."""
    return Canonicalizer().value(value, path)


# -- a wrapped function's identity --------------------------------------------------------------


class FunctionIdentity:
    """The wrapped function's code and the data it reads, as one digest.

    Computed at the first call (so names defined after the decorator are seen) and again
    whenever a global or closure name it reads has been rebound since. ``ignore`` names
    globals or closure variables to leave out. ``code_only`` keys the code and nothing it
    reads (``cached(key=...)``: the user's key function stands for the rest).
    """

    def __init__(
        self, func: Callable[..., Any], ignore: frozenset[str], *, code_only: bool = False
    ) -> None:
        self.func = func
        self.ignore = ignore
        self.code_only = code_only
        self._digest: str | None = None
        self._error: Unkeyable | None = None
        self._watches: list[tuple[Any, str, Any]] = []
        self._lock = threading.Lock()

    def digest(self) -> str:
        """The identity digest; raises ``Unkeyable`` (each time) when it has no key form."""
        if self._digest is None or self._stale():
            with self._lock:
                if self._digest is None or self._stale():
                    self._compute()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest

    def _stale(self) -> bool:
        for holder, name, value in self._watches:
            if isinstance(holder, types.CellType):
                try:
                    current = holder.cell_contents
                except ValueError:
                    return True
            else:
                current = holder.get(name, _MISSING)
            if current is not value:
                return True
        return False

    def _compute(self) -> None:
        canon = Canonicalizer(self.ignore)
        self._error = None
        try:
            node = self._identity(canon, self.func)
        except Unkeyable as exc:
            self._error = exc
            node = None
        self._watches = canon.watches
        data = orjson.dumps(node, option=orjson.OPT_SORT_KEYS)
        self._digest = hashlib.sha256(data).hexdigest()

    def _identity(self, canon: Canonicalizer, func: Any) -> Any:
        target = func
        if isinstance(target, types.MethodType):
            owner = target.__self__
            inner = target.__func__
            if sdk_client_of(owner) is not None:  # SDK methods: name only (keys like the proxy's)
                return {"sdk_method": inner.__qualname__}
            return {"method": self._identity(canon, inner)}
        if isinstance(target, functools.partial):
            if self.code_only:  # the key= function stands for the arguments
                return {"partial": self._identity(canon, target.func)}
            return {
                "partial": self._identity(canon, target.func),
                "args": canon.value(target.args, "the partial's arguments"),
                "kw": canon.value(target.keywords, "the partial's keywords"),
            }
        layers = _layers(target)
        inner_fn = layers[-1]
        if isinstance(inner_fn, types.FunctionType):
            if self.code_only:
                return {"fn": inner_fn.__qualname__, "code": code_digest(inner_fn.__code__)}
            node = canon.function(inner_fn, "function", top=True)
            # decorators written as functions around it (functools.wraps): their code and data
            outer = [layer for layer in layers[:-1] if isinstance(layer, types.FunctionType)]
            if outer:
                node["decorated"] = [canon.value(layer, "decorator") for layer in outer]
            return node
        # a builtin, a class, a callable object (its class and state); else refused
        return {"callable": canon.value(target, "the wrapped callable")}


def _layers(func: Any) -> list[Any]:
    """``func`` and the callables it wraps (``__wrapped__``), outermost first."""
    layers = [func]
    while hasattr(layers[-1], "__wrapped__") and len(layers) < 100:
        inner = layers[-1].__wrapped__
        if any(inner is layer for layer in layers):
            break
        layers.append(inner)
    return layers


def inspect_unwrap(func: Any) -> Any:
    """``func`` without ``functools.wraps`` layers (a decorator's wrapper keys its target)."""
    seen = set()
    while hasattr(func, "__wrapped__") and id(func) not in seen:
        seen.add(id(func))
        func = func.__wrapped__
    return func


_MISSING = object()
