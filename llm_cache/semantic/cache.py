"""The semantic cache as the engine sees it: ``lookup`` after an exact miss, ``remember`` after
a store. Fail-open: any failure (embedder, index, missing extra) is logged and becomes a miss.

The sequence a front end runs (SPEC "Semantic cache (opt-in)")::

    exact = await engine.lookup(key)
    if exact is None and semantic.applies(mode, headers):
        match = await semantic.lookup(provider, endpoint, body, scope, threshold=per_request)
        if match is not None:
            value = await engine.lookup(match.entry_key)
            if value is None:
                await semantic.forget(match)      # the entry was evicted: a plain miss
            else:
                answer from value with X-Cache-Status: SEMANTIC-HIT, X-Cache-Key:
                match.entry_key, X-Cache-Similarity: format_similarity(match.similarity)
    ... on a miss, after the answer is stored under key:
        await semantic.remember(provider, endpoint, body, scope, key)

``scope`` is every separation the exact key has beyond the body (namespace, tenant, key
headers such as ``anthropic-version``): entries of different scopes never meet.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_cache.semantic.settings import default_threshold

if TYPE_CHECKING:
    from llm_cache.cache.storage import CacheStorage
    from llm_cache.config import Config
    from llm_cache.semantic.embedders import Embedder, EmbeddingsCall, Vectors
    from llm_cache.semantic.index import VectorIndex
    from llm_cache.semantic.judge import Judge

logger = logging.getLogger("llm_cache.semantic")

#: Modes in which a semantic lookup may answer (never offline, record or off).
SEMANTIC_MODES = ("readwrite", "readonly")
HEADER_SWITCH = "x-cache-semantic"
HEADER_THRESHOLD = "x-cache-semantic-threshold"
_LOG_EVERY = 10.0
#: Request headers that carry a credential an upstream embedder may need.
CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
KeyOf = Callable[[Mapping[str, Any]], str]
_CANDIDATES = 5


class SemanticRequestError(ValueError):
    """A malformed per-request semantic header (the front end answers 400)."""


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    """A stored entry whose question means the same as the one asked."""

    entry_key: str
    similarity: float
    partition: str  # the index partition (pass the match back to ``forget``)
    text: str  # the stored question that matched


def format_similarity(similarity: float) -> str:
    """``X-Cache-Similarity`` value: four decimals."""
    return f"{similarity:.4f}"


def read_semantic_headers(headers: Mapping[str, str]) -> tuple[bool, float | None]:
    """``(enabled, threshold)`` from ``X-Cache-Semantic`` / ``X-Cache-Semantic-Threshold``
    (lower-case header names); ``SemanticRequestError`` for values that mean nothing."""
    switch = headers.get(HEADER_SWITCH, "").strip().lower()
    if switch not in ("", "on", "off", "true", "false"):
        raise SemanticRequestError(f"X-Cache-Semantic must be 'on' or 'off', got {switch!r}")
    raw = headers.get(HEADER_THRESHOLD, "").strip()
    threshold: float | None = None
    if raw:
        try:
            threshold = float(raw)
        except ValueError:
            raise SemanticRequestError(
                f"X-Cache-Semantic-Threshold must be a number between 0 and 1, got {raw!r}"
            ) from None
        if not 0.0 <= threshold <= 1.0:
            raise SemanticRequestError(
                f"X-Cache-Semantic-Threshold must be between 0 and 1, got {raw!r}"
            )
    return switch not in ("off", "false"), threshold


class SemanticCache:
    """Semantic lookups and stores over one cache storage (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        storage: CacheStorage,
        *,
        embedder: Embedder | None = None,
        index: VectorIndex | None = None,
        embeddings_call: EmbeddingsCall | None = None,
    ) -> None:
        self.enabled = bool(config.semantic)
        self.embedder_spec = config.semantic_embedder
        self.threshold = (
            config.semantic_threshold
            if config.semantic_threshold is not None
            else default_threshold(config.semantic_embedder)
        )
        self._storage = storage
        self._max_entries = max(int(getattr(storage, "max_size", 0) or config.max_size), 1)
        self._embedder = embedder
        self._index = index
        self._judge: Judge | None = None
        self._embeddings_call = embeddings_call
        self._embedding_base = embedding_base_url(config)
        self._vectors: OrderedDict[tuple[str, str], Vectors] = OrderedDict()
        self._last_logged = 0.0
        self.counters = {"hits": 0, "misses": 0, "blocked": 0, "stored": 0, "errors": 0}

    # -- policy -----------------------------------------------------------------------------

    def applies(self, mode: str, headers: Mapping[str, str]) -> bool:
        """Whether a request may be answered semantically (after its exact miss).

        ``SemanticRequestError`` when its semantic headers are malformed.
        """
        enabled, _ = read_semantic_headers(headers)
        return self.enabled and enabled and mode in SEMANTIC_MODES

    def effective_threshold(self, requested: float | None) -> float:
        """A request may only make the threshold stricter, never looser."""
        return self.threshold if requested is None else max(self.threshold, requested)

    # -- set-up -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Load the embedder and open the index now (start-up), raising what is wrong."""
        self._components()

    def _components(self) -> tuple[Embedder, VectorIndex, Judge]:
        if self._embedder is None:
            from llm_cache.semantic.embedders import build_embedder

            self._embedder = build_embedder(self.embedder_spec, self._embeddings_call)
        if self._index is None:
            self._index = index_for(self._storage, self._max_entries)
        if self._judge is None:
            from llm_cache.semantic.judge import Judge

            self._judge = Judge(self._embedder)
        return self._embedder, self._index, self._judge

    # -- the two operations -----------------------------------------------------------------

    async def lookup(
        self,
        provider: str,
        endpoint: str,
        body: Mapping[str, Any],
        scope: str = "",
        *,
        threshold: float | None = None,
        auth: Mapping[str, str] | None = None,
        key_of: KeyOf | None = None,
        shape: str | None = None,
    ) -> SemanticMatch | None:
        """The best stored entry meaning the same as this request, or ``None`` (never raises).

        ``body`` is the request body as keyed (fields that never enter a key dropped);
        ``threshold`` a per-request value (only a stricter one has an effect); ``auth`` the
        request's credential headers, for an upstream embedder; ``key_of`` the engine's exact
        key function and ``shape`` the provider's body shape for this endpoint (see
        :func:`~llm_cache.semantic.partition.partition_for`).
        """
        if not self.enabled:
            return None
        try:
            match = await self._lookup(
                provider, endpoint, body, scope, threshold, auth, key_of, shape
            )
        except Exception as exc:
            self._failed("lookup", exc)
            return None
        self.counters["hits" if match else "misses"] += 1
        return match

    async def _lookup(
        self,
        provider: str,
        endpoint: str,
        body: Mapping[str, Any],
        scope: str,
        threshold: float | None,
        auth: Mapping[str, str] | None,
        key_of: KeyOf | None,
        shape: str | None,
    ) -> SemanticMatch | None:
        from llm_cache.semantic.partition import partition_for

        part = partition_for(provider, endpoint, body, scope, key_of=key_of, shape=shape)
        if part is None:
            return None
        embedder, index, judge = self._components()
        partition = self._space(embedder, part.key)
        vector = await self._embed(embedder, part.text, auth)
        limit = self.effective_threshold(threshold)
        for candidate in await index.candidates(partition, vector, limit, _CANDIDATES):
            if candidate.text == part.text:
                # Same text, same partition: the exact key would have matched unless the
                # entry is gone (evicted or expired). Not a paraphrase to serve.
                continue
            objection = await judge.objection(part.text, candidate.text, auth=auth)
            if objection is None:
                return SemanticMatch(
                    candidate.entry_key, candidate.similarity, partition, candidate.text
                )
            self.counters["blocked"] += 1
            logger.debug("semantic candidate blocked: %s", objection)
        return None

    async def remember(
        self,
        provider: str,
        endpoint: str,
        body: Mapping[str, Any],
        scope: str,
        entry_key: str,
        *,
        auth: Mapping[str, str] | None = None,
        key_of: KeyOf | None = None,
        shape: str | None = None,
    ) -> bool:
        """File the request's question as a pointer to ``entry_key``; ``False`` when it is not
        chat-shaped, semantic is off, or something failed (logged, never raised)."""
        if not self.enabled:
            return False
        from llm_cache.semantic.partition import partition_for

        try:
            part = partition_for(provider, endpoint, body, scope, key_of=key_of, shape=shape)
            if part is None:
                return False
            embedder, index, _ = self._components()
            vector = await self._embed(embedder, part.text, auth)
            await index.add(self._space(embedder, part.key), part.text, vector, entry_key)
        except Exception as exc:
            self._failed("store", exc)
            return False
        self.counters["stored"] += 1
        return True

    async def forget(self, match: SemanticMatch) -> None:
        """Drop a pointer whose entry turned out to be gone (never raises)."""
        if self._index is None:
            return
        try:
            await self._index.forget(match.partition, match.entry_key)
        except Exception as exc:
            self._failed("forget", exc)

    def auth_for(self, url: str, headers: Mapping[str, str]) -> dict[str, str]:
        """The request's credential headers, for the embedder, only when the request goes to
        the very upstream the embedder calls: a key is never sent to another provider (an
        upstream embedder then fails for that request, and it is a plain miss)."""
        if self._embedding_base is None or not url.startswith(self._embedding_base + "/"):
            return {}
        return {h: headers[h] for h in CREDENTIAL_HEADERS if h in headers}

    def stats(self) -> dict[str, Any]:
        """Counters of this process: semantic hits, misses, candidates blocked by the
        guards, questions stored, failures; plus the settings in force."""
        return {
            "enabled": self.enabled,
            "embedder": self.embedder_spec,
            "threshold": self.threshold,
            **self.counters,
        }

    async def aclose(self) -> None:
        if self._index is not None:
            await self._index.close()

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _space(embedder: Embedder, partition_key: str) -> str:
        """The index partition: the request's partition within the embedder's vector space,
        so vectors of another embedder (or version) are never compared."""
        digest = hashlib.sha256(f"{embedder.identity}\x00{partition_key}".encode())
        return digest.hexdigest()

    async def _embed(
        self, embedder: Embedder, text: str, auth: Mapping[str, str] | None
    ) -> Vectors:
        """One vector, remembered briefly: a miss embeds its question for the lookup and
        again for the store; an upstream embedder should be asked once."""
        key = (embedder.identity, text)
        cached = self._vectors.get(key)
        if cached is not None:
            self._vectors.move_to_end(key)
            return cached
        vectors = await embedder.embed([text], auth=auth)
        vector: Vectors = vectors[0]
        self._vectors[key] = vector
        while len(self._vectors) > 256:
            self._vectors.popitem(last=False)
        return vector

    def _failed(self, what: str, exc: BaseException) -> None:
        self.counters["errors"] += 1
        now = time.monotonic()
        if now - self._last_logged >= _LOG_EVERY:
            self._last_logged = now
            logger.warning(
                "semantic cache %s failed (%s: %s); answering without it",
                what,
                type(exc).__name__,
                exc,
            )


