"""Durations as operators type them: ``90s``, ``15m``, ``12h``, ``7d``, ``2w``, ``1h30m``."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; a bare number means seconds. ``ValueError`` says what is allowed."""
    raw = text.strip().lower()
    if not raw:
        raise ValueError("empty duration; use e.g. 90s, 15m, 12h, 7d or 2w")
    try:
        seconds = float(raw)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or pos == 0:
            raise ValueError(
                f"cannot read duration {text!r}; use a number with a unit: "
                "90s, 15m, 12h, 7d, 2w (or combined: 1h30m)"
            ) from None
    if seconds <= 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"duration must be positive, got {text!r}")
    return seconds
