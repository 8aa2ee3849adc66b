"""Semantic-cache settings that must be readable without the ``[semantic]`` extra installed
(``Config`` validates them at start-up, before any model or numpy is imported)."""

from __future__ import annotations

#: ``LLM_CACHE_SEMANTIC_EMBEDDER`` values that run in process (the rest name an upstream).
LOCAL_EMBEDDERS = ("local", "local:wordllama", "local:minilm")

#: Calibrated default thresholds (cosine), per local embedder; see README "Semantic cache".
#: Upstream embedders have their own similarity scale: set ``LLM_CACHE_SEMANTIC_THRESHOLD``
#: from ``llm-cache calibrate`` for them; until then the local default applies.
DEFAULT_THRESHOLDS = {"local": 0.80, "local:wordllama": 0.80, "local:minilm": 0.90}
DEFAULT_THRESHOLD = DEFAULT_THRESHOLDS["local"]


def parse_embedder_spec(spec: str) -> tuple[str, str]:
    """``("local", variant)`` or ``(upstream, model)``; ``ValueError`` for anything else."""
    spec = spec.strip()
    if spec in LOCAL_EMBEDDERS:
        return "local", spec
    upstream, sep, model = spec.partition(":")
    if not sep or not upstream.strip() or not model.strip() or upstream == "local":
        raise ValueError(
            f"LLM_CACHE_SEMANTIC_EMBEDDER must be {', '.join(LOCAL_EMBEDDERS)} or "
            f"<upstream>:<model> (e.g. openai:text-embedding-3-small), got {spec!r}"
        )
    return upstream.strip(), model.strip()


def default_threshold(spec: str) -> float:
    return DEFAULT_THRESHOLDS.get(spec.strip(), DEFAULT_THRESHOLD)
