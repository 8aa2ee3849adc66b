"""Interception of every httpx and httpx2 request, sync and async, for the test that runs.

The official openai (>= 3) and anthropic (>= 2) SDKs send through ``httpx2``; google-genai,
cohere, ollama and LangChain's own clients through ``httpx``. Whatever client the code under
test builds, and wherever (a module global, a cached default client, a fixture), its requests
reach the network through ``HTTPTransport.handle_request`` or
``AsyncHTTPTransport.handle_async_request`` of one of the two libraries. Those four methods are
patched while a test under the plugin runs, and only then; a transport that never reaches the
network (``MockTransport``, ``ASGITransport``) is left alone.

A patched method turns the request into its cassette form and asks the test's ``Player``:
a recorded answer is built into a response of the same library (a stream replayed chunk by
chunk, one event per chunk); otherwise the real method sends it and the answer is recorded on
its way to the caller. A recorded answer is decoded (no ``Content-Encoding``), and a stream is
recorded as it is read: the caller sees each event when the upstream sends it. A stream the
caller stops reading early is read to its end when closed, so the cassette holds the whole
answer.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

from llm_cache.providers.base import Framing
from llm_cache.testing.matching import key_headers_for, route_of
from llm_cache.testing.payloads import (
    body_bytes,
    body_fields,
    stream_chunks,
    stream_fields,
    stream_framing,
)
from llm_cache.testing.player import Player, Slot
from llm_cache.testing.secrets import clean_url, credential_values

__all__ = ["activate", "available_libraries", "deactivate", "live_request"]

_LIBRARIES = ("httpx2", "httpx")
#: Response headers kept in a cassette beside the content type: those an SDK acts on.
_KEPT_RESPONSE_HEADERS = ("retry-after", "retry-after-ms", "location")
_DROPPED_RESPONSE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_STREAM_FIELDS = ("events", "chunks", "chunks_base64")

_lock = threading.Lock()
_active: list[Player] = []
_patched: list[tuple[type, str, Any]] = []


def available_libraries() -> list[ModuleType]:
    """The HTTP libraries installed here, among httpx2 and httpx."""
    found: list[ModuleType] = []
    for name in _LIBRARIES:
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def activate(player: Player) -> None:
    """Route every request to ``player`` until ``deactivate`` (patches on first use)."""
    with _lock:
        if not _patched:
            for lib in available_libraries():
                _patch(lib.HTTPTransport, "handle_request", _sync_handler(lib))
                _patch(lib.AsyncHTTPTransport, "handle_async_request", _async_handler(lib))
        _active.append(player)


def deactivate(player: Player) -> None:
    """Stop routing to ``player``; the original methods are back once no test is active."""
    with _lock:
        if player in _active:
            _active.remove(player)
        if not _active:
            while _patched:
                cls, name, original = _patched.pop()
                setattr(cls, name, original)


def _patch(cls: type, name: str, make: Any) -> None:
    original = cls.__dict__[name]
    _patched.append((cls, name, original))
    setattr(cls, name, functools.wraps(original)(make(original)))


def _current() -> Player | None:
    return _active[-1] if _active else None


def live_request(request: Any) -> tuple[dict[str, Any], set[str]]:
    """The cassette form of a read httpx/httpx2 request, and the credentials it carries."""
    url = str(request.url)
    method = str(request.method).upper()
    headers = {k.lower(): v for k, v in request.headers.items()}
    cleaned = clean_url(url)
    route = route_of(method, cleaned, headers)
    kept = {h: headers[h] for h in key_headers_for(route) if h in headers}
    form: dict[str, Any] = {"method": method, "url": cleaned, "headers": kept}
    form.update(body_fields(request.content, headers.get("content-type", "")))
    return form, credential_values(request.headers.items(), url)


# -- building responses --------------------------------------------------------------------


def _answer_head(answer: dict[str, Any]) -> list[tuple[str, str]]:
    headers = [("content-type", str(answer.get("content_type") or "application/octet-stream"))]
    headers += [(str(k), str(v)) for k, v in (answer.get("headers") or {}).items()]
    return headers


def _replayed(lib: ModuleType, request: Any, answer: dict[str, Any]) -> Any:
    headers = _answer_head(answer)
    if any(name in answer for name in _STREAM_FIELDS):
        framing = stream_framing(headers[0][1])
        stream = _classes(lib).replay(stream_chunks(framing, answer))
        return lib.Response(answer["status"], headers=headers, stream=stream, request=request)
    content = body_bytes(answer)
    return lib.Response(answer["status"], headers=headers, content=content, request=request)


def _recorded_head(response: Any) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Headers passed to the caller (decoded body: no encoding or length) and the answer's
    cassette head (status, content type, the headers an SDK acts on)."""
    passed = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in _DROPPED_RESPONSE_HEADERS
    ]
    head: dict[str, Any] = {
        "status": response.status_code,
        "content_type": response.headers.get("content-type", ""),
    }
    kept = {h: response.headers[h] for h in _KEPT_RESPONSE_HEADERS if h in response.headers}
    if kept:
        head["headers"] = kept
    return passed, head


