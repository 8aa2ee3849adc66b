"""Calibration on the labelled set: the published precision, the threshold choice, the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from llm_cache.semantic.calibrate import (
    LabelledPair,
    choose_threshold,
    load_pairs,
    main,
    score_pairs,
    table,
)
from llm_cache.semantic.embedders import build_embedder
from llm_cache.semantic.settings import DEFAULT_THRESHOLD

DATA = Path(__file__).parent / "data" / "pairs.jsonl"


@pytest.fixture(scope="module")
def scored() -> list:  # type: ignore[type-arg]
    return asyncio.run(score_pairs(load_pairs(DATA), build_embedder("local")))


def test_the_labelled_set_covers_every_hard_negative_kind() -> None:
    pairs = load_pairs(DATA)
    kinds = {p.kind for p in pairs if not p.same}
    assert {
        "negation",
        "direction",
        "number",
        "entity",
        "unit",
        "language",
        "antonym",
        "topic",
        "qualifier",
    } <= kinds
    assert sum(p.same for p in pairs) >= 140
    assert sum(not p.same for p in pairs) >= 240


def test_default_threshold_has_no_false_hit_and_answers_most_paraphrases(scored: list) -> None:  # type: ignore[type-arg]
    (row,) = table(scored, [DEFAULT_THRESHOLD])
    assert row.false_hits == 0, [
        (s.pair.a, s.pair.b) for s in scored if not s.pair.same and s.answered(DEFAULT_THRESHOLD)
    ]
    assert row.precision == 1.0
    assert row.recall >= 0.60  # target: >= 50 %


def test_guards_carry_the_precision(scored: list) -> None:  # type: ignore[type-arg]
    """Without the guards the same threshold answers many hard negatives."""
    unguarded = asyncio.run(score_pairs(load_pairs(DATA), build_embedder("local"), guards=False))
    (row,) = table(unguarded, [DEFAULT_THRESHOLD])
    assert row.false_hit_rate > 0.3
    hard = [
        s
        for s in scored
        if s.pair.kind
        in ("negation", "direction", "number", "entity", "unit", "antonym", "language")
    ]
    assert all(not s.answered(0.0) for s in hard)  # blocked whatever the threshold


def test_choose_threshold_respects_the_false_hit_limit(scored: list) -> None:  # type: ignore[type-arg]
    chosen = choose_threshold(scored, 0.01)
    assert chosen.false_hit_rate <= 0.01
    assert chosen.threshold <= DEFAULT_THRESHOLD  # the default keeps a margin above it
    strict = choose_threshold(scored, 0.0)
    assert strict.false_hits == 0


def test_load_pairs_names_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"a": "x", "b": "y", "same": true}\n{"a": "x", "same": true}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:2"):
        load_pairs(bad)
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match=r":1: not JSON"):
        load_pairs(bad)
    good = tmp_path / "good.jsonl"
    good.write_text('# comment\n{"a": "x", "b": "y", "same": false}\n')
    assert load_pairs(good) == [LabelledPair("x", "y", False, "negative")]


def test_cli_prints_the_table_and_the_chosen_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "mine.jsonl"
    pairs.write_text(
        "\n".join(
            json.dumps(p)
            for p in [
                {
                    "a": "What is the capital of France?",
                    "b": "What's the capital of France?",
                    "same": True,
                },
                {
                    "a": "What is the capital of Austria?",
                    "b": "What is the capital of Australia?",
                    "same": False,
                    "kind": "entity",
                },
            ]
        )
    )
    assert main([str(pairs)]) == 0
    out = capsys.readouterr().out
    assert "2 pairs (1 same, 1 different)" in out
    assert "LLM_CACHE_SEMANTIC_THRESHOLD=" in out
    assert "entity         0 of   1 answered" in out
    assert main([str(pairs), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["chosen"]["false_hits"] == 0
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "llm-cache calibrate:" in capsys.readouterr().err


def test_llm_cache_calibrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llm_cache.cli import main as cli_main

    assert cli_main(["calibrate", str(DATA.parent / "heldout.jsonl"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pairs"] == len(load_pairs(DATA.parent / "heldout.jsonl"))
    assert result["embedder"].startswith("local:wordllama/")
    assert result["chosen"]["false_hit_rate"] <= 0.01


def test_held_out_pairs_at_the_default_threshold() -> None:
    """Pairs written after the guards were fixed: no false hit, most paraphrases answered."""
    held_out = asyncio.run(
        score_pairs(load_pairs(DATA.parent / "heldout.jsonl"), build_embedder("local"))
    )
    (row,) = table(held_out, [DEFAULT_THRESHOLD])
    assert row.false_hits == 0
    assert row.recall >= 0.8
