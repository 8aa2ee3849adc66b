"""Guards: each kind of detail that changes an answer blocks a hit; rewording does not."""

from __future__ import annotations

import pytest

from llm_cache.semantic.guards import block_reason, differing_words, features


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("What is the capital of Austria?", "What is the capital of Australia?", "entities"),
        ("How do I sort a list in Python?", "How do I sort a list in Ruby?", "entities"),
        ("What does `KeyError` mean?", "What does `IndexError` mean?", "entities"),
        ("Is coffee good for you?", "Is coffee not good for you?", "negation"),
        ("Why does my code work?", "Why doesn't my code work?", "negation"),
        ("Give me a recipe with eggs.", "Give me a recipe without eggs.", "negation"),
        ("Is it legal to drive barefoot?", "Is it illegal to drive barefoot?", "negation"),
        ("What is 15% of 200?", "What is 15% of 300?", "numbers"),
        ("Give me five ideas.", "Give me 10 ideas.", "numbers"),
        ("Give me five ideas.", "Give me seven ideas.", "numbers"),
        ("What is the third planet?", "What is the fourth planet?", "numbers"),
        ("How many feet are in a mile?", "How many meters are in a mile?", "units"),
        ("Walk 5 km.", "Walk 5 miles.", "units"),
        ("What is 50 dollars in yen?", "What is 50 euros in yen?", "units"),
        ("Convert Celsius to Fahrenheit.", "Convert Fahrenheit to Celsius.", "reversed"),
        ("Does smoking cause cancer?", "Does cancer cause smoking?", "reversed"),
        ("Convert a list to a string.", "Convert a string to a list.", "reversed"),
        ("How do I increase my score?", "How do I decrease my score?", "opposite"),
        ("How do I install Python?", "How do I uninstall Python?", "negation"),
        ("What did he say?", "What did she say?", "opposite"),
        ("What is the weather today?", "What is the weather tomorrow?", "opposite"),
        ("Who wrote Hamlet?", "When was Hamlet written?", "question words"),
        ("Give me a recipe for pancakes.", "Give me a vegan recipe for pancakes.", "added"),
        ("What is the capital of France?", "Quelle est la capitale de la France ?", "language"),
        ("What is the weather today?", "Какая сегодня погода?", "script"),
    ],
)
def test_a_differing_detail_blocks(a: str, b: str, reason: str) -> None:
    for query, stored in ((a, b), (b, a)):  # every guard is symmetric
        found = block_reason(query, stored)
        assert found is not None, (query, stored)
        assert reason in found


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is the capital of France?", "What's the capital of France?"),
        ("Why is the sky blue?", "Why's the sky blue?"),
        ("what is the capital of france", "What is the capital of France?"),
        ("How do I reverse a list in Python?", "In Python, how do I reverse a list?"),
        ("What is the tallest mountain in the world?", "What's the world's tallest mountain?"),
        ("Explain recursion.", "Can you explain recursion?"),
        ("How do I install numpy?", "What's the command to install numpy?"),
        ("What is 15% of 200?", "Calculate 15% of 200."),
        ("Translate 'good morning' into Spanish.", "Translate 'good morning' to Spanish please."),
    ],
)
def test_rewording_passes(a: str, b: str) -> None:
    assert block_reason(a, b) is None
    assert block_reason(b, a) is None


def test_features_normalize_numbers_and_units() -> None:
    f = features("Is 1,000 kilometres more than 600 miles? Twice!")
    assert dict(f.numbers) == {"1000": 1, "600": 1, "2": 1}
    assert f.units == {"km", "mile"}
    assert features("The letter m is nice").units == frozenset()  # a bare "m" is a word
    assert features("run 5 m").units == {"m"}


def test_differing_words_ignore_case_plural_and_possessive() -> None:
    assert differing_words("the world's rivers", "The World river") == ([], [])
    assert differing_words("make a commit", "amend a commit") == (["make"], ["amend"])
