"""Opt-in semantic cache (SPEC "Semantic cache (opt-in)"): answer a question from the stored
answer of another that means the same, only when everything else about the two requests is
equal, and only when the guards find no detail that differs.

Modules: ``partition`` (what must be equal), ``embedders`` (text -> vectors), ``guards`` and
``judge`` (what may not differ), ``index`` / ``sqlite_index`` / ``redis_index`` (exact vector
search within a partition), ``cache`` (the facade the engine calls), ``calibrate`` (precision
and recall on labelled pairs). Importing this package loads no model and no numpy.
"""

from __future__ import annotations

from llm_cache.semantic.cache import (
    SemanticCache,
    SemanticMatch,
    SemanticRequestError,
    format_similarity,
    read_semantic_headers,
)
from llm_cache.semantic.partition import Partition, partition_for

__all__ = [
    "Partition",
    "SemanticCache",
    "SemanticMatch",
    "SemanticRequestError",
    "format_similarity",
    "partition_for",
    "read_semantic_headers",
]
