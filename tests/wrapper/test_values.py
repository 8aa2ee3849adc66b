"""Stored forms of wrapped functions' return values: tagged JSON, round trips, safety."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import sys
import uuid
from collections import namedtuple
from typing import Any

import orjson
import pytest
from anthropic.types import Message
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, Field, PrivateAttr

from llm_cache.wrapper.values import UnstorableValue, dump, dump_checked, load, resolve_class

Point = namedtuple("Point", "x y")


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    tags: tuple[str, ...]
    inner: Any = None


class Answer(BaseModel):
    text: str
    score: float = 0.0
    sources: list[str] = Field(default_factory=list)


class Stamped(BaseModel):
    text: str
    token: str = Field(default_factory=lambda: uuid.uuid4().hex)


def roundtrip(value: Any) -> Any:
    data = dump_checked(value)
    return load(orjson.loads(orjson.dumps(data)))  # through real JSON bytes


CHAT_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi", "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        2**70,
        -(2**70),
        1.5,
        float("inf"),
        "text",
        [1, "a", None],
        {"a": [1, {"b": 2}]},
        (1, (2, "x")),
        {1: "int key", (1, 2): "tuple key"},
        {"__t": "tuple", "v": [1]},  # a user dict that looks like a tag stays a dict
        {1, 2, 3},
        frozenset({"a"}),
        b"\x00\xffbytes",
        dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
        dt.date(2024, 5, 1),
        dt.timedelta(days=1, seconds=5),
        decimal.Decimal("1.10"),
        uuid.UUID(int=5),
        Point(1, "y"),
        Frozen("f", ("a", "b"), inner=Frozen("g", ())),
        Answer(text="hello", sources=["x"]),
        [Answer(text="a"), {"k": (Answer(text="b"),)}],
    ],
)
def test_round_trip_gives_an_equal_value_of_the_same_type(value: Any) -> None:
    restored = roundtrip(value)
    assert restored == value
    assert type(restored) is type(value)


def test_nested_types_survive() -> None:
    restored = roundtrip({"p": [Point(1, 2)], "f": Frozen("x", ("t",))})
    assert type(restored["p"][0]) is Point
    assert type(restored["f"]) is Frozen
    assert type(restored["f"].tags) is tuple


def test_sdk_models_come_back_as_the_same_class_with_the_same_json() -> None:
    completion = ChatCompletion.model_validate(CHAT_COMPLETION)
    restored = roundtrip(completion)
    assert type(restored) is ChatCompletion
    assert type(restored.choices[0].message) is type(completion.choices[0].message)
    assert restored == completion
    assert restored.to_json() == completion.to_json()  # only the fields that were set
    assert restored.model_fields_set == completion.model_fields_set


def test_other_sdk_response_types() -> None:
    message = Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    )
    embeddings = CreateEmbeddingResponse.model_validate(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
    )
    for value in (message, embeddings):
        restored = roundtrip(value)
        assert type(restored) is type(value)
        assert restored == value


def test_sdk_model_built_leniently_is_rebuilt_with_construct() -> None:
    data = {
        **CHAT_COMPLETION,
        "choices": [{**CHAT_COMPLETION["choices"][0], "finish_reason": "new_reason"}],
    }
    completion = ChatCompletion.construct(**data)  # what the SDK does: no validation
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError
        ChatCompletion.model_validate(completion.model_dump(mode="json"))
    stored = dump_checked(completion)
    assert stored["lax"] == 1
    restored = load(stored)
    assert restored == completion
    assert restored.choices[0].finish_reason == "new_reason"


def test_a_default_factory_model_is_stored_with_every_field() -> None:
    value = Stamped(text="x")
    restored = roundtrip(value)
    assert restored.token == value.token
    assert restored == value


class Opaque:
    pass


@pytest.mark.parametrize("value", [Opaque(), [1, Opaque()], {"a": Opaque()}, iter([1]), object()])
def test_values_without_a_safe_form_are_refused(value: Any) -> None:
    with pytest.raises(UnstorableValue):
        dump_checked(value)


def test_nan_does_not_round_trip_equal_and_is_refused() -> None:
    # Storing it would be fine, but equality is the proof the cache returns the same value.
    with pytest.raises(UnstorableValue):
        dump_checked(float("nan"))


def test_only_model_or_dataclass_classes_are_restored() -> None:
    with pytest.raises(ValueError, match="not a pydantic class"):
        load({"__t": "pydantic", "cls": "os:system", "v": {}})
    with pytest.raises(ValueError, match="not a dataclass class"):
        load({"__t": "dataclass", "cls": "subprocess:Popen", "v": {"args": "id"}})
    with pytest.raises(ValueError):
        load({"__t": "pydantic", "cls": "builtins:eval", "v": {}})


def test_a_stored_entry_cannot_make_the_process_import_a_new_package() -> None:
    assert "antigravity" not in sys.modules
    with pytest.raises(ValueError, match="refusing to import"):
        resolve_class("antigravity:Thing", "pydantic")
    assert "antigravity" not in sys.modules


def test_unknown_tags_are_errors() -> None:
    with pytest.raises(ValueError):
        load({"__t": "pickle", "v": "gASV"})


def test_dump_is_plain_json() -> None:
    data = dump({"a": (1, b"x"), "m": Answer(text="t")})
    assert orjson.loads(orjson.dumps(data)) == data


class WithPrivate(BaseModel):
    text: str
    _meta: dict[str, Any] = PrivateAttr(default_factory=dict)


def test_a_model_with_private_state_round_trips_through_json_bytes() -> None:
    value = WithPrivate(text="t")
    value._meta = {"cost": 0.5, "when": dt.date(2024, 1, 2)}
    stored = dump_checked(value)
    assert stored["__t"] == "pydantic_state"
    restored = roundtrip(value)
    assert type(restored) is WithPrivate and restored == value
    assert restored._meta == {"cost": 0.5, "when": dt.date(2024, 1, 2)}


def test_a_run_time_subclass_is_stored_as_its_nearest_importable_base() -> None:
    from pydantic import create_model

    made = create_model("Made", __base__=Answer)  # like instructor's Partial[Answer]
    value = made(text="t", sources=["s"])
    stored = dump_checked(value)
    assert stored["cls"].endswith(":Answer")
    restored = roundtrip(value)
    assert type(restored) is Answer and restored.model_dump() == value.model_dump()
    wider = create_model("Wider", __base__=Answer, extra_field=(int, 0))
    with pytest.raises(UnstorableValue):  # the base cannot carry the new field: refused, not lost
        dump_checked(wider(text="t", extra_field=5))


def test_pydantic_state_restores_only_pydantic_classes() -> None:
    with pytest.raises(ValueError, match="not a pydantic class"):
        load({"__t": "pydantic_state", "cls": "os:system", "v": {}, "set": []})
