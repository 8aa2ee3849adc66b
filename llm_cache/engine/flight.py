"""Single-flight: concurrent identical misses share one upstream call.

The upstream call runs in its own task (the *pump*) and publishes what it receives into a
``Flight``; every request waiting on that key, the first one included, is a subscriber that
tails the flight. So one client leaving does not break the others, and when the last subscriber
leaves an unfinished flight the pump is cancelled (closing the upstream request, storing
nothing) and the key is free at once.

A pump always ends its flight (answer, or the error that stopped it), whatever kills it, so no
subscriber can wait forever. Flights belong to one event loop; ``FlightTables`` keeps one table
per running loop, so an app driven from several loops never shares an ``asyncio`` object
across them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from llm_cache.engine.entry import Entry

__all__ = ["Flight", "FlightFailed", "FlightTable", "FlightTables"]


class FlightFailed(Exception):
    """The pump ended without a complete answer; ``cause`` says why."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


class Flight:
    """What one upstream call has produced so far: head, body chunks, outcome."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.is_stream = False
        self.chunks: list[bytes] = []
        self.done = False
        self.error: BaseException | None = None
        #: The answer as an entry when it was complete and storable (for conversions).
        self.entry: Entry | None = None
        #: The answer came from storage (another process stored it while we waited).
        self.from_cache = False
        self.stored = False
        self.upstream_duration: float | None = None
        self.subscribers = 0
        #: Set by the pump: whether what arrived so far is already a finished stream (the SDKs
        #: close a stream after its end marker, before the upstream's last bytes arrive).
        self.ended_cleanly: Callable[[], bool] | None = None
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    # -- pump side ----------------------------------------------------------------------------

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def publish_head(
        self, status: int, headers: list[tuple[bytes, bytes]], is_stream: bool
    ) -> None:
        self.status, self.headers, self.is_stream = status, headers, is_stream
        self._notify()

    def publish_chunk(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._notify()

    def finish(self, entry: Entry | None) -> None:
        """The call ended with its whole answer; ``entry`` when it is storable."""
        if not self.done:
            self.done, self.entry = True, entry
            self._notify()

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done, self.error = True, error
            self._notify()

    # -- subscriber side ----------------------------------------------------------------------

    async def wait_head(self) -> None:
        """Return once the status is known; ``FlightFailed`` if the call failed first."""
        while self.status is None:
            if self.error is not None:
                raise FlightFailed(self.error)
            await self._changed.wait()

    async def wait_done(self) -> None:
        while not self.done:
            await self._changed.wait()

    async def tail(self) -> AsyncIterator[bytes]:
        """Every body chunk, from the first, as it arrives. Raises ``FlightFailed`` after the
        last chunk when the call broke off, so a relayed answer is never cut short silently."""
        index = 0
        while True:
            changed = self._changed
            while index < len(self.chunks):
                yield self.chunks[index]
                index += 1
            if self.done:
                if self.error is not None:
                    raise FlightFailed(self.error)
                return
            await changed.wait()

    async def body(self) -> bytes:
        """The whole body; ``FlightFailed`` when the call broke off."""
        await self.wait_done()
        if self.error is not None:
            raise FlightFailed(self.error)
        return b"".join(self.chunks)


Pump = Callable[[Flight], Coroutine[Any, Any, None]]


class FlightTable:
    """Key → the flight in progress for it (one event loop)."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: str, pump: Pump) -> tuple[Flight, bool]:
        """Subscribe to the flight for ``key``, starting ``pump(flight)`` if there is none.
        Returns the flight and whether this caller started it. Call ``leave`` when done."""
        flight = self._flights.get(key)
        if flight is not None and flight.done:
            # Finished (its pump is only tidying up): a request that comes now is a new one
            # and makes its own call; only requests that overlap a call share its answer.
            flight = None
        leader = flight is None
        if flight is None:
            flight = self._flights[key] = Flight()
            flight.task = asyncio.ensure_future(self._run(key, flight, pump))
        flight.subscribers += 1
        return flight, leader

    def get(self, key: str) -> Flight | None:
        """The flight in progress for ``key``, if any (without joining it)."""
        return self._flights.get(key)

    def solo(self, pump: Pump) -> Flight:
        """A flight of one subscriber, outside the table (bypass requests)."""
        flight = Flight()
        flight.subscribers = 1
        flight.task = asyncio.ensure_future(self._run(None, flight, pump))
        return flight

    def leave(self, flight: Flight) -> None:
        """Unsubscribe; the last subscriber of an unfinished flight cancels its pump and frees
        the key at once (a later identical request starts afresh instead of waiting)."""
        flight.subscribers -= 1
        if flight.subscribers <= 0 and not flight.done:
            if flight.ended_cleanly is not None and flight.ended_cleanly():
                return  # only the upstream's closing bytes are missing: let it finish and store
            for key, value in list(self._flights.items()):
                if value is flight:
                    del self._flights[key]
            if flight.task is not None:
                flight.task.cancel()

    async def _run(self, key: str | None, flight: Flight, pump: Pump) -> None:
        try:
            await pump(flight)
        except asyncio.CancelledError:
            flight.fail(ConnectionAbortedError("every client left before the answer finished"))
        except BaseException as exc:
            flight.fail(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            flight.fail(RuntimeError("upstream call ended without an outcome"))
            if key is not None and self._flights.get(key) is flight:
                del self._flights[key]


class FlightTables:
    """One ``FlightTable`` per running event loop."""

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FlightTable] = (
            weakref.WeakKeyDictionary()
        )

    def current(self) -> FlightTable:
        loop = asyncio.get_running_loop()
        table = self._tables.get(loop)
        if table is None:
            table = self._tables[loop] = FlightTable()
        return table

    def __len__(self) -> int:
        return sum(len(t) for t in list(self._tables.values()))
