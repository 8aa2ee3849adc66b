"""The exchange sequence, written once for every HTTP front end.

    lookup → (miss: single-flight claim → upstream call → store when complete) → answer of the
    kind asked

The proxy (ASGI) and the httpx transports are adapters: they turn their request into a
``CacheRequest``, give ``HttpCache.handle`` a way to reach the upstream (``SendUpstream``), and
turn the ``Answer`` back into their response. Modes, cross-process claims, stream tailing,
shared errors, fail-open storage and the one event per exchange all live here.

An ``Answer`` is either a whole ``body`` or a ``stream`` of chunks. A stream that raises
``FlightFailed`` means the upstream broke off: the adapter must make the client see a failure
(abort the response), never a clean end. Call ``Answer.aclose()`` when the answer was sent or
abandoned; it releases the flight and emits the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2
import orjson

from llm_cache.cache.codec import dumps_exact
from llm_cache.engine import embeddings
from llm_cache.engine import events as ev
from llm_cache.engine.controls import BadControl, Controls, read_controls
from llm_cache.engine.entry import Entry
from llm_cache.engine.events import EventBus, ExchangeEvent
from llm_cache.engine.exchange import (
    JSON_TYPE,
    BadRequest,
    answer_headers,
    bucket_key,
    complete_answer,
    credential_of,
    decode_frames,
    exchange_key,
    is_stream_type,
    parse_body,
    render,
    split_frames,
    stored_request,
    upstream_headers,
)
from llm_cache.engine.flight import Flight, FlightFailed, FlightTable, FlightTables
from llm_cache.engine.policy import CacheEngine
from llm_cache.providers.base import ProviderSpec, RouteMatch

if TYPE_CHECKING:
    from llm_cache.semantic.cache import SemanticCache

__all__ = [
    "Answer",
    "CacheRequest",
    "ClientGone",
    "HttpCache",
    "SendUpstream",
    "UpstreamResponse",
]

logger = logging.getLogger("llm_cache.engine")

Headers = list[tuple[bytes, bytes]]
#: How often a request re-tries to claim a cross-process call before making its own.
_CLAIM_ATTEMPTS = 3
T = TypeVar("T")


class ClientGone(Exception):
    """The client left while its request waited; nothing is answered."""


@dataclass(slots=True)
class CacheRequest:
    """A request as the engine sees it, whatever front end received it."""

    front_end: str
    method: str
    #: The full upstream URL, query included (what is forwarded).
    url: str
    #: The path the client asked for (for the event and logs; never the query).
    path: str
    #: Request headers to forward (the adapter removed hop-by-hop ones); raw names.
    headers: Headers
    body: bytes
    #: The provider route, or ``None`` for a path that is forwarded uncached.
    match: RouteMatch | None
    #: Lower-case name → value (a repeated header's values joined), for controls and keys.
    header_map: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class UpstreamResponse:
    """What ``SendUpstream`` returns: the head, then the decoded body chunks."""

    status: int
    headers: Headers
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]

    @property
    def content_type(self) -> str:
        for k, v in self.headers:
            if k.lower() == b"content-type":
                return v.decode("latin-1")
        return ""


#: ``send_upstream(method, url, headers, body)``: one upstream call (the adapter's client).
SendUpstream = Callable[[str, str, Headers, bytes], Awaitable[UpstreamResponse]]


class Answer:
    """What the client gets: head, then ``body`` (whole) or ``stream`` (chunks)."""

    __slots__ = (
        "_bus",
        "_closed",
        "_release",
        "_started",
        "body",
        "event",
        "headers",
        "status",
        "stream",
    )

    def __init__(
        self,
        status: int,
        headers: Headers,
        *,
        body: bytes | None = None,
        stream: AsyncIterator[bytes] | None = None,
        event: ExchangeEvent,
        bus: EventBus,
        started: float,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.status, self.headers, self.body, self.stream = status, headers, body, stream
        self.event, self._bus, self._started, self._release = event, bus, started, release
        self._closed = False
        event.http_status = status

    async def aclose(self, *, completed: bool = True) -> None:
        """The answer was sent (``completed``) or abandoned: free the flight, emit the event."""
        if self._closed:
            return
        self._closed = True
        if self.stream is not None and hasattr(self.stream, "aclose"):
            with contextlib.suppress(Exception):
                await self.stream.aclose()
        if self._release is not None:
            self._release()
        event = self.event
        event.duration = time.monotonic() - self._started
        if not completed and event.error is None:
            event.error = "the answer was not completed"
        self._bus.emit(event)


class HttpCache:
    """The HTTP cache: one per process (or per transport), shared by all its requests."""

    def __init__(
        self,
        engine: CacheEngine,
        bus: EventBus | None = None,
        *,
        isolate_by: str = "none",
        secret: str | None = None,
        semantic: SemanticCache | None = None,
    ) -> None:
        self.engine = engine
        self.semantic = semantic
        self.bus = bus if bus is not None else EventBus()
        self.flights = FlightTables()
        self.isolate_by = isolate_by
        self._secret: bytes | None = secret.encode() if secret else None
        #: Upstream URLs that refused a body rewritten by ``upstream_body`` but took the
        #: client's own: they get the client's body from then on.
        self._rejects_rewrite: set[str] = set()

    # -- the sequence -------------------------------------------------------------------------

    async def handle(
        self,
        req: CacheRequest,
        send_upstream: SendUpstream,
        gone: Callable[[], Awaitable[Any]] | None = None,
    ) -> Answer:
        """Answer ``req``. ``gone()`` (optional) returns an awaitable that completes when the
        client disconnects; waits for the upstream then end with ``ClientGone``."""
        started = time.monotonic()
        event = ExchangeEvent(req.front_end, req.method, req.path)
        match = req.match
        engine = self.engine
        if match is None or req.method != "POST":
            return await self._passthrough(req, req.body, send_upstream, event, started, "")
        provider = match.provider
        event.provider, event.endpoint = provider.name, match.endpoint
        try:
            controls = read_controls(parse_body(req.body), req.body, req.header_map)
        except (BadRequest, BadControl) as exc:
            event.error = str(exc)
            status = exc.status if isinstance(exc, BadRequest) else 400
            return self._error(provider, status, str(exc), "invalid_request_error", event, started)
        if engine.mode == "off":
            return await self._passthrough(
                req, controls.raw, send_upstream, event, started, ev.BYPASS
            )
        body = controls.body
        event.model = provider.model(match, body)
        event.namespace = controls.namespace
        reason = provider.never_cache(match.endpoint, body) or provider.never_cache_url(
            match, req.url
        )
        if reason is not None:
            logger.debug("forwarding uncached: %s", reason)
            return await self._passthrough(
                req, controls.raw, send_upstream, event, started, ev.BYPASS
            )
        tenant = await self._tenant(req) if self.isolate_by == "api_key" else ""
        try:
            key = exchange_key(match, req.url, body, req.header_map, controls.namespace, tenant)
        except BadRequest as exc:
            event.error = str(exc)
            return self._error(provider, 400, str(exc), "invalid_request_error", event, started)
        event.key = key
        want_stream = provider.wants_stream(match, body)
        store = engine.writes and not controls.no_store
        call = _Call(
            req=req,
            match=match,
            raw=controls.raw,
            upstream_body=provider.upstream_body(match.endpoint, body, want_stream),
            body=body,
            key=key,
            store=store,
            ttl=controls.ttl,
            want_stream=want_stream,
        )
        call.namespace, call.tenant = controls.namespace, tenant

        items = provider.batch_items(match.endpoint, body)
        if items is not None and controls.bucket_size == 1:
            return await self._partial(call, controls, items, tenant, send_upstream, event, started)
        slot = 0
        if engine.reads and not controls.bypass:
            slot, entry = await self._lookup(call, controls)
            if entry is not None:
                hit = self._from_entry(entry, want_stream, match, body, key, event, started)
                if hit is not None:
                    return _with_bucket(hit, controls, slot)
            if self.semantic is not None and controls.bucket_size == 1:
                from llm_cache.semantic.cache import SemanticRequestError

                try:
                    near = await self._semantic_hit(call, controls.max_age, event, started)
                except SemanticRequestError as exc:
                    event.error = str(exc)
                    return self._error(
                        provider, 400, str(exc), "invalid_request_error", event, started
                    )
                if near is not None:
                    return near
        if engine.offline or controls.only_if_cached:
            return self._not_cached(provider, key, event, started, engine.offline)
        # Filling a bucket: each request adds its own answer, no sharing.
        solo = controls.bypass or controls.bucket_size > 1
        call.key = bucket_key(key, slot)
        label = ev.BYPASS if controls.bypass else ev.MISS
        return _with_bucket(
            await self._miss(call, solo, label, send_upstream, gone, event, started),
            controls,
            slot,
        )

    async def _semantic_hit(
        self, call: _Call, max_age: float | None, event: ExchangeEvent, started: float
    ) -> Answer | None:
        """After an exact miss: the entry of a stored question that means the same (SPEC
        "Semantic cache"); readwrite/readonly only, never with ``X-Cache-Semantic: off``."""
        from llm_cache.semantic.cache import format_similarity, read_semantic_headers

        semantic, req = self.semantic, call.req
        shape = call.match.provider.semantic_shapes.get(call.match.endpoint)
        if semantic is None or shape is None:
            return None
        if not semantic.applies(self.engine.mode, req.header_map):
            return None
        _, threshold = read_semantic_headers(req.header_map)
        near = await semantic.lookup(
            call.match.provider.name,
            call.match.endpoint,
            call.body,
            threshold=threshold,
            auth=semantic.auth_for(req.url, req.header_map),
            key_of=_key_of(call),
            shape=shape,
        )
        if near is None:
            return None
        entry = await self.engine.lookup_entry(near.entry_key)
        if entry is None:
            await semantic.forget(near)  # evicted or expired since: a plain miss
            return None
        if max_age is not None and time.time() - entry.created >= max_age:
            return None
        answer = self._from_entry(
            entry,
            call.want_stream,
            call.match,
            call.body,
            near.entry_key,
            event,
            started,
            ev.SEMANTIC_HIT,
        )
        if answer is not None:
            similarity = format_similarity(near.similarity).encode()
            answer.headers.append((b"x-cache-similarity", similarity))
        return answer

    async def _miss(
        self,
        call: _Call,
        solo: bool,
        status_label: str,
        send_upstream: SendUpstream,
        gone: Callable[[], Awaitable[Any]] | None,
        event: ExchangeEvent,
        started: float,
    ) -> Answer:
        table = self.flights.current()
        if solo:
            flight = table.solo(lambda f: self._pump(f, call, send_upstream, claim=False))
            leader = True
        else:
            flight_key = call.key if call.store else call.key + ":no-store"
            hit = await self._after_ended_stream(table.get(flight_key), call, gone, event, started)
            if hit is not None:
                return hit
            flight, leader = table.join(flight_key, lambda f: self._pump(f, call, send_upstream))
        release = _releaser(table, flight)
        try:
            return await self._from_flight(
                flight, leader, call, send_upstream, gone, event, started, status_label, release
            )
        except BaseException:
            release()
            raise

    async def _after_ended_stream(
        self,
        flight: Flight | None,
        call: _Call,
        gone: Callable[[], Awaitable[Any]] | None,
        event: ExchangeEvent,
        started: float,
    ) -> Answer | None:
        """A request arriving just after a stream's end marker (its client has the whole answer
        and asks again at once) while the upstream's last bytes and the store are pending:
        wait for them and answer as a hit, as it would a moment later."""
        if (
            flight is None
            or flight.done
            or not call.store
            or flight.ended_cleanly is None
            or not flight.ended_cleanly()
        ):
            return None
        try:
            await _until(asyncio.wait_for(flight.wait_done(), 5.0), gone)
        except asyncio.TimeoutError:
            return None
        if not flight.stored or flight.entry is None:
            return None
        return self._from_entry(
            flight.entry, call.want_stream, call.match, call.body, call.key, event, started
        )

    async def _lookup(self, call: _Call, controls: Controls) -> tuple[int, Entry | None]:
        """A usable stored entry (fresh enough for ``max-age``) and its bucket slot. With a
        bucket of N: a random one of the N once all are filled, else ``None`` and the first
        free slot (``only-if-cached`` takes any filled one)."""
        max_age = controls.max_age

        def usable(entry: Entry | None) -> Entry | None:
            if entry is None or (max_age is not None and time.time() - entry.created >= max_age):
                return None
            return entry

        if controls.bucket_size == 1:
            return 0, usable(await self.engine.lookup_entry(call.key))
        entries = [
            usable(await self.engine.lookup_entry(bucket_key(call.key, i)))
            for i in range(controls.bucket_size)
        ]
        filled = [(i, e) for i, e in enumerate(entries) if e is not None]
        free = [i for i, e in enumerate(entries) if e is None]
        if free and not (controls.only_if_cached and filled):
            return free[0], None
        return random.choice(filled)

    async def _partial(
        self,
        call: _Call,
        controls: Controls,
        items: list[Any],
        tenant: str,
        send_upstream: SendUpstream,
        event: ExchangeEvent,
        started: float,
    ) -> Answer:
        """Embeddings with a list ``input``: stored items answered from storage, only the
        missing ones sent upstream (``X-Cache-Status: PARTIAL``)."""
        engine, match, req = self.engine, call.match, call.req
        keys = [
            exchange_key(
                match,
                req.url,
                {**call.body, "input": item, embeddings.ITEM_MARK: True},
                req.header_map,
                controls.namespace,
                tenant,
            )
            for item in items
        ]
        found: list[Entry | None] = [None] * len(items)
        if engine.reads and not controls.bypass:
            for i, item_key in enumerate(keys):
                entry = await engine.lookup_entry(item_key)
                if entry is not None and (
                    controls.max_age is None or time.time() - entry.created < controls.max_age
                ):
                    found[i] = entry
        missing = [i for i, entry in enumerate(found) if entry is None]
        model = match.provider.model(match, call.body)
        answers: list[dict[str, Any] | None] = [
            orjson.loads(entry.body or b"{}") if entry is not None else None for entry in found
        ]
        usage: Any = {"prompt_tokens": 0, "total_tokens": 0}
        if not missing:
            label = ev.HIT
        elif engine.offline or controls.only_if_cached:
            return self._not_cached(match.provider, call.key, event, started, engine.offline)
        else:
            label = (
                ev.BYPASS
                if controls.bypass
                else ev.PARTIAL
                if len(missing) < len(items)
                else ev.MISS
            )
            sub = {**call.body, "input": [items[i] for i in missing]}
            upstream_started = time.monotonic()
            try:
                response = await send_upstream(
                    "POST", req.url, upstream_headers(req.headers), dumps_exact(sub)
                )
                try:
                    data = b"".join([chunk async for chunk in response.chunks])
                finally:
                    await response.close()
            except (httpx2.HTTPError, OSError) as exc:
                return self._unreachable(match.provider, exc, event, started, call.key)
            event.upstream_status = response.status
            event.upstream_duration = time.monotonic() - upstream_started
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = None
            fresh = (
                embeddings.split_answer(parsed, len(missing))
                if 200 <= response.status < 300
                else None
            )
            if fresh is None:  # an error or an odd answer: passed through as it came
                event.cache_status = label
                headers = [
                    *answer_headers(response.headers),
                    *cache_headers(False, call.key, label),
                ]
                return Answer(
                    response.status, headers, body=data, event=event, bus=self.bus, started=started
                )
            assert isinstance(parsed, dict)
            usage = parsed.get("usage")
            model = str(parsed.get("model") or model)
            for i, item in zip(missing, fresh, strict=True):
                answers[i] = item
                if call.store:
                    entry = Entry(
                        response.status, JSON_TYPE, body=orjson.dumps({**item, "index": 0})
                    )
                    entry.provider, entry.endpoint, entry.model = (
                        match.provider.name,
                        match.endpoint,
                        model,
                    )
                    entry.upstream_duration = event.upstream_duration / len(missing)
                    await engine.store_entry(keys[i], entry, ttl=call.ttl)
            event.stored = call.store
        if label == ev.HIT:
            event.saved_seconds = sum(e.upstream_duration for e in found if e is not None)
        event.cache_status = label
        payload = embeddings.assemble([a for a in answers if a is not None], model, usage)
        headers = [
            (b"content-type", JSON_TYPE.encode()),
            *cache_headers(label == ev.HIT, call.key, label),
        ]
        return Answer(200, headers, body=payload, event=event, bus=self.bus, started=started)

    def _not_cached(
        self, provider: ProviderSpec, key: str, event: ExchangeEvent, started: float, offline: bool
    ) -> Answer:
        if offline:
            message = (
                f"llm-cache is in offline mode and has no cached answer for this request "
                f"(key {key}). Run it once with LLM_CACHE_MODE=readwrite to record it."
            )
            status = 404
        else:
            message = f"no cached answer for this request (key {key}) and only-if-cached was asked"
            status = 504
        event.error = "cache miss (offline)" if offline else "cache miss (only-if-cached)"
        answer = self._error(provider, status, message, "cache_miss", event, started, key)
        answer.headers.append((b"x-should-retry", b"false"))
        return answer

    async def _tenant(self, req: CacheRequest) -> str:
        """HMAC of the request's credential when tenants are isolated (never the credential)."""
        if self.isolate_by != "api_key":
            return ""
        secret = self._secret
        if secret is None:
            try:
                secret = self._secret = await self.engine.storage.aget_or_create_secret()
            except Exception as exc:  # fail closed: a per-process secret still isolates
                logger.warning(
                    "could not read the server secret (%s); using a per-process one", exc
                )
                secret = self._secret = secrets.token_bytes(32)
        credential = credential_of(req.header_map, req.url)
        if credential is None:
            return "anonymous"
        return hmac.new(secret, credential.encode(), hashlib.sha256).hexdigest()

    # -- hits ---------------------------------------------------------------------------------

    def _from_entry(
        self,
        entry: Entry,
        want_stream: bool,
        match: RouteMatch,
        body: Mapping[str, Any],
        key: str,
        event: ExchangeEvent,
        started: float,
        status_label: str = ev.HIT,
    ) -> Answer | None:
        rendered = render(entry, want_stream=want_stream, match=match, request_body=body)
        if rendered is None:
            return None
        content_type, payload = rendered
        hit = status_label in (ev.HIT, ev.SEMANTIC_HIT)
        headers = [(b"content-type", content_type.encode()), *cache_headers(hit, key, status_label)]
        if hit:
            headers.append((b"age", str(max(0, int(time.time() - entry.created))).encode()))
            event.saved_seconds = entry.upstream_duration
        event.cache_status = status_label
        event.usage = entry.usage
        return Answer(
            entry.status, headers, body=payload, event=event, bus=self.bus, started=started
        )

    # -- misses -------------------------------------------------------------------------------

    async def _from_flight(
        self,
        flight: Flight,
        leader: bool,
        call: _Call,
        send_upstream: SendUpstream,
        gone: Callable[[], Awaitable[Any]] | None,
        event: ExchangeEvent,
        started: float,
        status_label: str,
        release: Callable[[], None],
    ) -> Answer:
        try:
            await _until(flight.wait_head(), gone)
        except FlightFailed as exc:
            release()
            return self._upstream_failed(call, exc.cause, event, started)
        assert flight.status is not None
        ok = 200 <= flight.status < 300
        if flight.from_cache:
            status_label = ev.HIT  # another process stored it while we waited
        elif not leader:
            status_label = ev.COALESCED
        event.cache_status = status_label
        event.upstream_status = flight.status
        if ok and flight.is_stream != call.want_stream:
            # The other kind than asked: wait for the whole answer and convert it.
            try:
                await _until(flight.wait_done(), gone)
            finally:
                release()
            if flight.entry is not None:
                answer = self._from_entry(
                    flight.entry,
                    call.want_stream,
                    call.match,
                    call.body,
                    call.key,
                    event,
                    started,
                    status_label,
                )
                if answer is not None:
                    self._note_upstream(event, flight)
                    return answer
            if flight.error is not None:
                return self._upstream_failed(call, flight.error, event, started)
            if leader and not flight.from_cache:
                # Our own call answered the other kind (a 200 error body to a stream request):
                # that is the upstream's answer to this very request; pass it through.
                self._note_upstream(event, flight)
                headers = [*flight.headers, *cache_headers(False, call.key, status_label)]
                return Answer(
                    flight.status,
                    headers,
                    body=b"".join(flight.chunks),
                    event=event,
                    bus=self.bus,
                    started=started,
                )
            # Not convertible (or not storable): this request makes a call of its own.
            solo = self.flights.current().solo(
                lambda f: self._pump(f, call, send_upstream, claim=False)
            )
            own_release = _releaser(self.flights.current(), solo)
            try:
                return await self._from_flight(
                    solo, True, call, send_upstream, gone, event, started, status_label, own_release
                )
            except BaseException:
                own_release()
                raise
        headers = [
            *flight.headers,
            *cache_headers(status_label == ev.HIT, call.key, status_label),
        ]
        if flight.is_stream:
            chunks = self._tail(flight, event)
            return Answer(
                flight.status,
                headers,
                stream=_client_view(chunks, call) if call.upstream_body is not None else chunks,
                event=event,
                bus=self.bus,
                started=started,
                release=release,
            )
        try:
            payload = await _until(flight.body(), gone)
        except FlightFailed as exc:
            release()
            return self._upstream_failed(call, exc.cause, event, started)
        except BaseException:
            release()
            raise
        release()
        self._note_upstream(event, flight)
        return Answer(
            flight.status, headers, body=payload, event=event, bus=self.bus, started=started
        )

    async def _tail(self, flight: Flight, event: ExchangeEvent) -> AsyncIterator[bytes]:
        try:
            async for chunk in flight.tail():
                yield chunk
        except FlightFailed as exc:
            event.error = f"upstream broke off: {exc}"
            raise
        self._note_upstream(event, flight)

    @staticmethod
    def _note_upstream(event: ExchangeEvent, flight: Flight) -> None:
        event.upstream_duration = flight.upstream_duration
        event.stored = flight.stored
        if flight.entry is not None and event.usage is None:
            event.usage = flight.entry.usage

    async def _pump(
        self, flight: Flight, call: _Call, send_upstream: SendUpstream, claim: bool = True
    ) -> None:
        """Make the upstream call (once across processes when the backend can lock), publish
        what arrives, store a complete success, then end the flight."""
        engine = self.engine
        token: str | bool = True
        for _ in range(_CLAIM_ATTEMPTS if call.store and claim else 0):
            token = await engine.lock_flight(call.key)
            if token is not False:
                break
            # Another process is making this very call: wait for its answer. If it ended
            # without one (an error, or the holder died and its lock expired), claim again.
            await engine.wait_flight(call.key)
            entry = await engine.lookup_entry(call.key, count=False)
            if entry is not None:
                _publish_entry(flight, entry)
                return
        try:
            await self._call_upstream(flight, call, send_upstream)
        finally:
            await engine.unlock_flight(call.key, token)

    async def _call_upstream(
        self, flight: Flight, call: _Call, send_upstream: SendUpstream
    ) -> None:
        provider = call.match.provider
        started = time.monotonic()
        headers = upstream_headers(call.req.headers)
        rewrite = call.upstream_body is not None and call.req.url not in self._rejects_rewrite
        raw = dumps_exact(call.upstream_body) if rewrite else call.raw
        response = await send_upstream("POST", call.req.url, headers, raw)
        if rewrite and response.status in (400, 422):
            # Some OpenAI-compatible upstreams refuse what we added (``stream_options``): when
            # the error names it, ask again with the client's own body, and if that works, stop
            # adding it there. Any other error is the answer to the client's request.
            response, refused = await _names_rewritten_field(response, call)
            if refused:
                await response.close()
                response = await send_upstream("POST", call.req.url, headers, call.raw)
                if 200 <= response.status < 300:
                    self._rejects_rewrite.add(call.req.url)
        offsets: list[float] = []

        def ended_cleanly() -> bool:
            if not (flight.is_stream and 200 <= response.status < 300):
                return False
            frames = split_frames(provider, b"".join(flight.chunks))
            return provider.stream_finished(call.match.endpoint, decode_frames(provider, frames))

        flight.ended_cleanly = ended_cleanly
        try:
            content_type = response.content_type
            flight.publish_head(
                response.status,
                answer_headers(response.headers),
                is_stream_type(provider, content_type),
            )
            async for chunk in response.chunks:
                if chunk:
                    offsets.append(time.monotonic() - started)
                    flight.publish_chunk(chunk)
        finally:
            await response.close()
        flight.upstream_duration = time.monotonic() - started
        entry, why = complete_answer(
            call.match, response.status, content_type, flight.chunks, offsets
        )
        if entry is not None:
            entry.model = provider.model(call.match, call.body)
            entry.upstream_duration = flight.upstream_duration
            entry.request = stored_request(
                "POST", call.req.url, call.req.header_map, provider, call.body
            )
            if call.store:
                flight.stored = await self.engine.store_entry(
                    call.key,
                    entry,
                    ttl=call.ttl,
                    metadata={
                        "provider": provider.name,
                        "model": entry.model,
                        "endpoint": entry.endpoint,
                    },
                )
        elif 200 <= response.status < 300:
            logger.debug("not storing %s: %s", call.key[:12], why)
        flight.finish(entry)
        shape = provider.semantic_shapes.get(call.match.endpoint)
        if flight.stored and self.semantic is not None and shape is not None:
            await self.semantic.remember(  # after finish: the client never waits
                provider.name,
                call.match.endpoint,
                call.body,
                "",
                call.key,
                auth=self.semantic.auth_for(call.req.url, call.req.header_map),
                key_of=_key_of(call),
                shape=shape,
            )

    # -- pass-through and errors --------------------------------------------------------------

    async def _passthrough(
        self,
        req: CacheRequest,
        body: bytes,
        send_upstream: SendUpstream,
        event: ExchangeEvent,
        started: float,
        cache_status: str,
    ) -> Answer:
        event.cache_status = cache_status
        try:
            response = await send_upstream(req.method, req.url, upstream_headers(req.headers), body)
        except (httpx2.HTTPError, OSError) as exc:
            provider = req.match.provider if req.match else None
            return self._unreachable(provider, exc, event, started, None)
        event.upstream_status = response.status
        headers = answer_headers(response.headers)
        if cache_status:
            headers += [(b"x-cache-hit", b"false"), (b"x-cache-status", cache_status.encode())]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.chunks:
                    yield chunk
            finally:
                await response.close()

        return Answer(
            response.status, headers, stream=chunks(), event=event, bus=self.bus, started=started
        )

    def _error(
        self,
        provider: ProviderSpec,
        status: int,
        message: str,
        kind: str,
        event: ExchangeEvent,
        started: float,
        key: str | None = None,
    ) -> Answer:
        headers: Headers = [(b"content-type", provider.error_content_type.encode())]
        if key is not None:
            headers += cache_headers(False, key, event.cache_status or ev.MISS)
        return Answer(
            status,
            headers,
            body=provider.error_body(status, message, kind),
            event=event,
            bus=self.bus,
            started=started,
        )

    def _upstream_failed(
        self, call: _Call, cause: BaseException, event: ExchangeEvent, started: float
    ) -> Answer:
        if isinstance(cause, ConnectionAbortedError):
            raise ClientGone(str(cause))
        return self._unreachable(call.match.provider, cause, event, started, call.key)

    def _unreachable(
        self,
        provider: ProviderSpec | None,
        cause: BaseException,
        event: ExchangeEvent,
        started: float,
        key: str | None,
    ) -> Answer:
        from llm_cache.providers import get_provider

        provider = provider if provider is not None else get_provider("openai")
        logger.warning("upstream call failed: %s: %s", type(cause).__name__, cause)
        status = 504 if isinstance(cause, httpx2.TimeoutException) else 502
        message = (
            f"llm-cache could not reach the {provider.name} upstream: "
            f"{type(cause).__name__}: {cause}"
        )
        event.error = message
        return self._error(provider, status, message, "upstream_error", event, started, key)


