"""Cache keys: the SPEC's promises, and two properties checked over generated nested JSON.

1. The same request with dict keys in any order, at every depth, has the same key.
2. Changing any value that is not excluded from the key, at any depth, or adding a field,
   changes the key.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llm_cache.cache.key_generator import (
    CONTROL_PREFIX,
    CREDENTIAL_FIELDS,
    EXCLUDED_FIELDS,
    generate_cache_key,
    key_for,
    normalize_request_params,
)

HEX64 = re.compile(r"[0-9a-f]{64}")
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]

# -- SPEC examples --------------------------------------------------------------------------------


def test_key_is_64_lowercase_hex() -> None:
    key = generate_cache_key("openai", "gpt-4o", MESSAGES, temperature=0.2, max_tokens=10)
    assert HEX64.fullmatch(key)


def test_same_request_same_key_and_deterministic() -> None:
    a = generate_cache_key("openai", "gpt-4o", MESSAGES, temperature=0.2, seed=1)
    b = generate_cache_key("openai", "gpt-4o", copy.deepcopy(MESSAGES), seed=1, temperature=0.2)
    assert a == b


def test_string_messages_mean_one_user_message() -> None:
    assert generate_cache_key("openai", "gpt-4o", "hello") == generate_cache_key(
        "openai", "gpt-4o", [{"role": "user", "content": "hello"}]
    )
    assert generate_cache_key("openai", "gpt-4o", "hello") != generate_cache_key(
        "openai", "gpt-4o", [{"role": "system", "content": "hello"}]
    )


def test_provider_is_case_insensitive_but_part_of_the_key() -> None:
    key = generate_cache_key("openai", "m", "hi")
    assert generate_cache_key("OpenAI", "m", "hi") == key
    assert generate_cache_key("OPENAI", "m", "hi") == key
    assert generate_cache_key("anthropic", "m", "hi") != key


@pytest.mark.parametrize(
    ("field", "value"),
    [("model", "gpt-4o-mini"), ("temperature", 0.3), ("max_tokens", 11), ("seed", 7)],
)
def test_every_parameter_changes_the_key(field: str, value: Any) -> None:
    base = {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 10, "seed": 1}
    changed = {**base, field: value}
    assert generate_cache_key("openai", messages="hi", **base) != generate_cache_key(
        "openai", messages="hi", **changed
    )


def test_none_temperature_means_not_sent_but_zero_is_a_value() -> None:
    plain = generate_cache_key("openai", "m", "hi")
    assert generate_cache_key("openai", "m", "hi", temperature=None, max_tokens=None) == plain
    assert generate_cache_key("openai", "m", "hi", temperature=0) != plain
    assert generate_cache_key("openai", "m", "hi", max_tokens=0) != plain


def test_normalize_request_params_drops_only_excluded_fields() -> None:
    request = {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "stream": True,
        "user": "u-1",
        "metadata": {"trace": "x"},
        "_cache_bypass": True,
        "_cache_ttl": 5,
        "api_key": "sk-secret",
        "some_future_field": {"nested": [1, 2]},
        "tools": [{"type": "function", "function": {"name": "f", "user": "nested stays"}}],
    }
    normalized = normalize_request_params(request)
    assert normalized == {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "some_future_field": {"nested": [1, 2]},
        "tools": [{"type": "function", "function": {"name": "f", "user": "nested stays"}}],
    }
    assert request["stream"] is True  # the input is not modified


def test_excluded_fields_do_not_change_the_key() -> None:
    plain = generate_cache_key("openai", "m", MESSAGES, seed=1)
    assert plain == generate_cache_key(
        "openai",
        "m",
        MESSAGES,
        seed=1,
        stream=True,
        user="someone",
        metadata={"a": 1},
        _cache_bypass=True,
        api_key="sk-secret",
    )


def test_unknown_fields_and_nested_excluded_names_are_content() -> None:
    plain = generate_cache_key("openai", "m", MESSAGES)
    assert generate_cache_key("openai", "m", MESSAGES, brand_new_param=1) != plain
    nested = [{"role": "user", "content": "hi", "stream": True}]
    assert generate_cache_key("openai", "m", nested) != generate_cache_key(
        "openai", "m", [{"role": "user", "content": "hi"}]
    )


def test_json_types_are_not_confused() -> None:
    assert len({key_for(v) for v in (1, 1.0, True, "1", [1], {"1": 1}, None, "null")}) == 8
    assert key_for([1, 2]) != key_for([2, 1])


@pytest.mark.parametrize(
    ("special", "lookalike"),
    [
        (float("inf"), {"__float__": "inf"}),
        ((1, 2), {"__tuple__": [1, 2]}),
        (b"ab", {"__bytes__": "6162"}),
    ],
)
def test_tagged_forms_do_not_collide_with_real_dicts(special: Any, lookalike: Any) -> None:
    assert key_for({"a": special}) != key_for({"a": lookalike})


def test_integers_beyond_64_bits_get_a_key() -> None:
    assert key_for({"a": 2**70}) != key_for({"a": 2**71})
    assert key_for(2**70) != key_for(str(2**70))


@pytest.mark.parametrize(
    ("special", "lookalike"),
    [
        ((1, 2), [1, 2]),
        ((1, 2), {"__tuple__": [1, 2]}),
        ({"x": (1,)}, {"__dict__": {"x": {"__tuple__": [1]}}}),
        ({"x": (1,)}, {"x": {"__tuple__": [1]}}),
        ([b"a", {"k": 1}], [{"__bytes__": "61"}, {"__dict__": {"k": 1}}]),
        ({1: "a"}, {"1": "a"}),
    ],
)
def test_values_that_need_tags_never_collide_at_any_depth(special: Any, lookalike: Any) -> None:
    assert key_for(special) != key_for(lookalike)
    assert key_for({"v": special}) != key_for({"v": lookalike})


# -- properties -----------------------------------------------------------------------------------

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
#: generate_cache_key's own parameter names: a body field of one of these names cannot be passed
#: through its ``**kwargs`` (Python binds it to the parameter), so generated fields avoid them.
EXPLICIT = {"provider", "model", "messages", "temperature", "max_tokens"}


def is_top_level_excluded(name: str) -> bool:
    return (
        name in EXCLUDED_FIELDS
        or name.lower() in CREDENTIAL_FIELDS
        or name.startswith(CONTROL_PREFIX)
    )


FIELD_NAMES = st.text(min_size=1, max_size=10).filter(
    lambda n: n not in EXPLICIT and not is_top_level_excluded(n)
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]), "content": JSON},
    optional={"name": st.text(max_size=8), "tool_calls": JSON},
)
REQUESTS = st.fixed_dictionaries(
    {"model": st.text(min_size=1, max_size=12), "messages": st.lists(MESSAGE, max_size=3)}
).flatmap(
    lambda base: st.dictionaries(FIELD_NAMES, JSON, min_size=1, max_size=5).map(
        lambda extra: {**base, **extra}
    )
)


def key_of(request: dict[str, Any]) -> str:
    body = dict(request)
    return generate_cache_key("openai", body.pop("model"), body.pop("messages"), **body)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same value with the insertion order of every dict shuffled, at every depth."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


def paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, node) below the root: leaves and containers alike."""
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for k, child in children:
        yield (*path, k), child
        if isinstance(child, (dict, list)):
            yield from paths(child, (*path, k))


