"""The SemanticCache facade over real storages, indexes and embedders (local and upstream)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx2
import pytest

from llm_cache.cache.memory_storage import MemoryStorage
from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.config import Config
from llm_cache.semantic import SemanticCache, SemanticRequestError, read_semantic_headers
from llm_cache.semantic.embedders import EmbedderError, Vectors, http_embeddings_call
from llm_cache.semantic.index import MemoryIndex
from llm_cache.semantic.settings import DEFAULT_THRESHOLD
from llm_cache.semantic.sqlite_index import SQLiteIndex
from tests.semantic.embedding_upstream import API_KEY, EmbeddingUpstream
from tests.servers import run_server

CHAT = "/v1/chat/completions"


def chat(text: str, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def config(**overrides: Any) -> Config:
    return Config(env={}, dotenv_path=None, semantic=True, **overrides)


@pytest.fixture
def sqlite_cache(tmp_path: Path) -> Iterator[SemanticCache]:
    storage = SQLiteStorage(db_path=str(tmp_path / "cache.db"), max_size=100)
    yield SemanticCache(config(), storage)
    storage.close()


async def test_a_paraphrase_finds_the_stored_entry(sqlite_cache: SemanticCache) -> None:
    cache = sqlite_cache
    assert await cache.remember("openai", CHAT, chat("What is the capital of France?"), "", "k1")
    match = await cache.lookup("openai", CHAT, chat("Tell me the capital of France."), "")
    assert match is not None
    assert match.entry_key == "k1"
    assert DEFAULT_THRESHOLD <= match.similarity <= 1.0
    assert match.text == "What is the capital of France?"
    assert isinstance(cache._index, SQLiteIndex)  # the table lives in the cache's file
    assert cache.stats()["hits"] == 1


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of Australia?",  # stored: Austria
        "What is not the capital of Austria?",
        "What was the capital of Austria in 1900?",
    ],
)
async def test_hard_negatives_miss(tmp_path: Path, question: str) -> None:
    """Even at a threshold far below the default, the guards block them."""
    storage = SQLiteStorage(db_path=str(tmp_path / "cache.db"), max_size=100)
    cache = SemanticCache(config(semantic_threshold=0.3), storage)
    await cache.remember("openai", CHAT, chat("What is the capital of Austria?"), "", "k")
    assert await cache.lookup("openai", CHAT, chat(question), "") is None
    assert cache.stats()["blocked"] == 1
    storage.close()


async def test_everything_but_the_last_text_must_be_equal(sqlite_cache: SemanticCache) -> None:
    cache = sqlite_cache
    await cache.remember("openai", CHAT, chat("What is the capital of France?"), "ns=a", "k")
    paraphrase = "Tell me the capital of France."
    assert await cache.lookup("openai", CHAT, chat(paraphrase), "ns=b") is None
    assert await cache.lookup("openai", CHAT, chat(paraphrase, model="gpt-4o"), "ns=a") is None
    assert await cache.lookup("openai", CHAT, chat(paraphrase, temperature=1), "ns=a") is None
    assert await cache.lookup("anthropic", "/v1/messages", chat(paraphrase), "ns=a") is None
    assert await cache.lookup("openai", CHAT, chat(paraphrase), "ns=a") is not None


async def test_a_request_threshold_can_only_be_stricter(sqlite_cache: SemanticCache) -> None:
    cache = sqlite_cache
    await cache.remember("openai", CHAT, chat("What is the capital of France?"), "", "k")
    question = chat("Could you tell me what the capital of France is?")
    match = await cache.lookup("openai", CHAT, question, "")
    assert match is not None
    assert await cache.lookup("openai", CHAT, question, "", threshold=0.0) is not None
    assert await cache.lookup("openai", CHAT, question, "", threshold=match.similarity) is not None
    assert await cache.lookup("openai", CHAT, question, "", threshold=1.0) is None
    assert cache.effective_threshold(0.1) == cache.threshold


async def test_the_same_text_is_not_a_semantic_hit(sqlite_cache: SemanticCache) -> None:
    """Same partition and text means the exact key; if that missed, its entry is gone."""
    await sqlite_cache.remember("openai", CHAT, chat("What is DNA?"), "", "k")
    assert await sqlite_cache.lookup("openai", CHAT, chat("What is DNA?"), "") is None


async def test_forget_drops_a_stale_pointer(sqlite_cache: SemanticCache) -> None:
    cache = sqlite_cache
    await cache.remember("openai", CHAT, chat("What is the capital of France?"), "", "k")
    match = await cache.lookup(
        "openai", CHAT, chat("Could you tell me what the capital of France is?"), ""
    )
    assert match is not None
    await cache.forget(match)
    assert (
        await cache.lookup(
            "openai", CHAT, chat("Could you tell me what the capital of France is?"), ""
        )
        is None
    )


async def test_disabled_does_nothing(tmp_path: Path) -> None:
    cache = SemanticCache(Config(env={}, dotenv_path=None), MemoryStorage(max_size=10))
    assert cache.enabled is False
    assert await cache.remember("openai", CHAT, chat("q"), "", "k") is False
    assert await cache.lookup("openai", CHAT, chat("q"), "") is None
    assert cache.applies("readwrite", {}) is False


def test_applies_only_in_reading_modes_and_obeys_the_header() -> None:
    cache = SemanticCache(config(), MemoryStorage(max_size=10))
    assert cache.applies("readwrite", {}) and cache.applies("readonly", {})
    for mode in ("offline", "record", "off"):
        assert not cache.applies(mode, {})
    assert not cache.applies("readwrite", {"x-cache-semantic": "off"})
    assert read_semantic_headers({"x-cache-semantic-threshold": "0.97"}) == (True, 0.97)
    for bad in (
        {"x-cache-semantic": "maybe"},
        {"x-cache-semantic-threshold": "high"},
        {"x-cache-semantic-threshold": "1.5"},
    ):
        with pytest.raises(SemanticRequestError):
            read_semantic_headers(bad)


class BrokenEmbedder:
    identity = "broken"

    async def embed(
        self, texts: Sequence[str], *, auth: Mapping[str, str] | None = None
    ) -> Vectors:
        raise EmbedderError("model file unreadable")


async def test_failures_are_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    cache = SemanticCache(config(), MemoryStorage(max_size=10), embedder=BrokenEmbedder())
    with caplog.at_level(logging.WARNING, logger="llm_cache.semantic"):
        assert await cache.remember("openai", CHAT, chat("q"), "", "k") is False
        assert await cache.lookup("openai", CHAT, chat("q"), "") is None
    assert "model file unreadable" in caplog.text
    assert cache.stats()["errors"] == 2


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="LLM_CACHE_SEMANTIC_EMBEDDER"):
        config(semantic_embedder="local:nothing-here")
    with pytest.raises(ValueError, match="LLM_CACHE_SEMANTIC_THRESHOLD"):
        config(semantic_threshold=1.5)
    env = {
        "LLM_CACHE_SEMANTIC": "yes",
        "LLM_CACHE_SEMANTIC_THRESHOLD": "0.9",
        "LLM_CACHE_SEMANTIC_EMBEDDER": "groq:nomic-embed",
    }
    cfg = Config(env=env, dotenv_path=None)
    assert (cfg.semantic, cfg.semantic_threshold, cfg.semantic_embedder) == (
        True,
        0.9,
        "groq:nomic-embed",
    )
    with pytest.raises(ValueError, match="LLM_CACHE_SEMANTIC_THRESHOLD"):
        Config(env={"LLM_CACHE_SEMANTIC_THRESHOLD": "high"}, dotenv_path=None)
    with pytest.raises(ValueError, match="LLM_CACHE_SEMANTIC must be true or false"):
        Config(env={"LLM_CACHE_SEMANTIC": "maybe"}, dotenv_path=None)
    assert Config(env={}, dotenv_path=None).semantic is False


async def test_an_embedder_that_cannot_start_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    """An upstream embedder without the proxy's client: lookups miss, prepare() says why."""
    cache = SemanticCache(config(semantic_embedder="openai:m"), MemoryStorage(max_size=10))
    with caplog.at_level(logging.WARNING, logger="llm_cache.semantic"):
        assert await cache.lookup("openai", CHAT, chat("q"), "") is None
    assert "no upstream client" in caplog.text
    with pytest.raises(EmbedderError, match="no upstream client"):
        cache.prepare()


