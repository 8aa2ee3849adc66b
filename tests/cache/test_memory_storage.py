"""MemoryStorage against the shared backend contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_cache.cache.memory_storage import MemoryStorage

from .backend_contract import BackendContract, MakeStorage


class TestMemoryStorage(BackendContract):
    @pytest.fixture
    def make_storage(self) -> Iterator[MakeStorage]:
        made: list[MemoryStorage] = []

        def make(max_size: int = 1000, ttl: float | None = None) -> MemoryStorage:
            made.append(MemoryStorage(max_size=max_size, ttl=ttl))
            return made[-1]

        yield make
        for storage in made:
            storage.close()


def test_max_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryStorage(max_size=0)
