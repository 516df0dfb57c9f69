"""The shared-fragment cache: rendered fragments kept by name and parameters, dropped by surrogate key.

What is cached: the rendered HTML, surrogate keys and seed ETag of a ``SHARED_FRAGMENT`` that
built without error (never a fallback, never a personal ``me.*`` fragment, never one without
surrogate keys, since nothing could invalidate it). The key is the release (a digest of the
templates and the installed domains, so a deploy never serves another release's markup), the
fragment's name, its ``link_base`` and its sorted parameters.

Two tiers: an in-process LRU (a hit is a dict lookup: the navigation costs nothing after the first
render) and, when ``settings.redis_url`` is set, Redis (``<namespace>:fragcache:entry:<key>``,
with a set per surrogate key listing the entries tagged with it), so a new process starts warm.

Invalidation uses the edge's surrogate keys: :func:`fragments.purge.emit_purge` notes the keys on
the session, and when that transaction commits, :func:`invalidate` drops them at once from this
process's caches and, with Redis, runs one script that bumps a sequence number, deletes the tagged
entries and publishes ``"<seq> <key> <key>..."`` on a channel every process listens to. Before a
request's first lookup each process reads the sequence number (one GET); if a message it has not
yet applied exists, it waits briefly for its listener and otherwise clears its tier, so an edit is
seen by the next request in every process, not just eventually. A build that raced an
invalidation is not stored: the Redis write is conditional on the sequence number read before the
build, the in-process one on the local invalidation count. Entries, local and in Redis, expire
after :data:`TTL_SECONDS` (the edge's ``s-maxage``): the bound on anything a purge cannot name or
an invalidation that could not be delivered.

Without Redis, the processes that share a ``DATA_DIR`` (``make run``'s web workers, a
``rose-ash`` command) share an append-only log of invalidated keys there
(:data:`LOG_NAME`): a commit that purges appends one line, and every process reads what was
appended since it last looked once per request (a ``stat`` when nothing changed) and again before
it stores a build, so a build that raced an edit in another process is not kept. When the log is
replaced (it is rotated past :data:`LOG_ROTATE_BYTES`), a reader cannot know what it missed and
clears its tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import redis
import redis.asyncio

from app.metrics import FRAGMENT_CACHE
from app.settings import Settings

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import Scope

__all__ = ["LOG_NAME", "TTL_SECONDS", "CachedFragment", "FragmentCache", "invalidate"]

log = logging.getLogger("rose_ash.fragments.cache")

TTL_SECONDS = 300
MAX_ENTRIES = 2048  # in-process: parameters come from URLs (/f/blog/post-card?slug=...), so bounded
# Whole pages (fragments/page_cache.py) have their own, smaller bound: any query string makes a new
# URL, and a crawler walking /?a=1, /?a=2 ... must not push the fragments out or fill the memory.
MAX_PAGES = 256
PAGE = "page"  # the name under which page_cache.py keys whole pages
_now = time.monotonic  # the clock local entries age by (a test moves it)
CATCH_UP_SECONDS = 0.05  # how long a request waits for the listener before clearing its tier
_SCOPE_SEQ = "rose_ash.fragcache.seq"
_SCOPE_LOG = "rose_ash.fragcache.log"
LOG_NAME = "fragment-invalidations.log"  # under DATA_DIR, shared by the processes without Redis
LOG_ROTATE_BYTES = 1 << 20
_PLACEHOLDER = "<!--rose-ash-fragment:"

# Bumps the sequence, deletes every entry tagged with a key and the tag sets, publishes the keys.
# ARGV: prefix, channel, key...
_INVALIDATE = """
local prefix = ARGV[1]
local seq = redis.call('INCR', prefix .. 'seq')
for i = 3, #ARGV do
  local tag = prefix .. 'tag:' .. ARGV[i]
  for _, member in ipairs(redis.call('SMEMBERS', tag)) do
    redis.call('DEL', prefix .. 'entry:' .. member)
  end
  redis.call('DEL', tag)