async def test_memory_backend_uses_the_memory_index() -> None:
    cache = SemanticCache(config(), MemoryStorage(max_size=10))
    await cache.remember("openai", CHAT, chat("How do I boil an egg?"), "", "k")
    assert isinstance(cache._index, MemoryIndex)
    assert (await cache.lookup("openai", CHAT, chat("How should I boil an egg?"), "")) is not None


async def test_redis_entries_are_shared_across_replicas(make_redis_storage: Any) -> None:
    one = SemanticCache(config(), make_redis_storage())
    two = SemanticCache(config(), make_redis_storage())
    await one.remember("openai", CHAT, chat("What is the capital of France?"), "", "k")
    match = await two.lookup(
        "openai", CHAT, chat("Could you tell me what the capital of France is?"), ""
    )
    assert match is not None and match.entry_key == "k"


@pytest.fixture(scope="module")
def embedding_upstream() -> Iterator[tuple[EmbeddingUpstream, str]]:
    app = EmbeddingUpstream()
    with run_server(app) as url:
        yield app, url


async def test_upstream_embedder(embedding_upstream: tuple[EmbeddingUpstream, str]) -> None:
    app, url = embedding_upstream
    app.calls.clear()
    async with httpx2.AsyncClient() as client:
        call = http_embeddings_call({"openai": f"{url}/v1"}, lambda _: client)
        cfg = config(semantic_embedder="openai:text-embedding-3-small")
        cache = SemanticCache(cfg, MemoryStorage(max_size=10), embeddings_call=call)
        auth = {"authorization": f"Bearer {API_KEY}"}
        body = chat("What is the capital of France?")
        await cache.remember("openai", CHAT, body, "", "k", auth=auth)
        match = await cache.lookup(
            "openai", CHAT, chat("Could you tell me what the capital of France is?"), "", auth=auth
        )
        assert match is not None and match.entry_key == "k"
        assert app.calls[0] == {
            "model": "text-embedding-3-small",
            "input": ["What is the capital of France?"],
            "encoding_format": "float",
        }
        assert cache._embedder is not None
        assert cache._embedder.identity == "openai:text-embedding-3-small"
        # a failing or refusing upstream is a miss, not an error
        app.fail_with = 500
        try:
            assert (
                await cache.lookup("openai", CHAT, chat("Tell me a joke."), "", auth=auth) is None
            )
        finally:
            app.fail_with = None
        assert await cache.lookup("openai", CHAT, chat("Tell me a joke!"), "", auth={}) is None
        assert cache.stats()["errors"] == 2