def _extensions(response: Any) -> dict[str, Any]:
    return {k: v for k, v in response.extensions.items() if k in ("http_version", "reason_phrase")}


# -- the patched methods -------------------------------------------------------------------


def _replay_or_reserve(lib: ModuleType, player: Player, request: Any) -> Any:
    """A replayed response, or the ``Slot`` that will record what the upstream sends."""
    form, credentials = live_request(request)
    answer = player.answer(form, credentials)
    if answer is not None:
        return _replayed(lib, request, answer)
    return player.reserve(form)


class _Forwarded:
    """An upstream response on its way to the caller: what both handlers do with it."""

    __slots__ = ("framing", "head", "headers", "lib", "request", "response", "slot")

    def __init__(self, lib: ModuleType, request: Any, response: Any, slot: Slot) -> None:
        self.lib, self.request, self.response, self.slot = lib, request, response, slot
        self.headers, self.head = _recorded_head(response)
        self.framing = stream_framing(self.head["content_type"])

    def whole(self, content: bytes) -> Any:
        """The response with its whole (decoded) body, recorded."""
        self.slot.response = {**self.head, **body_fields(content, self.head["content_type"])}
        return self._response(content=content)

    def streamed(self, stream: Any) -> Any:
        """The response streaming through a recording stream."""
        return self._response(stream=stream)

    def _response(self, **body: Any) -> Any:
        return self.lib.Response(
            self.head["status"],
            headers=self.headers,
            request=self.request,
            extensions=_extensions(self.response),
            **body,
        )


def _sync_handler(lib: ModuleType) -> Any:
    def make(original: Any) -> Any:
        def handle_request(self: Any, request: Any) -> Any:
            player = _current()
            if player is None or player.ignores(request.url.host):
                return original(self, request)
            request.read()
            slot = _replay_or_reserve(lib, player, request)
            if not isinstance(slot, Slot):
                return slot
            sent = _Forwarded(lib, request, original(self, request), slot)
            if sent.framing is not None:
                return sent.streamed(
                    _classes(lib).recording(sent.response, slot, sent.head, sent.framing)
                )
            try:
                return sent.whole(sent.response.read())
            finally:
                sent.response.close()

        return handle_request

    return make


def _async_handler(lib: ModuleType) -> Any:
    def make(original: Any) -> Any:
        async def handle_async_request(self: Any, request: Any) -> Any:
            player = _current()
            if player is None or player.ignores(request.url.host):
                return await original(self, request)
            await request.aread()
            slot = _replay_or_reserve(lib, player, request)
            if not isinstance(slot, Slot):
                return slot
            sent = _Forwarded(lib, request, await original(self, request), slot)
            if sent.framing is not None:
                stream = _classes(lib).async_recording(sent.response, slot, sent.head, sent.framing)
                return sent.streamed(stream)
            try:
                return sent.whole(await sent.response.aread())
            finally:
                await sent.response.aclose()

        return handle_async_request

    return make


