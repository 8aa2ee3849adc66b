"""In-process single-flight: concurrent identical misses share one upstream call.

The upstream call runs in its own task (the *pump*) and publishes what it receives into a
``Flight``; every client waiting on that key, the first one included, is a subscriber that
tails the flight. So one client disconnecting does not break the others, and when the last
subscriber leaves an unfinished flight the pump is cancelled (closing the upstream request,
storing nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any


class FlightFailed(Exception):
    """The pump ended without an answer; ``cause`` says why."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
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
        #: The stored value when the answer was complete and cacheable (for conversions).
        self.value: dict[str, Any] | None = None
        #: True when the answer came from the cache (another process stored it meanwhile).
        self.from_cache = False
        #: Set by a front end that stores the answer from a reader's side (the httpx transport).
        self.stored = False
        self.subscribers = 0
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

    def finish(self, value: dict[str, Any] | None) -> None:
        """The call ended; ``value`` is its stored form when it was complete and cacheable."""
        self.done, self.value = True, value
        self._notify()

    def fail(self, error: BaseException) -> None:
        self.done, self.error = True, error
        self._notify()

    # -- subscriber side ----------------------------------------------------------------------

    async def wait_head(self) -> None:
        """Return once the status is known; raise ``FlightFailed`` if the call failed first."""
        while self.status is None:
            if self.error is not None:
                raise FlightFailed(self.error)
            await self._changed.wait()

    async def wait_done(self) -> None:
        while not self.done:
            await self._changed.wait()

    async def tail(self) -> AsyncIterator[bytes]:
        """Every body chunk, from the first, as it arrives; ends when the pump does."""
        index = 0
        while True:
            changed = self._changed
            while index < len(self.chunks):
                yield self.chunks[index]
                index += 1
            if self.done:
                return
            await changed.wait()

    async def body(self) -> bytes:
        await self.wait_done()
        return b"".join(self.chunks)


class FlightTable:
    """Key → the flight in progress for it."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def join(
        self, key: str, pump: Callable[[Flight], Coroutine[Any, Any, None]]
    ) -> tuple[Flight, bool]:
        """Subscribe to the flight for ``key``, starting ``pump(flight)`` if there is none.

        Returns the flight and whether this caller started it. Call ``leave`` when done.
        """
        flight = self._flights.get(key)
        leader = flight is None
        if flight is None:
            flight = self._flights[key] = Flight()
            flight.task = asyncio.create_task(self._run(key, flight, pump))
        flight.subscribers += 1
        return flight, leader

    def leave(self, flight: Flight) -> None:
        """Unsubscribe; the last subscriber of an unfinished flight cancels its pump."""
        flight.subscribers -= 1
        if flight.subscribers <= 0 and not flight.done and flight.task is not None:
            flight.task.cancel()

    async def _run(
        self, key: str, flight: Flight, pump: Callable[[Flight], Coroutine[Any, Any, None]]
    ) -> None:
        try:
            await pump(flight)
        except asyncio.CancelledError:
            flight.fail(ConnectionAbortedError("every client left before the answer finished"))
        except Exception as exc:
            flight.fail(exc)
        finally:
            if not flight.done:
                flight.fail(RuntimeError("upstream call ended without an outcome"))
            if self._flights.get(key) is flight:
                del self._flights[key]
