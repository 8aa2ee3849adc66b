"""One test's recorder and player: which requests are answered from the cassette, which go
upstream and are recorded, and what is written at the end.

Library-free: the interception layer (``intercept``) turns httpx/httpx2 requests into the
cassette form, asks ``answer`` for a recorded answer, and hands what the upstream sent to a
``Slot``. Requests are recorded in the order they were made; a slot whose answer never
completed (the connection broke, a stream was cut) is dropped, so a cassette never holds a
half answer.

Replay order: the first unused recording with the request's key, then (a request repeated more
often than recorded) the last one again, as a cache would answer it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from llm_cache.engine.entry import Entry
from llm_cache.engine.exchange import render
from llm_cache.testing.cassette import Cassette, Interaction, response_bytes
from llm_cache.testing.explain import MissContext, explain_miss
from llm_cache.testing.matching import request_key, route_of, wants_stream
from llm_cache.testing.modes import Mode
from llm_cache.testing.payloads import stream_chunks, stream_fields, stream_framing

__all__ = ["CassetteMiss", "Player", "Slot"]

_STREAM_FIELDS = ("events", "chunks", "chunks_base64")


class CassetteMiss(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """A request with no recorded answer in a mode that may not record it.

    It is pytest's own test failure (a ``BaseException``, not an ``Exception``): SDK retry
    loops and ``except Exception`` blocks in the code under test let it through at once, and
    pytest shows its message without a traceback through the HTTP library.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, pytrace=False)


@dataclass(slots=True)
class Slot:
    """A recording in progress, kept in request order; filled once its answer is complete."""

    request: dict[str, Any]
    response: dict[str, Any] | None = None


class Player:
    """The state of one test under the plugin."""

    def __init__(
        self,
        cassette: Cassette,
        mode: Mode,
        context: MissContext,
        ignore_hosts: Iterable[str] = (),
    ) -> None:
        self.cassette = cassette
        self.mode = mode
        self.context = context
        #: Hosts whose requests pass through untouched (a local service the test talks to).
        self.ignore_hosts = frozenset(h.lower() for h in ignore_hosts)
        self._replays = mode.replays(cassette.exists)
        self._records = mode.records(cassette.exists)
        self._lock = threading.Lock()
        self._keys = [request_key(i.request) for i in cassette.interactions]
        self._used = [False] * len(self._keys)
        self.slots: list[Slot] = []
        self.misses: list[str] = []
        self.credentials: set[str] = set()
        self.requests = 0
        self.replayed = 0

    # -- answering ------------------------------------------------------------------------

    def ignores(self, host: str) -> bool:
        return host.lower() in self.ignore_hosts

    def answer(self, request: dict[str, Any], credentials: Iterable[str]) -> dict[str, Any] | None:
        """A recorded answer for ``request``, or ``None`` when it must go upstream.

        Raises ``CassetteMiss`` (with the full explanation) when it may not go upstream.
        """
        with self._lock:
            self.credentials.update(credentials)
            position = self.requests
            self.requests += 1
            if self._replays:
                found = self._find(request)
                if found is not None:
                    self.replayed += 1
                    return found
            if self._records:
                return None
            message = explain_miss(request, self.context, position, self.replayed)
            self.misses.append(message)
        raise CassetteMiss(message)

    def _find(self, request: dict[str, Any]) -> dict[str, Any] | None:
        key = request_key(request)
        candidates = [i for i, k in enumerate(self._keys) if k == key]
        candidates += [len(self._keys) + i for i, s in enumerate(self.slots) if s.response]
        candidates = [c for c in candidates if self._key_of(c) == key]
        want = wants_stream(request)
        unused = [c for c in candidates if c >= len(self._used) or not self._used[c]]
        for index in unused + candidates[::-1]:
            answer = self._usable(self._response_of(index), request, want)
            if answer is not None:
                if index < len(self._used):
                    self._used[index] = True
                return answer
        return None

    def _key_of(self, index: int) -> str:
        if index < len(self._keys):
            return self._keys[index]
        return request_key(self.slots[index - len(self._keys)].request)

    def _response_of(self, index: int) -> dict[str, Any]:
        if index < len(self._keys):
            return self.cassette.interactions[index].response
        response = self.slots[index - len(self._keys)].response
        assert response is not None
        return response

    def _usable(
        self, response: dict[str, Any], request: dict[str, Any], want: bool | None
    ) -> dict[str, Any] | None:
        """``response`` as the request needs it: as recorded, or converted to the other kind
        (stream vs. full) by the provider; ``None`` when it cannot be."""
        status = response["status"]
        is_stream = any(name in response for name in _STREAM_FIELDS)
        if want is None or want == is_stream or not 200 <= status < 300:
            return response
        return _convert(response, request, want)

    # -- recording ------------------------------------------------------------------------

    def reserve(self, request: dict[str, Any]) -> Slot:
        """A place in the recording for a request that goes upstream."""
        slot = Slot(request)
        with self._lock:
            self.slots.append(slot)
        return slot

    def recorded(self) -> list[Interaction]:
        """What this run recorded, in request order (complete answers only)."""
        return [Interaction(s.request, s.response) for s in self.slots if s.response is not None]

    def save(self, test_id: str, shown: str = "") -> bool:
        """Write the cassette if anything was recorded; whether a file was written.

        ``record`` (and ``once`` recording a new cassette) writes what this run recorded;
        ``new`` appends it to what was there.
        """
        fresh = self.recorded()
        if not fresh:
            return False
        keep = self.cassette.interactions if self.mode.name == "new" else []
        cassette = Cassette(self.cassette.path, [*keep, *fresh], exists=True)
        cassette.save(test_id, self.credentials, shown)
        return True


def _convert(
    response: dict[str, Any], request: dict[str, Any], want_stream: bool
) -> dict[str, Any] | None:
    headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
    route = route_of(str(request["method"]), str(request["url"]), headers)
    body = request.get("body")
    if route is None or not isinstance(body, dict):
        return None
    content_type = str(response.get("content_type") or "")
    entry = Entry(response["status"], content_type)
    if "events" in response:
        entry.frames = stream_chunks(stream_framing(content_type), response)
    else:
        entry.body = response_bytes(response)
    rendered = render(entry, want_stream=want_stream, match=route, request_body=body)
    if rendered is None:
        return None
    new_type, payload = rendered
    converted: dict[str, Any] = {"status": response["status"], "content_type": new_type}
    if want_stream:
        converted.update(
            stream_fields(stream_framing(new_type) or route.provider.framing, [payload])
        )
    else:
        converted["body"] = json.loads(payload)
    return converted
