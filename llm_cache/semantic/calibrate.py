"""Calibration: how often would the semantic cache answer, and how often wrongly, at each
threshold? ``llm-cache calibrate FILE`` (or ``python -m llm_cache.semantic.calibrate FILE``).

FILE is JSON Lines, one labelled pair a line::

    {"a": "What is the capital of France?", "b": "Which city is France's capital?", "same": true}
    {"a": "What is the capital of Austria?", "b": "What is the capital of Australia?",
     "same": false, "kind": "entity"}

``same`` says whether one answer serves both questions; ``kind`` (optional) groups the table.
For each pair the cache's own decision (:class:`~llm_cache.semantic.judge.Judge`) is run with
``b`` stored and ``a`` asked. A *false hit* is a pair with ``same: false`` that would be
answered; *recall* is the share of ``same: true`` pairs that would be.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from llm_cache.semantic.embedders import Embedder

MAX_FALSE_HIT_RATE = 0.01


@dataclass(frozen=True, slots=True)
class LabelledPair:
    a: str
    b: str
    same: bool
    kind: str


@dataclass(frozen=True, slots=True)
class ScoredPair:
    pair: LabelledPair
    similarity: float
    objection: str | None  # what the guards said (None: they let it through)

    def answered(self, threshold: float) -> bool:
        return self.similarity >= threshold and self.objection is None


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the calibration table."""

    threshold: float
    answered: int  # paraphrases answered (true hits)
    paraphrases: int
    false_hits: int
    negatives: int

    @property
    def recall(self) -> float:
        return self.answered / self.paraphrases if self.paraphrases else 0.0

    @property
    def false_hit_rate(self) -> float:
        return self.false_hits / self.negatives if self.negatives else 0.0

    @property
    def precision(self) -> float:
        total = self.answered + self.false_hits
        return self.answered / total if total else 1.0


def load_pairs(path: str | Path) -> list[LabelledPair]:
    """Read a JSON Lines file of labelled pairs; ``ValueError`` names the bad line."""
    pairs: list[LabelledPair] = []
    text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(item, dict):
            raise ValueError(f"{path}:{number}: expected an object with a, b and same")
        a, b, same = item.get("a"), item.get("b"), item.get("same")
        if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip():
            raise ValueError(f'{path}:{number}: "a" and "b" must be non-empty strings')
        if not isinstance(same, bool):
            raise ValueError(f'{path}:{number}: "same" must be true or false')
        kind = item.get("kind")
        kind = kind if isinstance(kind, str) and kind else ("paraphrase" if same else "negative")
        pairs.append(LabelledPair(a, b, same, kind))
    if not pairs:
        raise ValueError(f"{path}: no labelled pairs")
    return pairs


async def score_pairs(
    pairs: Sequence[LabelledPair], embedder: Embedder, *, guards: bool = True
) -> list[ScoredPair]:
    """Similarity and the guards' verdict for each pair (``a`` asked, ``b`` stored)."""
    import numpy as np

    from llm_cache.semantic.judge import Judge

    judge = Judge(embedder, guards=guards)
    vectors_a = await embedder.embed([p.a for p in pairs])
    vectors_b = await embedder.embed([p.b for p in pairs])
    similarities = np.einsum("ij,ij->i", vectors_a, vectors_b)
    return [
        ScoredPair(pair, float(similarity), await judge.objection(pair.a, pair.b))
        for pair, similarity in zip(pairs, similarities, strict=True)
    ]


def table(scored: Sequence[ScoredPair], thresholds: Iterable[float]) -> list[Row]:
    paraphrases = [s for s in scored if s.pair.same]
    negatives = [s for s in scored if not s.pair.same]
    return [
        Row(
            threshold=round(t, 4),
            answered=sum(s.answered(t) for s in paraphrases),
            paraphrases=len(paraphrases),
            false_hits=sum(s.answered(t) for s in negatives),
            negatives=len(negatives),
        )
        for t in thresholds
    ]


def default_grid() -> list[float]:
    return [round(0.5 + 0.01 * i, 2) for i in range(50)]


def choose_threshold(
    scored: Sequence[ScoredPair], max_false_hit_rate: float = MAX_FALSE_HIT_RATE
) -> Row:
    """The lowest threshold (most paraphrases answered) whose false-hit rate stays within
    ``max_false_hit_rate`` at it and at every stricter threshold of the grid."""
    rows = table(scored, default_grid())
    chosen = rows[-1]
    for row in reversed(rows):
        if row.false_hit_rate > max_false_hit_rate:
            break
        chosen = row
    return chosen