end
redis.call('PUBLISH', ARGV[2], seq .. ' ' .. table.concat(ARGV, ' ', 3))
return seq
"""
# Stores an entry and tags it, unless the sequence moved since the build began.
# ARGV: prefix, expected seq, ttl, entry key, value, tag...
_PUT = """
local prefix = ARGV[1]
if tonumber(redis.call('GET', prefix .. 'seq') or '0') ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', prefix .. 'entry:' .. ARGV[4], ARGV[5], 'EX', ARGV[3])
for i = 6, #ARGV do
  local tag = prefix .. 'tag:' .. ARGV[i]
  redis.call('SADD', tag, ARGV[4])
  redis.call('EXPIRE', tag, ARGV[3])
end
return 1
"""


class CachedFragment(msgspec.Struct, frozen=True, array_like=True):
    html: str
    keys: tuple[str, ...]
    etag: str | None
    # A whole public page (fragments/page_cache.py) keeps its response headers too.
    headers: tuple[tuple[str, str], ...] = ()


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(CachedFragment)

# Every live cache of this process, for direct invalidation at commit time.
_caches: weakref.WeakSet[FragmentCache] = weakref.WeakSet()
# One synchronous client per Redis URL for the commit hook (a commit hook cannot await).
_sync_clients: dict[str, redis.Redis] = {}


def _prefix(settings: Settings) -> str:
    return f"{settings.redis_namespace}:fragcache:"


def _channel(settings: Settings) -> str:
    return f"{settings.redis_namespace}:fragcache:invalidate"


def _log_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / LOG_NAME


def _append_log(settings: Settings, keys: list[str]) -> None:
    """One line per invalidation; O_APPEND keeps concurrent writers' lines whole."""
    path = _log_path(settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (" ".join(keys) + "\n").encode())
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > LOG_ROTATE_BYTES:
            # A new file (a new inode) tells every reader to clear its tier once.
            os.replace(path, path.with_name(LOG_NAME + ".old"))
    except OSError:
        log.exception("fragment cache: could not record the invalidation of %s in %s", " ".join(keys), path)


def invalidate(settings: Settings | None, keys: Iterable[str]) -> None:
    """Drop every cached fragment tagged with one of ``keys``, here and (with Redis) everywhere.

    Called after the transaction that emitted the purge has committed (fragments/purge.py). The
    caches of this process on the same settings (or on the same database without Redis, or all of
    them for a session that names no settings) are cleared directly; with Redis, the script bumps
    the sequence, deletes the Redis entries and publishes to the other processes (without Redis, a
    line in the invalidation log tells them). It is a blocking
    call of well under a millisecond, made only by commits that purge (edits), and it has returned
    before the response that follows the commit is sent.
    """
    wanted = sorted({k for k in keys if k})
    if not wanted:
        return
    for cache in list(_caches):
        same = settings is None or cache.settings is settings or (
            not settings.redis_url and cache.settings.database_url == settings.database_url)
        if same:
            cache.drop_local(wanted)
    if settings is not None:
        _tell_the_others(settings, wanted)
        return
    # A session that names no settings (the purge job, a script's own session): each cache of this
    # process tells the processes it shares its tier with, once per tier.
    told: set[tuple[str, str]] = set()
    for cache in list(_caches):
        tier = (cache.settings.redis_url or "", cache.settings.redis_namespace if cache.settings.redis_url
                else str(cache.settings.data_dir))
        if tier not in told:
            told.add(tier)
            _tell_the_others(cache.settings, wanted)


def _tell_the_others(settings: Settings, wanted: list[str]) -> None:
    if not settings.redis_url:
        _append_log(settings, wanted)  # the other processes on this DATA_DIR read it
        return
    client = _sync_clients.get(settings.redis_url)
    if client is None:
        client = _sync_clients[settings.redis_url] = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.eval(_INVALIDATE, 0, _prefix(settings), _channel(settings), *wanted)
    except redis.RedisError:
        # The change is committed; the entries still expire within TTL_SECONDS. Processes that
        # cannot be told are no worse off than an edge whose purge job is still queued.
        log.exception("fragment cache invalidation of %s could not reach Redis", " ".join(wanted))


