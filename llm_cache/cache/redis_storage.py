"""Redis backend (standalone or Cluster), shared by every replica of the proxy.

Layout (``ns`` = ``namespace``, default ``llm_cache``; the braces are a Cluster hash tag)::

    {ns}:v:<key>     hash: d = value bytes, t = created (ms), h = hits, l = last hit (ms),
                     m:<name> = metadata; PEXPIRE = TTL
    {ns}:lru         zset: key -> recency score (HINCRBY {ns}:stats seq, monotonic across processes)
    {ns}:exp         zset: key -> expiry time (ms, Redis clock), only for entries with a TTL
    {ns}:stats       hash: hits, misses, seq -- one figure for every replica
    {ns}:lock:<key>  string: single-flight lock token (``try_lock``/``unlock``)

Every operation is one round trip: a Lua script run by EVALSHA (EVAL when the server does not
know it yet), so a lookup reads the value, refreshes recency and counts the hit or miss
atomically, and a store writes the value, indexes it and evicts least recently used entries
while the index holds more than ``max_size`` members.

TTL is Redis expiry, so values vanish on their own; the index follows: the ``exp`` zset says
which members have expired, and ``get_size``/``get_lru_key``/``get_stats`` drop them (with their
values) before counting, ``set`` drops up to a hundred of them on each call and prefers them to
live entries when it must evict, and a lookup that finds a value gone removes it from the
index. Entries removed behind our back in another way (a ``maxmemory`` policy evicting keys
that have no TTL) are counted until a lookup or an eviction meets them; run the server with
``noeviction`` or ``volatile-*`` and let ``max_size`` bound the cache.

Cluster: all of a namespace's keys carry the same hash tag ``{ns}``, so they live in one slot
and every script touches a single slot -- no command ever crosses slots. The trade-off: LRU is
exact and simple, but one shard holds the whole cache (and serves all its traffic); the other
masters only help other namespaces. Sharding the index per slot group would spread the load at
the price of approximate, per-group LRU; a deployment that needs it can run several namespaces.
Use a namespace per cache to put several caches on one server; ``clear`` removes only keys of
its own namespace (SCAN + UNLINK, never FLUSHDB) and is not atomic against concurrent writers.

redis-py is imported when a ``RedisStorage`` is built, not when this module is imported; nothing
connects until the first command. Redis errors are translated at this boundary into
:class:`~llm_cache.cache.storage.StorageError`; timeouts are short (0.25 s to connect, 0.5 s per
command; raise ``socket_timeout`` for multi-megabyte values over a slow link) so a dead server
fails fast, and a later call reconnects by itself. A command that fails on a broken connection is
sent once more on a fresh one (``retries``), which covers a restarted server; a script that had
already run before the connection broke may then count a hit twice -- harmless. Timeouts are not
retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from llm_cache.cache.storage import (
    BulkItem,
    BulkWriteError,
    CacheStorage,
    EntryInfo,
    EntryMetadata,
    StorageError,
    StoredEntry,
    hit_rate_percent,
)

if TYPE_CHECKING:
    from llm_cache.config import Config

logger = logging.getLogger("llm_cache.storage.redis")

INSTALL_HINT = "the Redis backend needs redis-py: pip install 'llm-caching[redis]'"

_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- drop up to `limit` (all when nil) index members whose expiry time has passed
local function prune(lru, exp, prefix, now, limit)
  local total = 0
  while true do
    local batch = 500
    if limit then batch = math.min(batch, limit - total) end
    if batch <= 0 then return total end
    local dead = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, batch)
    if #dead == 0 then return total end
    for _, m in ipairs(dead) do redis.call('UNLINK', prefix .. m) end
    redis.call('ZREM', lru, unpack(dead))
    redis.call('ZREM', exp, unpack(dead))
    total = total + #dead
    if #dead < batch then return total end
  end
end
"""