@dataclass(slots=True)
class _Call:
    """Everything the pump needs to make (and store) one upstream call."""

    req: CacheRequest
    match: RouteMatch
    raw: bytes
    #: What the provider sends upstream instead of the client's body (``upstream_body``);
    #: this client then sees the answer through ``client_frames``.
    upstream_body: dict[str, Any] | None
    body: dict[str, Any]
    key: str
    store: bool
    ttl: float | None
    want_stream: bool
    namespace: str = ""
    tenant: str = ""


def _with_bucket(answer: Answer, controls: Controls, slot: int) -> Answer:
    if controls.bucket_size > 1:
        answer.headers.append((b"x-cache-bucket", str(slot).encode()))
    return answer


def cache_headers(hit: bool, key: str, status: str) -> Headers:
    return [
        (b"x-cache-hit", b"true" if hit else b"false"),
        (b"x-cache-key", key.encode()),
        (b"x-cache-status", status.encode()),
    ]


def _key_of(call: _Call) -> Callable[[Mapping[str, Any]], str]:
    """The exact key of ``call`` with another body: a semantic partition is the key of the
    request with its last user text taken out (so namespace and tenant are in it too)."""
    req = call.req
    return lambda body: exchange_key(
        call.match, req.url, body, req.header_map, call.namespace, call.tenant
    )


