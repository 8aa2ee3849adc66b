"""The one decision every semantic lookup and every calibration run makes: may this stored
question's answer serve that new question?

Three conditions, all required: cosine similarity at least the threshold; no lexical guard
objects (:func:`~llm_cache.semantic.guards.block_reason`); and the words only one side uses
mean nearly the same thing to the embedder (the *substitution* check: "largest"/"biggest"
passes, "make a commit"/"amend a commit" does not). Calibration runs this same code, so the
published figures are the behaviour served.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from llm_cache.semantic.embedders import Embedder
from llm_cache.semantic.guards import block_reason, differing_words

#: Below this similarity the words that differ between two questions name different things.
#: Measured on tests/semantic/data/pairs.jsonl with the local embedder: swapped words of hard
#: negatives score < 0.10, the reworded words of paraphrases > 0.28.
DEFAULT_SUBSTITUTION_FLOOR = 0.2


class Judge:
    """Guards plus the substitution check, for one embedder."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        guards: bool = True,
        substitution_floor: float = DEFAULT_SUBSTITUTION_FLOOR,
    ) -> None:
        self.embedder = embedder
        self.guards = guards
        self.substitution_floor = substitution_floor

    async def objection(
        self, query: str, stored: str, *, auth: Mapping[str, str] | None = None
    ) -> str | None:
        """Why ``stored``'s answer must not serve ``query``; ``None`` when it may."""
        if not self.guards:
            return None
        if reason := block_reason(query, stored):
            return reason
        only_query, only_stored = differing_words(query, stored)
        if not only_query or not only_stored:
            return None
        vectors = await self.embedder.embed(
            [" ".join(only_query), " ".join(only_stored)], auth=auth
        )
        similarity = float(np.dot(vectors[0], vectors[1]))
        if similarity < self.substitution_floor:
            return (
                f"different words ({' '.join(only_query)!r} vs {' '.join(only_stored)!r}, "
                f"similarity {similarity:.2f})"
            )
        return None