def embedding_base_url(config: Config) -> str | None:
    """Base URL of the upstream an ``<upstream>:<model>`` embedder calls (``None``: local)."""
    from llm_cache.semantic.settings import parse_embedder_spec

    kind, _ = parse_embedder_spec(config.semantic_embedder)
    if kind == "local":
        return None
    bases = {"openai": config.openai_base_url, **config.upstreams}
    base = bases.get(kind)
    return base.rstrip("/") if base else None


def semantic_cache_for(
    config: Config, storage: CacheStorage, client_for: Callable[[str], Any]
) -> SemanticCache | None:
    """The proxy's semantic cache: ``None`` when it is off, or when it cannot start (the
    reason is logged and the proxy serves exact hits only). ``client_for(upstream_name)``
    returns the proxy's pooled ``httpx2.AsyncClient`` for that upstream."""
    if not config.semantic:
        return None
    from llm_cache.semantic.embedders import http_embeddings_call

    bases = {"openai": config.openai_base_url, **config.upstreams}
    cache = SemanticCache(config, storage, embeddings_call=http_embeddings_call(bases, client_for))
    try:
        cache.prepare()
    except Exception as exc:
        logger.error("semantic cache disabled: %s: %s", type(exc).__name__, exc)
        return None
    logger.info(
        "semantic cache on: embedder %s, threshold %.2f", config.semantic_embedder, cache.threshold
    )
    return cache


def index_for(storage: CacheStorage, max_entries: int) -> VectorIndex:
    """The index that lives beside ``storage``: a table in its SQLite file, keys under its
    Redis namespace (shared by every replica), or process memory."""
    backend: Any = getattr(storage, "backend", storage)  # TieredStorage wraps the real one
    name = getattr(backend, "backend_name", "")
    if name == "sqlite":
        from llm_cache.semantic.sqlite_index import SQLiteIndex

        return SQLiteIndex(backend.db_path, max_entries=max_entries)
    if name == "redis":
        from llm_cache.semantic.redis_index import RedisIndex

        return RedisIndex(
            backend._aclient,  # the storage's per-event-loop async client
            backend.namespace,
            max_entries=max_entries,
            max_partitions=max_entries,
        )
    from llm_cache.semantic.index import MemoryIndex

    return MemoryIndex(max_entries=max_entries)
