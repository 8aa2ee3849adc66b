"""Which mode is in force, and what each one allows."""

from __future__ import annotations

import pytest

from llm_cache.testing.modes import Mode, resolve_mode


def test_precedence_option_then_env_then_ci_then_default() -> None:
    env = {"LLM_CACHE_PYTEST_MODE": "new", "CI": "true"}
    assert resolve_mode("record", env) == Mode("record", "from --llm-cache-mode")
    assert resolve_mode(None, env) == Mode("new", "from LLM_CACHE_PYTEST_MODE")
    assert resolve_mode(None, {"CI": "true"}) == Mode("replay", "default under CI=true")
    assert resolve_mode(None, {"CI": "false"}) == Mode("once", "default")
    assert resolve_mode(None, {}) == Mode("once", "default")


def test_unknown_modes_name_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="LLM_CACHE_PYTEST_MODE: unknown mode 'later'; use one"):
        resolve_mode(None, {"LLM_CACHE_PYTEST_MODE": "later"})


@pytest.mark.parametrize(
    ("name", "exists", "replays", "records"),
    [
        ("once", False, False, True),
        ("once", True, True, False),
        ("replay", True, True, False),
        ("replay", False, True, False),
        ("new", True, True, True),
        ("record", True, False, True),
    ],
)
def test_what_each_mode_allows(name: str, exists: bool, replays: bool, records: bool) -> None:
    mode = Mode(name, "test")
    assert (mode.replays(exists), mode.records(exists)) == (replays, records)
