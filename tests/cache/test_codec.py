"""The one codec: tagged orjson, zstd above the threshold, anything unreadable is corrupt."""

from __future__ import annotations

import os
import threading

import orjson
import pytest
import zstandard

from llm_cache.cache.codec import COMPRESS_THRESHOLD, CorruptValueError, decode_value, encode_value

VALUE = {"text": "héllo ✓ 🚀", "n": [1, 2.5, None, True], "nested": {"a": {"b": []}}}


def test_round_trip_small_value_is_plain_json() -> None:
    blob = encode_value(VALUE)
    assert blob[:1] == b"j"
    assert orjson.loads(blob[1:]) == VALUE
    assert decode_value(blob) == VALUE


def test_large_compressible_value_uses_zstd() -> None:
    value = {"content": "the same sentence again. " * 1000}
    blob = encode_value(value)
    assert blob[:1] == b"z"
    assert len(blob) < len(orjson.dumps(value)) // 4
    assert zstandard.ZstdDecompressor().decompress(blob[1:]) == orjson.dumps(value)
    assert decode_value(blob) == value


def test_values_at_the_threshold_stay_plain() -> None:
    value = {"c": "x" * (COMPRESS_THRESHOLD - len(b'{"c":""}'))}
    assert len(orjson.dumps(value)) == COMPRESS_THRESHOLD
    assert encode_value(value)[:1] == b"j"


def test_incompressible_large_value_stays_plain() -> None:
    value = {"c": os.urandom(4 * COMPRESS_THRESHOLD).hex()[: 3 * COMPRESS_THRESHOLD]}
    blob = encode_value(value)
    assert decode_value(blob) == value


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"x{}",
        b"j",
        b"j{not json",
        b"j[1, 2]",  # JSON, but not an object
        b'j"text"',
        b"z",
        b"z\x00\x01garbage",
        b"z" + zstandard.ZstdCompressor().compress(b"[1]"),
        encode_value({"c": "y" * 10_000})[:-3],  # truncated zstd frame
    ],
)
def test_corrupt_input_raises_corrupt_value_error(blob: bytes) -> None:
    with pytest.raises(CorruptValueError):
        decode_value(blob)


def test_unencodable_value_raises_type_error() -> None:
    with pytest.raises(TypeError):
        encode_value({"x": object()})


def test_threads_each_get_their_own_zstd_objects() -> None:
    values = [{"t": i, "c": f"thread {i} " * 2000} for i in range(8)]
    errors: list[BaseException] = []

    def work(value: dict[str, object]) -> None:
        try:
            for _ in range(50):
                assert decode_value(encode_value(value)) == value
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