# -- stream classes, one set per library ---------------------------------------------------


class _StreamClasses:
    __slots__ = ("async_recording", "recording", "replay")

    def __init__(self, recording: Any, async_recording: Any, replay: Any) -> None:
        self.recording = recording
        self.async_recording = async_recording
        self.replay = replay


class _Recorder:
    """What both recording streams share: the chunks so far, and filling the slot."""

    def __init__(self, slot: Slot, head: dict[str, Any], framing: Framing) -> None:
        self.slot, self.head, self.framing = slot, head, framing
        self.chunks: list[bytes] = []
        self.state = "open"  # then "done" (recorded) or "failed" (dropped)

    def finish(self) -> None:
        if self.state == "open":
            self.state = "done"
            self.slot.response = {**self.head, **stream_fields(self.framing, self.chunks)}


@functools.cache
def _classes(lib: ModuleType) -> _StreamClasses:
    class RecordingStream(lib.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(
            self, response: Any, slot: Slot, head: dict[str, Any], framing: Framing
        ) -> None:
            self._response = response
            self._recorder = _Recorder(slot, head, framing)
            self._chunks: Iterator[bytes] | None = None

        def __iter__(self) -> Iterator[bytes]:
            # Iterated again after a partial read (SDKs drain ``response.stream`` on close):
            # go on where the first loop stopped.
            if self._chunks is None:
                self._chunks = self._response.iter_bytes()
            try:
                for chunk in self._chunks:
                    self._recorder.chunks.append(chunk)
                    yield chunk
            except GeneratorExit:  # the caller stopped reading: ``close`` reads the rest
                raise
            except BaseException:
                self._recorder.state = "failed"
                raise
            self._recorder.finish()

        def close(self) -> None:
            try:
                if self._recorder.state == "open":
                    chunks = self._chunks or self._response.iter_bytes()
                    self._recorder.chunks.extend(chunks)
                    self._recorder.finish()
            except Exception:
                self._recorder.state = "failed"
            finally:
                self._response.close()

    class AsyncRecordingStream(lib.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(
            self, response: Any, slot: Slot, head: dict[str, Any], framing: Framing
        ) -> None:
            self._response = response
            self._recorder = _Recorder(slot, head, framing)
            self._chunks: AsyncIterator[bytes] | None = None

        async def __aiter__(self) -> AsyncIterator[bytes]:
            if self._chunks is None:  # see RecordingStream.__iter__
                self._chunks = self._response.aiter_bytes()
            try:
                async for chunk in self._chunks:
                    self._recorder.chunks.append(chunk)
                    yield chunk
            except GeneratorExit:  # the caller stopped reading: ``aclose`` reads the rest
                raise
            except BaseException:
                self._recorder.state = "failed"
                raise
            self._recorder.finish()

        async def aclose(self) -> None:
            try:
                if self._recorder.state == "open":
                    chunks = self._chunks or self._response.aiter_bytes()
                    self._recorder.chunks.extend([chunk async for chunk in chunks])
                    self._recorder.finish()
            except Exception:
                self._recorder.state = "failed"
            finally:
                await self._response.aclose()

    class ReplayStream(lib.SyncByteStream, lib.AsyncByteStream):  # type: ignore[name-defined,misc]
        """A recorded stream, one event per chunk, for sync and async clients alike."""

        def __init__(self, chunks: list[bytes]) -> None:
            self._chunks = iter(chunks)  # shared: a second loop goes on where one stopped

        def __iter__(self) -> Iterator[bytes]:
            yield from self._chunks

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in self._chunks:
                yield chunk

    return _StreamClasses(RecordingStream, AsyncRecordingStream, ReplayStream)