class FragmentCache:
    """One app's shared-fragment cache (``app.state["fragment_cache"]``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._entries: OrderedDict[str, CachedFragment] = OrderedDict()
        self._expires: dict[str, float] = {}  # monotonic deadline of each local entry
        self._pages: OrderedDict[str, None] = OrderedDict()  # the entries that are whole pages
        self._tags: dict[str, set[str]] = {}
        self._release: str | None = None
        # Bumped by every local invalidation: a build that saw it change is not stored.
        self.epoch = 0
        self._seen_seq = 0
        self._caught_up = asyncio.Event()
        self._redis: redis.asyncio.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        # Without Redis: the shared invalidation log, and how far this process has read it.
        self._log: Path | None = None if settings.redis_url else _log_path(settings)
        self._log_inode: int | None = None
        self._log_offset = 0
        if self._log is not None:
            with contextlib.suppress(OSError):
                st = os.stat(self._log)
                self._log_inode, self._log_offset = st.st_ino, st.st_size  # what came before: an empty tier
        _caches.add(self)

    # --- keys -------------------------------------------------------------------------------

    def release(self) -> str:
        """Templates and installed domains: what makes the same fragment render differently."""
        if self._release is None:
            from app.templating import TEMPLATES_DIR
            from fragments.site import NAV_LINKS

            digest = hashlib.blake2b(digest_size=8)
            for path in sorted(TEMPLATES_DIR.rglob("*.html")):
                digest.update(str(path.relative_to(TEMPLATES_DIR)).encode())
                digest.update(path.read_bytes())
            digest.update(repr(NAV_LINKS).encode())
            self._release = digest.hexdigest()
        return self._release

    def key(self, name: str, params: Mapping[str, str], link_base: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        return f"{self.release()}|{name}|{link_base}|{query}"

    # --- lookups ----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Without Redis always; with Redis only while subscribed (else another process's edit
        could go unnoticed here)."""
        return not self.settings.redis_url or self._redis is not None

    async def get(self, scope: Scope, key: str) -> CachedFragment | None:
        """The cached fragment for ``key``, or None (a miss); never raises."""
        if not self.active:
            return None
        if self._redis is not None:
            await self._check_sequence(scope)
        elif self._log is not None and _SCOPE_LOG not in scope:
            marked: Any = scope
            marked[_SCOPE_LOG] = True
            self._follow_log()
        entry = self._entries.get(key)
        if entry is not None and self._expires.get(key, 0.0) <= _now():
            self._evict(key)  # the local copy ages like the Redis one and the edge's
            entry = None
        if entry is not None:
            self._entries.move_to_end(key)
            if key in self._pages:
                self._pages.move_to_end(key)
            FRAGMENT_CACHE.labels(result="hit").inc()
            return entry
        if self._redis is not None:
            try:
                raw = await self._redis.get(_prefix(self.settings) + "entry:" + key)
            except redis.RedisError:
                log.warning("fragment cache: Redis read failed", exc_info=True)
                raw = None
            if isinstance(raw, bytes):
                entry = _DECODER.decode(raw)
                self._store_local(key, entry)
                FRAGMENT_CACHE.labels(result="hit").inc()
                return entry
        FRAGMENT_CACHE.labels(result="miss").inc()
        return None

    async def put(self, scope: Scope, key: str, entry: CachedFragment, epoch: int) -> bool:
        """Store a fragment built while the local invalidation count was ``epoch``; False if refused."""
        if not self.active or not entry.keys or _PLACEHOLDER in entry.html:
            return False  # nothing would invalidate it / it holds this request's placeholders
        if self._redis is not None:
            expected = scope.get(_SCOPE_SEQ)
            if expected is None:
                return False
            try:
                stored = await self._redis.eval(  # type: ignore[misc]
                    _PUT, 0, _prefix(self.settings), str(expected), str(TTL_SECONDS), key,
                    _ENCODER.encode(entry), *entry.keys)
            except redis.RedisError:
                log.warning("fragment cache: Redis write failed", exc_info=True)
                return False
            if not stored:
                return False
        elif self._log is not None:
            self._follow_log()  # an edit elsewhere since the build began bumps the epoch
        if epoch != self.epoch:
            return False
        self._store_local(key, entry)
        return True

    def _store_local(self, key: str, entry: CachedFragment) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        self._expires[key] = _now() + TTL_SECONDS
        for tag in entry.keys:
            self._tags.setdefault(tag, set()).add(key)
        if key.split("|", 2)[1:2] == [PAGE]:
            self._pages[key] = None
            self._pages.move_to_end(key)
            while len(self._pages) > MAX_PAGES:
                self._evict(next(iter(self._pages)))
        while len(self._entries) > MAX_ENTRIES:
            self._evict(next(iter(self._entries)))

    def _evict(self, key: str) -> None:
        old = self._entries.pop(key, None)
        self._expires.pop(key, None)
        self._pages.pop(key, None)
        for tag in old.keys if old is not None else ():
            self._tags.get(tag, set()).discard(key)

    def drop_local(self, keys: Iterable[str]) -> None:
        self.epoch += 1
        for tag in keys:
            for key in list(self._tags.pop(tag, ())):
                self._evict(key)

    def clear_local(self) -> None:
        self.epoch += 1
        self._entries.clear()
        self._tags.clear()
        self._expires.clear()
        self._pages.clear()

    # --- without Redis: the shared invalidation log -----------------------------------------

    def _follow_log(self) -> None:
        """Apply the lines other processes appended since the last look (one ``stat`` if none)."""
        assert self._log is not None
        try:
            st = os.stat(self._log)
        except FileNotFoundError:
            return
        except OSError:
            log.warning("fragment cache: invalidation log unreadable; clearing", exc_info=True)
            self.clear_local()
            return
        if st.st_ino != self._log_inode or st.st_size < self._log_offset:
            # A new (rotated) log: what the old one said since the last look is unknown.
            self.clear_local()
            self._log_inode, self._log_offset = st.st_ino, 0
        if st.st_size == self._log_offset:
            return
        try:
            with open(self._log, "rb") as f:
                f.seek(self._log_offset)
                chunk = f.read(st.st_size - self._log_offset)
        except OSError:
            log.warning("fragment cache: invalidation log unreadable; clearing", exc_info=True)
            self.clear_local()
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next look
        self._log_offset += len(complete)
        keys = complete.decode(errors="replace").split()
        if keys:
            self.drop_local(keys)

    # --- Redis: the sequence check and the listener -----------------------------------------

    async def _check_sequence(self, scope: Scope) -> None:
        """Once per request: apply every invalidation published before it began (or clear)."""
        if _SCOPE_SEQ in scope:
            return
        assert self._redis is not None
        raw: Any = scope
        try:
            seq = int(await self._redis.get(_prefix(self.settings) + "seq") or 0)
        except redis.RedisError:
            log.warning("fragment cache: Redis unreachable, serving this request uncached", exc_info=True)
            self.clear_local()
            raw[_SCOPE_SEQ] = -1  # never matches: nothing this request builds is stored
            return
        raw[_SCOPE_SEQ] = seq
        if seq <= self._seen_seq:
            return
        self._caught_up.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wait_for(seq), CATCH_UP_SECONDS)
        if seq > self._seen_seq:  # the listener is behind or lost messages: start over
            self.clear_local()
            self._seen_seq = seq

    async def _wait_for(self, seq: int) -> None:
        while self._seen_seq < seq:
            await self._caught_up.wait()
            self._caught_up.clear()

    async def _listen(self, pubsub: Any) -> None:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("fragment cache: invalidation channel lost; clearing and resubscribing",
                            exc_info=True)
                self.clear_local()
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await pubsub.subscribe(_channel(self.settings))
                continue
            if message is None or message.get("type") != "message":
                continue
            seq_text, *keys = message["data"].decode().split()
            self.drop_local(keys)
            self._seen_seq = max(self._seen_seq, int(seq_text))
            self._caught_up.set()

    @asynccontextmanager
    async def running(self, _app: Litestar) -> AsyncIterator[None]:
        """App lifespan: with Redis, subscribe to the invalidations for as long as the app runs."""
        if not self.settings.redis_url:
            yield
            return
        client = redis.asyncio.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2.0)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(_channel(self.settings))
            # Subscribed first, then read: a message published in between is applied twice at worst.
            self._seen_seq = int(await client.get(_prefix(self.settings) + "seq") or 0)
        except redis.RedisError:
            log.exception("fragment cache: Redis unreachable at start; shared fragments are not cached")
            await client.aclose()
            yield
            return
        self._redis = client
        self._listener = asyncio.create_task(self._listen(pubsub), name="fragment-cache-invalidations")
        try:
            yield
        finally:
            self._redis = None
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()