def by_kind(scored: Sequence[ScoredPair], threshold: float) -> dict[str, tuple[int, int]]:
    """``{kind: (answered, total)}`` at ``threshold``."""
    out: dict[str, tuple[int, int]] = {}
    for s in scored:
        answered, total = out.get(s.pair.kind, (0, 0))
        out[s.pair.kind] = (answered + s.answered(threshold), total + 1)
    return out


def render_table(rows: Sequence[Row]) -> str:
    lines = [
        "threshold  recall   false hits       precision",
        "---------  -------  ---------------  ---------",
    ]
    for r in rows:
        lines.append(
            f"{r.threshold:9.2f}  {100 * r.recall:6.1f}%  "
            f"{r.false_hits:3d}/{r.negatives:<3d} {100 * r.false_hit_rate:5.1f}%  "
            f"{100 * r.precision:8.1f}%"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-cache calibrate", description=DESCRIPTION)
    add_arguments(parser)
    return parser


DESCRIPTION = (
    "Measure the semantic cache on your own labelled question pairs: recall and false "
    "hits per threshold, and the lowest threshold that keeps false hits within the "
    "limit. FILE is JSON Lines: "
    '{"a": "...", "b": "...", "same": true|false, "kind": "optional group"}.'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``llm-cache calibrate`` (also used by the main ``llm-cache`` parser)."""
    parser.add_argument("file", metavar="FILE", help="labelled pairs (JSON Lines; - for stdin)")
    parser.add_argument(
        "--embedder",
        default="local",
        help="embedder to measure: local (default) or local:minilm (upstream embedders are "
        "measured through the running proxy, not here)",
    )
    parser.add_argument(
        "--max-false-hits",
        type=float,
        default=100 * MAX_FALSE_HIT_RATE,
        metavar="PERCENT",
        help="largest acceptable share of false hits (default: 1)",
    )
    parser.add_argument("--no-guards", action="store_true", help="similarity alone (to compare)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    try:
        from llm_cache.semantic.embedders import EmbedderError, build_embedder
    except ImportError as exc:
        print(f"llm-cache calibrate: {exc}; pip install 'llm-caching[semantic]'", file=sys.stderr)
        return 2
    try:
        pairs = load_pairs(args.file)
        embedder = build_embedder(args.embedder)
    except (OSError, ValueError, EmbedderError) as exc:
        print(f"llm-cache calibrate: {exc}", file=sys.stderr)
        return 2
    scored = asyncio.run(score_pairs(pairs, embedder, guards=not args.no_guards))
    chosen = choose_threshold(scored, args.max_false_hits / 100)
    rows = table(scored, [round(0.5 + 0.05 * i, 2) for i in range(10)])
    if args.json:
        result: dict[str, Any] = {
            "embedder": embedder.identity,
            "guards": not args.no_guards,
            "pairs": len(pairs),
            "chosen": _row_dict(chosen),
            "table": [_row_dict(r) for r in rows],
            "by_kind": {
                k: {"answered": a, "total": t}
                for k, (a, t) in by_kind(scored, chosen.threshold).items()
            },
        }
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return 0
    paraphrases = sum(p.same for p in pairs)
    print(
        f"{len(pairs)} pairs ({paraphrases} same, {len(pairs) - paraphrases} different); "
        f"embedder {embedder.identity}; guards {'off' if args.no_guards else 'on'}\n"
    )
    print(render_table(rows))
    print(
        f"\nlowest threshold with at most {args.max_false_hits:g}% false hits: "
        f"{chosen.threshold:.2f} (recall {100 * chosen.recall:.1f}%, "
        f"{chosen.false_hits} false hits of {chosen.negatives})"
    )
    print(f"set it with LLM_CACHE_SEMANTIC_THRESHOLD={chosen.threshold:.2f}")
    if chosen.negatives < 100:
        print(
            f"(only {chosen.negatives} different pairs: one false hit is "
            f"{100 / max(chosen.negatives, 1):.1f}%; label more for a firmer figure)"
        )
    print("\nat that threshold:")
    for kind, (answered, total) in sorted(by_kind(scored, chosen.threshold).items()):
        print(f"  {kind:<12} {answered:3d} of {total:3d} answered")
    return 0


def _row_dict(row: Row) -> dict[str, Any]:
    return {
        "threshold": row.threshold,
        "recall": round(row.recall, 4),
        "false_hits": row.false_hits,
        "negatives": row.negatives,
        "false_hit_rate": round(row.false_hit_rate, 4),
        "precision": round(row.precision, 4),
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