# KEYS: value, lru, exp, stats   ARGV: member
_GET = (
    _PRELUDE
    + """
local data = redis.call('HGET', KEYS[1], 'd')
if not data then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[4], 'misses', 1)
  return false
end
local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
-- per-entry hit count and last-hit time (ms), for the operator tools (ls, export)
redis.call('HINCRBY', KEYS[1], 'h', 1)
redis.call('HSET', KEYS[1], 'l', now_ms())
if redis.call('ZADD', KEYS[2], seq, ARGV[1]) == 1 then
  -- a value the index did not know (a clear raced a store): adopt it, TTL included
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then redis.call('ZADD', KEYS[3], now_ms() + pttl, ARGV[1]) end
end
redis.call('HINCRBY', KEYS[4], 'hits', 1)
return data
"""
)

# KEYS: value, lru, exp, stats   ARGV: member, data, ttl_ms (0 = none), max_size, prefix, meta...
_SET = (
    _PRELUDE
    + """
local member, ttl, max, prefix = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local now = now_ms()
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'd', ARGV[2], 't', now, unpack(ARGV, 6))
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[3], now + ttl, member)
else
  redis.call('ZREM', KEYS[3], member)
end
redis.call('ZADD', KEYS[2], redis.call('HINCRBY', KEYS[4], 'seq', 1), member)
local excess = redis.call('ZCARD', KEYS[2]) - max
excess = excess - prune(KEYS[2], KEYS[3], prefix, now, 100 + math.max(excess, 0))
local evicted = 0
while excess > 0 do
  local popped = redis.call('ZPOPMIN', KEYS[2], math.min(excess, 500))
  if #popped == 0 then break end
  local victims = {}
  for i = 1, #popped, 2 do
    redis.call('UNLINK', prefix .. popped[i])
    victims[#victims + 1] = popped[i]
  end
  redis.call('ZREM', KEYS[3], unpack(victims))
  excess = excess - #victims
  evicted = evicted + #victims
end
return evicted
"""
)

# KEYS: value, lru, exp   ARGV: member
_DELETE = """
local n = redis.call('UNLINK', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return n
"""

# KEYS: value, lru, stats   ARGV: member
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], redis.call('HINCRBY', KEYS[3], 'seq', 1), ARGV[1])
  return 1
end
return 0
"""

# KEYS: lru, exp, stats   ARGV: prefix   -> {size, hits, misses, lru member or false}
_STATS = (
    _PRELUDE
    + """