def replaced(root: Any, path: tuple[Any, ...], new: Any) -> Any:
    root = copy.deepcopy(root)
    node = root
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = new
    return root


def same(a: Any, b: Any) -> bool:
    """Equal with equal types at every depth (so 1 vs 1.0 and 0.0 vs -0.0 count as changes)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


def near_misses(value: Any) -> list[Any]:
    """Values a sloppy canonical form could confuse with ``value`` (plus generic ones)."""
    out: list[Any] = []
    if isinstance(value, bool):
        out += [not value, int(value), str(value).lower()]
    elif isinstance(value, int):
        out += [value + 1, -value, float(value), str(value)]
    elif isinstance(value, float):
        out += [-value, value * 2 + 1, str(value), int(value) if abs(value) < 2**63 else 1]
    elif isinstance(value, str):
        out += [value + " ", value[:-1], value.upper(), f'"{value}"', value.encode().hex()]
    elif isinstance(value, list):
        out += [value[:-1], value[::-1], [*value, None], {"0": value}]
    elif isinstance(value, dict):
        out += [list(value), list(value.values()), {k + " ": v for k, v in value.items()}]
    return [*out, None, 0, 0.0, -0.0, "", False, [], {}, [value], {"": value}]


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(request=REQUESTS, seed=st.integers(0, 2**32 - 1))
def test_key_ignores_dict_order_at_every_depth(request: dict[str, Any], seed: int) -> None:
    assert key_of(shuffled(request, random.Random(seed))) == key_of(request)


@settings(PROPERTY_SETTINGS, max_examples=400)
@given(request=REQUESTS, data=st.data())
def test_changing_any_value_changes_the_key(request: dict[str, Any], data: st.DataObject) -> None:
    # model and roles are plain strings, covered above; aim at the generated JSON
    candidates = [(p, n) for p, n in paths(request) if p[0] != "model" and p[-1] != "role"]
    leaves = [(p, n) for p, n in candidates if not isinstance(n, (dict, list))]
    pool = leaves if leaves and data.draw(st.integers(0, 3), label="leaf?") else candidates[1:]
    assume(pool)
    path, old = data.draw(st.sampled_from(pool), label="path")
    near = st.sampled_from(near_misses(old))
    new = data.draw(st.one_of(near, near, JSON), label="new value")
    assume(not same(old, new))
    assert key_of(replaced(request, path, new)) != key_of(request), (path, old, new)


@PROPERTY_SETTINGS
@given(request=REQUESTS, data=st.data())
def test_adding_a_field_changes_the_key(request: dict[str, Any], data: st.DataObject) -> None:
    containers = [((), request)] + [(p, n) for p, n in paths(request) if isinstance(n, dict)]
    path, target = data.draw(st.sampled_from(containers), label="dict")
    names = FIELD_NAMES if path == () else st.text(max_size=8)
    name = data.draw(names.filter(lambda n: n not in target), label="field")
    value = data.draw(JSON, label="value")
    changed = copy.deepcopy(request)
    node = changed
    for k in path:
        node = node[k]
    node[name] = value
    assert key_of(changed) != key_of(request), (path, name, value)


@PROPERTY_SETTINGS
@given(
    request=REQUESTS,
    excluded=st.dictionaries(
        st.sampled_from([*sorted(EXCLUDED_FIELDS), "_cache_bypass", "_cache_ttl", "api_key"]),
        JSON,
    ),
)
def test_excluded_top_level_fields_never_change_the_key(
    request: dict[str, Any], excluded: dict[str, Any]
) -> None:
    assert key_of({**request, **excluded}) == key_of(request)