async def test_vectors_of_another_embedder_are_never_compared(
    tmp_path: Path, embedding_upstream: tuple[EmbeddingUpstream, str]
) -> None:
    """Same SQLite file, same partition: switching the embedder starts a fresh vector space."""
    _, url = embedding_upstream
    storage = SQLiteStorage(db_path=str(tmp_path / "c.db"), max_size=10)
    local = SemanticCache(config(), storage)
    await local.remember("openai", CHAT, chat("What is the capital of France?"), "", "k")
    async with httpx2.AsyncClient() as client:
        remote = SemanticCache(
            config(semantic_embedder="openai:m"),
            storage,
            embeddings_call=http_embeddings_call({"openai": f"{url}/v1"}, lambda _: client),
        )
        auth = {"authorization": f"Bearer {API_KEY}"}
        question = chat("Could you tell me what the capital of France is?")
        assert await remote.lookup("openai", CHAT, question, "", auth=auth) is None
        assert await local.lookup("openai", CHAT, question, "") is not None
    storage.close()


def test_credentials_go_only_to_the_embedders_own_upstream() -> None:
    cfg = config(
        semantic_embedder="openai:text-embedding-3-small",
        openai_base_url="https://api.openai.com/v1",
        upstreams={"groq": "https://api.groq.com/openai/v1"},
    )
    cache = SemanticCache(cfg, MemoryStorage(max_size=10))
    headers = {"authorization": "Bearer sk-1", "x-api-key": "ant", "accept": "json"}
    assert cache.auth_for("https://api.openai.com/v1/chat/completions", headers) == {
        "authorization": "Bearer sk-1",
        "x-api-key": "ant",
    }
    assert cache.auth_for("https://api.groq.com/openai/v1/chat/completions", headers) == {}
    assert cache.auth_for("https://api.anthropic.com/v1/messages", headers) == {}
    assert cache.auth_for("https://api.openai.com/v1evil/x", headers) == {}
    local = SemanticCache(config(), MemoryStorage(max_size=10))
    assert local.auth_for("https://api.openai.com/v1/chat/completions", headers) == {}


async def test_sqlite_vectors_follow_their_entries(tmp_path: Path) -> None:
    """Deleting, evicting or clearing entries removes their questions from the index too."""
    storage = SQLiteStorage(db_path=str(tmp_path / "cache.db"), max_size=2)
    cache = SemanticCache(config(), storage)
    for i, question in enumerate(["What is DNA?", "How do I boil an egg?", "Who wrote Emma?"]):
        storage.set(f"k{i}", {"answer": i})  # the third evicts the first
        await cache.remember("openai", CHAT, chat(question), "", f"k{i}")
    index = cache._index
    assert isinstance(index, SQLiteIndex)
    assert await index.size() == 2
    storage.delete("k1")
    assert await index.size() == 1
    storage.clear()
    assert await index.size() == 0
    storage.close()


async def test_a_slow_embeddings_upstream_is_cut_short(
    embedding_upstream: tuple[EmbeddingUpstream, str],
) -> None:
    app, url = embedding_upstream
    app.delay = 2.0
    try:
        async with httpx2.AsyncClient() as client:
            call = http_embeddings_call({"openai": f"{url}/v1"}, lambda _: client, timeout=0.2)
            cache = SemanticCache(
                config(semantic_embedder="openai:m"),
                MemoryStorage(max_size=10),
                embeddings_call=call,
            )
            started = time.monotonic()
            auth = {"authorization": f"Bearer {API_KEY}"}
            assert await cache.lookup("openai", CHAT, chat("q"), "", auth=auth) is None
            assert time.monotonic() - started < 1.5
            assert cache.stats()["errors"] == 1
    finally:
        app.delay = 0.0