def _publish_entry(flight: Flight, entry: Entry) -> None:
    """Answer a flight from a stored entry, as if the upstream had just sent it."""
    flight.from_cache = True
    flight.publish_head(
        entry.status, [(b"content-type", entry.content_type.encode())], entry.is_stream
    )
    flight.publish_chunk(entry.payload)
    flight.upstream_duration = entry.upstream_duration
    flight.finish(entry)


async def _names_rewritten_field(
    response: UpstreamResponse, call: _Call
) -> tuple[UpstreamResponse, bool]:
    """Whether an error answer to a body rewritten by ``upstream_body`` names a field the
    rewrite changed; the answer is returned whole either way (its first bytes were read)."""
    assert call.upstream_body is not None
    changed = [k for k, v in call.upstream_body.items() if call.body.get(k) != v]
    head = b""
    async for chunk in response.chunks:
        head += chunk
        if len(head) > 65536:
            break
    named = any(name.encode() in head for name in changed)
    return UpstreamResponse(
        response.status, response.headers, _prepend(head, response.chunks), response.close
    ), named


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk


async def _client_view(chunks: AsyncIterator[bytes], call: _Call) -> AsyncIterator[bytes]:
    """A relayed stream as this client asked for it: the upstream was sent the provider's
    ``upstream_body`` (say, with a usage chunk added), so each complete frame goes through
    ``client_frames`` before it is sent on."""
    provider, endpoint = call.match.provider, call.match.endpoint
    splitter = provider.framing.splitter()

    def view(frames: list[bytes]) -> bytes:
        return b"".join(provider.client_frames(endpoint, frames, call.body))

    try:
        async for chunk in chunks:
            frames = splitter.feed(chunk)
            if frames:
                data = view(frames)
                if data:
                    yield data
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    rest = splitter.finish()
    if rest:
        data = view(rest)
        if data:
            yield data


def _releaser(table: FlightTable, flight: Flight) -> Callable[[], None]:
    """Leave ``flight`` once, however many paths try."""
    done = False

    def release() -> None:
        nonlocal done
        if not done:
            done = True
            table.leave(flight)

    return release


async def _until(aw: Awaitable[T], gone: Callable[[], Awaitable[Any]] | None) -> T:
    """Await ``aw``; ``ClientGone`` (``aw`` cancelled) if the client disconnects first."""
    if gone is None:
        return await aw
    task = asyncio.ensure_future(aw)
    watcher = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone("the client disconnected")
