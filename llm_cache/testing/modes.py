"""Record/replay modes of the pytest plugin, and where the mode in force came from.

``once`` (default): record when the test's cassette does not exist, otherwise replay only.
``replay``: never reach the network; a request not in the cassette fails the test.
``new``: replay what is recorded, record the rest. ``record``: call upstream and overwrite.
``off``: no interception at all. With ``CI=true`` and no mode given: ``replay``, so a CI run
can never spend money or depend on a provider being up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ENV_VAR", "MODES", "Mode", "resolve_mode"]

MODES = ("once", "replay", "new", "record", "off")
ENV_VAR = "LLM_CACHE_PYTEST_MODE"
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class Mode:
    """A mode and its source (``--llm-cache-mode``, the environment, ``CI=true``, default)."""

    name: str
    source: str

    def replays(self, cassette_exists: bool) -> bool:
        """Whether recorded answers are served."""
        return self.name in ("replay", "new") or (self.name == "once" and cassette_exists)

    def records(self, cassette_exists: bool) -> bool:
        """Whether a request without a recorded answer goes upstream and is recorded."""
        return self.name in ("record", "new") or (self.name == "once" and not cassette_exists)

    def describe(self, cassette_exists: bool) -> str:
        """The mode in words, as a miss explanation shows it."""
        meaning = {
            "replay": "answers come only from the cassette",
            "new": "recorded requests are replayed, others are recorded",
            "record": "every request goes upstream",
            "off": "no interception",
        }.get(self.name)
        if self.name == "once":
            meaning = (
                "the cassette exists, so it is replayed and nothing new is recorded"
                if cassette_exists
                else "the cassette does not exist yet, so requests are recorded"
            )
        return f"{self.name} ({self.source}: {meaning})"


def resolve_mode(option: str | None, environ: Mapping[str, str]) -> Mode:
    """The mode in force; ``ValueError`` naming the allowed values for an unknown one."""
    if option:
        return Mode(_check(option, "--llm-cache-mode"), "from --llm-cache-mode")
    from_env = environ.get(ENV_VAR, "").strip()
    if from_env:
        return Mode(_check(from_env, ENV_VAR), f"from {ENV_VAR}")
    if environ.get("CI", "").strip().lower() in _TRUE:
        return Mode("replay", "default under CI=true")
    return Mode("once", "default")


def _check(value: str, where: str) -> str:
    name = value.strip().lower()
    if name not in MODES:
        raise ValueError(f"{where}: unknown mode {value!r}; use one of {', '.join(MODES)}")
    return name
