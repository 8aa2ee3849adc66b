"""The message a test fails with when a request has no recorded answer.

A bare "no match" makes people delete cassettes and re-record blindly; this names everything
needed to decide in one look: which request, which cassette, which mode (and why that mode),
the nearest recorded request and, field by field, how it differs, then the one command that
re-records just this test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_cache.testing.cassette import Cassette
from llm_cache.testing.diff import Difference, diff, format_differences
from llm_cache.testing.matching import comparable, request_key, wants_stream
from llm_cache.testing.modes import Mode

__all__ = ["MissContext", "explain_miss", "nearest"]


@dataclass(frozen=True, slots=True)
class MissContext:
    """What the explanation needs beside the request: where, how, and how to fix it."""

    cassette: Cassette
    cassette_label: str
    mode: Mode
    rerecord: str
    add_missing: str


def nearest(
    live: dict[str, Any], recorded: list[dict[str, Any]], position: int
) -> tuple[int, list[Difference]] | None:
    """Index of the recorded request closest to ``live`` and the differences to it.

    Closest: same method and URL first, then fewest differing fields, then nearest to the
    position the live request has in the test's sequence of requests.
    """
    target = comparable(live)
    best: tuple[tuple[int, int, int], int, list[Difference]] | None = None
    for index, request in enumerate(recorded):
        other = comparable(request)
        differences = diff(other, target)
        if request_key(request) == request_key(live):
            differences = differences or _kind_difference(request, live)
        endpoint = int(other["method"] != target["method"] or other["url"] != target["url"])
        score = (endpoint, len(differences), abs(index - position))
        if best is None or score < best[0]:
            best = (score, index, differences)
    if best is None:
        return None
    return best[1], best[2]


def _kind_difference(recorded: dict[str, Any], live: dict[str, Any]) -> list[Difference]:
    was, now = wants_stream(recorded), wants_stream(live)
    if was == now:
        return []
    return [
        Difference(
            "body.stream",
            f"body.stream: {was!r} != {now!r} (the recording is "
            f"{'a stream' if was else 'a full response'} and cannot be replayed as "
            f"{'a stream' if now else 'a full response'} for this endpoint)",
        )
    ]


def explain_miss(live: dict[str, Any], context: MissContext, position: int, replayed: int) -> str:
    """The full explanation for ``live`` (the ``position``-th request of the test, from 0)."""
    cassette = context.cassette
    recorded = [i.request for i in cassette.interactions]
    lines = [
        "llm-cache: this request has no recorded answer, and the mode does not allow calling "
        "the upstream.",
        "",
        f"  request:   {live['method']} {live['url']} (request {position + 1} of this test)",
        f"  cassette:  {context.cassette_label}",
        f"  mode:      {context.mode.describe(cassette.exists)}",
    ]
    if not cassette.exists:
        lines.append("  The cassette does not exist: this test was never recorded.")
    elif not recorded:
        lines.append("  The cassette holds no interactions.")
    else:
        count = len(recorded)
        lines.append(
            f"  recorded:  {count} interaction{'s' if count != 1 else ''}, "
            f"{replayed} replayed so far in this run"
        )
        lines += ["", *_nearest_lines(live, recorded, position)]
    lines += [
        "",
        "To re-record this test (calls the real API):",
        f"  {context.rerecord}",
        "or keep what is recorded and add only the missing answers:",
        f"  {context.add_missing}",
    ]
    return "\n".join(lines)


def _endpoint(request: dict[str, Any]) -> tuple[str, str]:
    target = comparable(request)
    return target["method"], target["url"]


def _nearest_lines(
    live: dict[str, Any], recorded: list[dict[str, Any]], position: int
) -> list[str]:
    found = nearest(live, recorded, position)
    assert found is not None  # ``recorded`` is not empty
    index, differences = found
    other = recorded[index]
    if _endpoint(other) != _endpoint(live):
        # A field diff against another endpoint's request would be noise: list what there is.
        counts: dict[tuple[str, str], int] = {}
        for request in recorded:
            counts[_endpoint(request)] = counts.get(_endpoint(request), 0) + 1
        return [
            "No recorded request goes to this endpoint. The cassette has:",
            *(f"  {method} {url} ({n} recorded)" for (method, url), n in counts.items()),
        ]
    lines = [f"Nearest recorded request: #{index + 1} ({other['method']} {other['url']})"]
    if not differences:
        return [*lines, "It matches this request (the answer recorded for it is unusable)."]
    count = len(differences)
    lines.append(
        f"It differs in {count} field{'s' if count != 1 else ''} (recorded != this request):"
    )
    return lines + [f"  {line}" for line in format_differences(differences)]