prune(KEYS[1], KEYS[2], ARGV[1], now_ms(), nil)
local c = redis.call('HMGET', KEYS[3], 'hits', 'misses')
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
return {redis.call('ZCARD', KEYS[1]), tonumber(c[1]) or 0, tonumber(c[2]) or 0, first[1] or false}
"""
)

# KEYS: value   -> flat field/value list without the data, plus 'size'
_INFO = """
local out = {}
local fields = redis.call('HKEYS', KEYS[1])
for _, f in ipairs(fields) do
  if f ~= 'd' then
    out[#out + 1] = f
    out[#out + 1] = redis.call('HGET', KEYS[1], f)
  end
end
if #fields == 0 then return false end
out[#out + 1] = 'size'
out[#out + 1] = redis.call('HSTRLEN', KEYS[1], 'd')
return out
"""

# KEYS: lock   ARGV: token
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _Script:
    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_SCRIPTS = {
    name: _Script(src)
    for name, src in {
        "get": _GET,
        "set": _SET,
        "delete": _DELETE,
        "touch": _TOUCH,
        "stats": _STATS,
        "info": _INFO,
        "unlock": _UNLOCK,
    }.items()
}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStorage(CacheStorage):
    """LRU + TTL cache in Redis; any number of processes may share one namespace.

    ``url`` (``redis://``/``rediss://``) wins over ``host``/``port``/``db``/``password``.
    ``cluster=True`` talks to a Redis Cluster. ``client_options`` go to the redis-py clients
    as they are (``ssl_ca_certs``, ``username``, ``max_connections``...).
    """

    backend_name = "redis"

    def __init__(
        self,
        host: str = "localhost",
        port: int = 6379,
        db: int = 0,
        password: str | None = None,
        max_size: int = 1000,
        ttl: float | None = None,
        *,
        url: str | None = None,
        cluster: bool = False,
        namespace: str = "llm_cache",
        socket_timeout: float = 0.5,
        socket_connect_timeout: float = 0.25,
        retries: int = 1,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import redis  # noqa: F401
        except ImportError as exc:  # pragma: no cover - exercised without the extra
            raise ImportError(INSTALL_HINT) from exc
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if not namespace or "{" in namespace or "}" in namespace:
            raise ValueError("namespace must be non-empty and contain no '{' or '}'")
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"url must be a redis://, rediss:// or unix:// URL, got {_mask(url)!r}"
            )
        if cluster and db and not url:
            raise ValueError("Redis Cluster has only database 0")
        self.max_size = max_size
        self.ttl = ttl
        self.namespace = namespace
        self.cluster = cluster
        self._host, self._port, self._db, self._password = host, port, db, password
        self._url = url
        self._socket_timeout = socket_timeout
        self._connect_timeout = socket_connect_timeout
        self._retries = retries
        self._options = dict(client_options or {})
        tag = "{" + namespace + "}"
        self._prefix = tag + ":v:"
        self._lru = tag + ":lru"
        self._exp = tag + ":exp"
        self._stats = tag + ":stats"
        self._lock_prefix = tag + ":lock:"
        self._pattern = _glob_escape(tag) + ":*"
        self._sync: Any = None
        self._sync_lock = threading.Lock()
        self._async: Any = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(cls, config: Config) -> RedisStorage:
        """Build from :class:`~llm_cache.config.Config` (``redis_url`` wins when set)."""
        return cls(
            host=config.redis_host,
            port=config.redis_port,
            db=config.redis_db,
            password=config.redis_password,
            max_size=config.max_size,
            ttl=config.ttl,
            url=config.redis_url or None,
            cluster=config.redis_cluster,
            namespace=config.redis_namespace,
        )

    def __repr__(self) -> str:
        where = _mask(self._url) if self._url else f"{self._host}:{self._port}/{self._db}"
        kind = "cluster " if self.cluster else ""
        return f"RedisStorage({kind}{where}, namespace={self.namespace!r})"

    # -- clients ---------------------------------------------------------------------------

    def _client_kwargs(self, *, asynchronous: bool) -> dict[str, Any]:
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        if asynchronous:
            from redis.asyncio.retry import Retry as AsyncRetry

            retry: Any = AsyncRetry(NoBackoff(), self._retries, (RedisConnectionError,))
        else:
            from redis.retry import Retry

            retry = Retry(NoBackoff(), self._retries, (RedisConnectionError,))
        kwargs: dict[str, Any] = {
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._connect_timeout,
            "retry": retry,
        }
        if not self._url:
            kwargs.update(host=self._host, port=self._port, password=self._password)
            if not self.cluster:
                kwargs["db"] = self._db
        kwargs.update(self._options)
        return kwargs

    def _build(self, *, asynchronous: bool) -> Any:
        kwargs = self._client_kwargs(asynchronous=asynchronous)
        if asynchronous:
            import redis.asyncio as aredis
            from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

            cls: Any = AsyncRedisCluster if self.cluster else aredis.Redis
        else:
            import redis
            from redis.cluster import RedisCluster

            cls = RedisCluster if self.cluster else redis.Redis
        return cls.from_url(self._url, **kwargs) if self._url else cls(**kwargs)

    def _client(self) -> Any:
        client = self._sync
        if client is None:
            with self._sync_lock:
                if self._sync is None:
                    # RedisCluster connects while it is built: do it here, inside _errors().
                    self._sync = self._build(asynchronous=False)
                client = self._sync
        return client

    def _aclient(self) -> Any:
        # redis.asyncio connections belong to the loop that opened them: one client per loop.
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            self._drop_async_client()
            self._async = self._build(asynchronous=True)
            self._async_loop = loop
        return self._async

    def _drop_async_client(self) -> None:
        """Close the async client from outside its loop, as far as that loop still allows."""
        client, loop = self._async, self._async_loop
        self._async = self._async_loop = None
        if client is None or loop is None or loop.is_closed():
            return  # a closed loop took its sockets' transports with it
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        try:
            if running is loop:
                task = loop.create_task(client.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            else:
                loop.run_until_complete(client.aclose())
        except Exception:  # pragma: no cover - best effort on shutdown paths
            logger.debug("could not close the async Redis client", exc_info=True)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        from redis.exceptions import RedisClusterException, RedisError

        try:
            yield
        except (RedisError, RedisClusterException) as exc:
            raise StorageError(f"redis: {type(exc).__name__}: {exc}") from exc

    def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        from redis.exceptions import NoScriptError

        script = _SCRIPTS[name]
        with self._errors():
            client = self._client()
            try:
                return client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return client.eval(script.source, len(keys), *keys, *args)

    async def _aeval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        from redis.exceptions import NoScriptError

        script = _SCRIPTS[name]
        with self._errors():
            client = self._aclient()
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(script.source, len(keys), *keys, *args)

    # -- arguments -------------------------------------------------------------------------

    def _vkey(self, key: str) -> str:
        return self._prefix + key

    def _set_args(
        self,
        key: str,
        data: bytes,
        metadata: EntryMetadata | Mapping[str, Any] | None,
        ttl: float | None,
    ) -> tuple[list[str], list[Any]]:
        ttl = self.ttl if ttl is None else ttl
        args: list[Any] = [key, data, _ms(ttl) if ttl is not None else 0, self.max_size]
        args.append(self._prefix)
        for name, value in (metadata or {}).items():
            if value is not None:
                args += ["m:" + str(name), value if isinstance(value, str | bytes) else str(value)]
        return [self._vkey(key), self._lru, self._exp, self._stats], args

    @staticmethod
    def _expired_now(ttl: float | None) -> bool:
        return ttl is not None and ttl <= 0

    # -- sync API --------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes | None:
        keys = [self._vkey(key), self._lru, self._exp, self._stats]
        result: bytes | None = self._eval("get", keys, [key])
        return result

    def set_bytes(
        self,
        key: str,
        data: bytes,
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        ttl = self.ttl if ttl is None else ttl
        if self._expired_now(ttl):
            self.delete(key)
            return
        keys, args = self._set_args(key, data, metadata, ttl)
        self._evicted(int(self._eval("set", keys, args) or 0))

    def delete(self, key: str) -> bool:
        return bool(self._eval("delete", [self._vkey(key), self._lru, self._exp], [key]))

    def update_access_time(self, key: str) -> None:
        self._eval("touch", [self._vkey(key), self._lru, self._stats], [key])

    def _stats_row(self, row: Sequence[Any]) -> tuple[int, int, int, str | None]:
        size, hits, misses, first = row
        return int(size), int(hits), int(misses), _text(first) if first else None

    def _raw_stats(self) -> tuple[int, int, int, str | None]:
        row = self._eval("stats", [self._lru, self._exp, self._stats], [self._prefix])
        return self._stats_row(row)

    def get_lru_key(self) -> str | None:
        return self._raw_stats()[3]

    def get_size(self) -> int:
        return self._raw_stats()[0]

    def recount_as_miss(self) -> None:
        with self._errors():
            pipe = self._client().pipeline(transaction=False)
            pipe.hincrby(self._stats, "hits", -1)
            pipe.hincrby(self._stats, "misses", 1)
            pipe.execute()

    def get_counters(self) -> tuple[int, int]:
        with self._errors():
            hits, misses = self._client().hmget(self._stats, "hits", "misses")
        return int(hits or 0), int(misses or 0)

    def get_stats(self) -> dict[str, Any]:
        size, hits, misses, _ = self._raw_stats()
        return self._stats_dict(size, hits, misses)

    def _stats_dict(self, size: int, hits: int, misses: int) -> dict[str, Any]:
        return {
            "backend": self.backend_name,
            "size": size,
            "max_size": self.max_size,
            "hits": hits,
            "misses": misses,
            "hit_rate": hit_rate_percent(hits, misses),
            "namespace": self.namespace,
        }

    def get_metadata(self, key: str) -> dict[str, Any] | None:
        """What is kept beside the value: ``created`` (epoch s), ``size`` (bytes), metadata."""
        row = self._eval("info", [self._vkey(key)], [])
        return _parse_info(row) if row else None

    def clear(self) -> None:
        with self._errors():
            client = self._client()
            client.delete(self._lru, self._exp, self._stats)
            batch: list[Any] = []
            for name in client.scan_iter(match=self._pattern, count=1000):
                batch.append(name)
                if len(batch) >= 500:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)

    def health_check(self) -> None:
        with self._errors():
            self._client().ping()

    def close(self) -> None:
        client, self._sync = self._sync, None
        if client is not None:
            client.close()
        self._drop_async_client()

    # -- async API -------------------------------------------------------------------------

    async def aget_bytes(self, key: str) -> bytes | None:
        keys = [self._vkey(key), self._lru, self._exp, self._stats]
        result: bytes | None = await self._aeval("get", keys, [key])
        return result

    async def aset_bytes(
        self,
        key: str,
        data: bytes,
        metadata: EntryMetadata | dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        ttl = self.ttl if ttl is None else ttl
        if self._expired_now(ttl):
            await self.adelete(key)
            return
        keys, args = self._set_args(key, data, metadata, ttl)
        self._evicted(int(await self._aeval("set", keys, args) or 0))

    async def adelete(self, key: str) -> bool:
        return bool(await self._aeval("delete", [self._vkey(key), self._lru, self._exp], [key]))

    async def aupdate_access_time(self, key: str) -> None:
        await self._aeval("touch", [self._vkey(key), self._lru, self._stats], [key])

    async def _araw_stats(self) -> tuple[int, int, int, str | None]:
        row = await self._aeval("stats", [self._lru, self._exp, self._stats], [self._prefix])
        return self._stats_row(row)

    async def aget_size(self) -> int:
        return (await self._araw_stats())[0]

    async def aget_lru_key(self) -> str | None:
        return (await self._araw_stats())[3]

    async def aget_stats(self) -> dict[str, Any]:
        size, hits, misses, _ = await self._araw_stats()
        return self._stats_dict(size, hits, misses)

    async def aclear(self) -> None:
        with self._errors():
            client = self._aclient()
            await client.delete(self._lru, self._exp, self._stats)
            batch: list[Any] = []
            async for name in client.scan_iter(match=self._pattern, count=1000):
                batch.append(name)
                if len(batch) >= 500:
                    await client.unlink(*batch)
                    batch.clear()
            if batch:
                await client.unlink(*batch)

    async def ahealth_check(self) -> None:
        with self._errors():
            await self._aclient().ping()

    async def aclose(self) -> None:
        client, self._async, self._async_loop = self._async, None, None
        if client is not None:
            with self._errors():
                await client.aclose()
        self.close()

    # -- entries, for the operator tools -------------------------------------------------------

    _ITER_BATCH = 200

    def iter_entries(self) -> Iterator[StoredEntry]:
        """SCAN over this namespace's values; each batch read in one pipelined round trip."""
        match = _glob_escape(self._prefix) + "*"
        with self._errors():
            client = self._client()
            batch: list[Any] = []
            for name in client.scan_iter(match=match, count=1000):
                batch.append(name)
                if len(batch) >= self._ITER_BATCH:
                    yield from self._read_entries(client, batch)
                    batch = []
            if batch:
                yield from self._read_entries(client, batch)

    def set_many_bytes(self, items: Sequence[BulkItem]) -> int:
        """The store script for every item in one pipelined round trip (not atomic: on an
        error, the items whose script ran are stored and counted in ``BulkWriteError``).
        redis-py refuses scripts in Cluster pipelines: there, one round trip per item."""
        if self.cluster:
            return super().set_many_bytes(items)
        script = _SCRIPTS["set"]
        calls = []
        for key, data, metadata, ttl in items:
            ttl = self.ttl if ttl is None else ttl
            if self._expired_now(ttl):
                continue
            calls.append(self._set_args(key, data, metadata, ttl))
        if not calls:
            return 0
        with self._errors():
            client = self._client()
            client.script_load(script.source)  # so EVALSHA in the pipeline finds it
            pipe = client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                replies = pipe.execute(raise_on_error=False)
            except Exception as exc:  # the connection failed: nothing is known to be stored
                raise BulkWriteError(0, exc) from exc
        for n, reply in enumerate(replies):
            if isinstance(reply, Exception):
                raise BulkWriteError(n, reply)
        return len(calls)

    def peek_entry(self, key: str) -> StoredEntry | None:
        with self._errors():
            found = list(self._read_entries(self._client(), [self._vkey(key)]))
        return found[0] if found else None

    def _read_entries(self, client: Any, names: list[Any]) -> Iterator[StoredEntry]:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(name)
            pipe.pttl(name)
        replies = pipe.execute()
        now = time.time()
        for i, name in enumerate(names):
            fields, pttl = replies[2 * i], replies[2 * i + 1]
            entry = _entry_of(_text(name)[len(self._prefix) :], fields, pttl, now)
            if entry is not None:
                yield entry

    async def aget_or_create_secret(self) -> bytes:
        """The server secret, kept under the namespace (``{ns}:secret``), shared by replicas."""
        name = self._lock_prefix.rsplit(":lock:", 1)[0] + ":secret"
        with self._errors():
            client = self._aclient()
            await client.set(name, secrets.token_bytes(32), nx=True)
            value = await client.get(name)
        if not isinstance(value, bytes):
            raise StorageError("redis: the server secret could not be read back")
        return value

    # -- single-flight locks across processes ----------------------------------------------

    def _lock_key(self, key: str) -> str:
        return self._lock_prefix + key

    def try_lock(self, key: str, ttl: float) -> str | None:
        """Take the lock on ``key`` for ``ttl`` seconds: a token, or ``None`` when it is held.

        The lock expires by itself, so a holder that dies frees it after ``ttl``.
        """
        token = secrets.token_hex(16)
        with self._errors():
            ok = self._client().set(self._lock_key(key), token, nx=True, px=_ms(ttl))
        return token if ok else None

    def unlock(self, key: str, token: str) -> bool:
        """Release the lock if ``token`` still holds it; ``False`` when it expired or moved on."""
        return bool(self._eval("unlock", [self._lock_key(key)], [token]))

    def is_locked(self, key: str) -> bool:
        with self._errors():
            return bool(self._client().exists(self._lock_key(key)))

    def wait_unlocked(self, key: str, timeout: float, poll_interval: float = 0.02) -> bool:
        """Poll until nobody holds the lock on ``key``; ``False`` when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self.is_locked(key):
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_interval)
        return True

    async def atry_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        with self._errors():
            ok = await self._aclient().set(self._lock_key(key), token, nx=True, px=_ms(ttl))
        return token if ok else None

    async def aunlock(self, key: str, token: str) -> bool:
        return bool(await self._aeval("unlock", [self._lock_key(key)], [token]))

    async def ais_locked(self, key: str) -> bool:
        with self._errors():
            return bool(await self._aclient().exists(self._lock_key(key)))

    async def await_unlocked(self, key: str, timeout: float, poll_interval: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while await self.ais_locked(key):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll_interval)
        return True


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _mask(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def _parse_info(row: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(row) - 1, 2):
        name, value = _text(row[i]), row[i + 1]
        if name == "t":
            out["created"] = int(value) / 1000
        elif name == "size":
            out["size"] = int(value)
        elif name.startswith("m:"):
            out[name[2:]] = _text(value)
    return out


def _entry_of(key: str, fields: Mapping[Any, Any], pttl: Any, now: float) -> StoredEntry | None:
    """A ``StoredEntry`` from a value hash (``None`` when it vanished or holds no value)."""
    row = {_text(k): v for k, v in fields.items()}
    data = row.get("d")
    if data is None:
        return None
    ttl_ms = int(pttl) if pttl is not None else -1

    def text(name: str) -> str | None:
        value = row.get("m:" + name)
        return None if value is None else _text(value) or None

    def ms(name: str) -> float | None:
        value = row.get(name)
        return None if value is None else int(value) / 1000

    info: EntryInfo = {
        "created": ms("t"),
        "last_hit": ms("l"),
        "hits": int(row.get("h") or 0),
        "expires": now + ttl_ms / 1000 if ttl_ms > 0 else None,
        "size": len(data),
        "provider": text("provider"),
        "model": text("model"),
        "endpoint": text("endpoint"),
    }
    return StoredEntry(key, data if isinstance(data, bytes) else str(data).encode(), info)
