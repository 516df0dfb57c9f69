"""Git smart HTTP (gitprotocol-http(5)) served by C git ``--stateless-rpc`` children.

Routes, under ``/forge`` (also without ``.git``; git never sends empty path components):
``GET {owner}/{repo}.git/info/refs?service=git-upload-pack|git-receive-pack``,
``POST {owner}/{repo}.git/git-upload-pack`` and ``POST {owner}/{repo}.git/git-receive-pack``.

Per request (design/forge.md §3.1): validate the path and the service; resolve the repository
and the caller's permission in the database before any git process starts (401/404/403,
:mod:`forge.access`); check the ``Content-Type``; read the whole body first (gunzipping and
counting against our own cap; receive-pack bodies are spooled to a file); pass ``Git-Protocol``
on as ``GIT_PROTOCOL`` only if it matches Gitea's guard regex; run git in its own process group
with a controlled environment; stream its stdout with the no-cache headers; kill the group on
disconnect, timeout or idle timeout; after a push, sync the ref mirror and enqueue ``forge.push``
before the response ends, so ``git push`` returns only once the database has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import tempfile
import time
import uuid
import weakref
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
from litestar import Request, Response, Router, get, post
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Receive, Send

from app import access
from app.db import wrote_in_transaction
from app.head import HEAD_AS_GET
from app.metrics import GIT_FAST_PATH
from app.security import AuthInfo
from domains.account.models import User
from forge.access import Allowed, Denied, check_access, may_see
from forge.config import ForgeConfig
from forge.deps import DEPENDENCIES
from forge.process import Batching, Child, SpawnQueueFull, spawn, spawn_queue_full
from forge.runtime import BodyBudget, ForgeRuntime, Slot
from forge.services import OWNER_NAME, RepoService, repo_name_problem
from forge.storage import server_config

log = logging.getLogger("rose_ash.forge.http")

SERVICES = {"git-upload-pack": "upload-pack", "git-receive-pack": "receive-pack"}
# gitprotocol-http(5): smart responses must not be cached (t5551 checks these exact values).
NO_CACHE = {
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
}
# Gitea's header-injection guard for Git-Protocol (go-gitea/gitea#4002), see design/forge.md §4.
GIT_PROTOCOL = re.compile(r"^[0-9a-zA-Z]+=[0-9a-zA-Z]+(:[0-9a-zA-Z]+=[0-9a-zA-Z]+)*$")
CHUNK = 256 * 1024
# git's output pipe and our reads of it: packs stream in pieces up to this size, so a busy loop
# (four clones at once) costs git no stalls and each piece one trip through the ASGI send chain.
PIPE_SIZE = 1024 * 1024
# git writes its output in pieces of a few KiB; after a short read the next waits this long for
# more (forge/process.py BatchedPipeReader), so a pack crosses the ASGI send chain in pieces of
# hundreds of KiB. git keeps writing meanwhile (the pipe holds PIPE_SIZE), so a stream is late by
# at most one wait at its end, never by one per piece; its end (EOF) is not waited for at all.
BATCHING = Batching(size=PIPE_SIZE, batch=256 * 1024, coalesce=0.002)


# -- helpers ----------------------------------------------------------------------------------
def plain(status: int, message: str, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(message.rstrip("\n") + "\n", status_code=status, media_type="text/plain",
                    headers={**NO_CACHE, **(headers or {})})


TOO_MANY = "Too many git requests; try again shortly."
SPAWN_BUSY = "The server is busy starting git processes; try again shortly."


def admit(rt: ForgeRuntime, repo_id: uuid.UUID) -> Slot | tuple[int, str]:
    """A concurrency slot for one git child, or why not: 429 when the repository's (or the
    process's) slots are taken, 503 when the spawner thread's queue is full (forge/process.py).
    Both answers carry ``Retry-After``. Taken only once the request body has been read, so a
    slow sender holds no slot."""
    if spawn_queue_full():
        return 503, SPAWN_BUSY
    slot = rt.limiter.try_acquire(repo_id)
    return slot if slot is not None else (429, TOO_MANY)


def body_buffer(rt: ForgeRuntime) -> BodyBuffer:
    """A fetch body's buffer, counted against the process's budget (both paths use this)."""
    rt.config.ensure_state()  # the spill directory
    return BodyBuffer(rt.bodies, rt.config.max_buffered_body_bytes, rt.config.body_spill_bytes, rt.config.tmp_dir)


def split_repo(owner: str, repo: str) -> tuple[str, str] | None:
    """``owner`` and ``repo`` (with or without ``.git``) if both are safe names, else None.

    Names are looked up in the database and repositories are addressed by id on disk, so no
    path from the URL reaches the filesystem; this still refuses ``..``, empty and dotted
    components outright (t5560 "blocks bad PATH_INFO").
    """
    name = repo[:-4] if repo.endswith(".git") else repo
    if not OWNER_NAME.match(owner) or ".." in owner or repo_name_problem(name):
        return None
    return owner, name


_BAD_RAW_PATH = re.compile(rb"(^|/)\.{1,2}(/|$)|//|%2e|%2f|%5c|\\", re.IGNORECASE)


def unsafe_raw_path(request: Request[Any, Any, Any]) -> bool:
    """``..``, ``.``, empty components and encoded dots/slashes in the raw request path (t5560)."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    return bool(_BAD_RAW_PATH.search(raw.split(b"?", 1)[0]))


def git_protocol(request: Request[Any, Any, Any]) -> tuple[str | None, bool]:
    """(value for GIT_PROTOCOL or None, header valid?)."""
    raw = request.headers.get("git-protocol")
    if raw is None:
        return None, True
    raw = raw.strip()
    if len(raw) > 256 or not GIT_PROTOCOL.fullmatch(raw):
        return None, False
    return raw, True


def pkt_line(text: str) -> bytes:
    """gitprotocol-common(5): four hex digits of length (including themselves), then the data."""
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


BODIES_BUSY = "Too many git request bodies are being received at once; try again shortly."


class BodyBuffer:
    """An upload-pack body on its way in, counted against the process's :class:`BodyBudget`.

    Bodies are read whole before they take a concurrency slot, so nothing else bounds the memory
    of many arriving at once: every byte written here is taken from the budget first (past it:
    :class:`BodyError` 503 with Retry-After; 413 for a body larger than the whole budget), and
    given back by :meth:`release` once the body is admitted, refused or abandoned (both paths call
    it on every way out). Past ``spill`` bytes the body moves to a temporary file, which git then
    reads as its stdin directly."""

    def __init__(self, budget: BodyBudget | None = None, limit: int = 0, spill: int | None = None,
                 spill_dir: Path | None = None) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.file: IO[bytes] | None = None
        self._budget = budget
        self._limit = limit
        self._counted = 0
        self._spill = spill
        self._spill_dir = spill_dir

    def write(self, data: bytes) -> int:
        if self._budget is not None:
            if self._counted + len(data) > self._limit:  # would never fit, however long it waited
                raise BodyError(413, f"Request body exceeds {self._limit} bytes.")
            if not self._budget.try_take(len(data), self._limit):
                raise BodyError(503, BODIES_BUSY, retry=True)
            self._counted += len(data)
        if self.file is None and self._spill is not None and self.size + len(data) > self._spill:
            self.file = tempfile.TemporaryFile(dir=self._spill_dir)  # noqa: SIM115 - close() closes it
            self.file.writelines(self.parts)
            self.parts.clear()
        if self.file is not None:
            self.file.write(data)
        else:
            self.parts.append(data)
        self.size += len(data)
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)

    def stdin(self) -> dict[str, Any]:
        """GitRun's stdin arguments: the bytes, or the spilled file from its start."""
        if self.file is None:
            data = self.getvalue()
            self.parts.clear()  # one copy in memory while git runs, not two
            return {"stdin_bytes": data}
        self.file.flush()
        self.file.seek(0)
        return {"stdin_file": self.file}

    def release(self) -> None:
        """Give the bytes counted back to the budget (idempotent); the body itself stays."""
        if self._budget is not None and self._counted:
            self._budget.give(self._counted)
        self._counted = 0

    def close(self) -> None:
        self.release()
        self.parts.clear()
        if self.file is not None:
            self.file.close()


class BodyError(Exception):
    def __init__(self, status: int, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry = retry  # answer with Retry-After


async def read_body(request: Request[Any, Any, Any], sink: IO[bytes] | BodyBuffer, limit: int,
                    within: float | None = None) -> int:
    """Copy the whole request body into ``sink``, decoding ``Content-Encoding: gzip`` on the fly.

    Chunked and Content-Length framing are uvicorn's job; we count both the bytes received and
    the *decoded* bytes against ``limit`` (413), refuse corrupt or truncated gzip with 400 (t5562,
    design/forge.md §4), and a body that has not arrived ``within`` seconds with 408.
    """
    return await copy_body(request.headers.get("content-encoding", ""), request.stream(), sink, limit, within,
                           declared=declared_length(request.headers.get("content-length")))


def declared_length(value: str | bytes | None) -> int | None:
    """A Content-Length header's value (uvicorn has refused a malformed one), None without it."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# A gzip request body may inflate to INFLATE_RATIO times the bytes received, past its first MiB.
INFLATE_FREE = 1 << 20
INFLATE_RATIO = 100


async def copy_body(content_encoding: str, chunks: AsyncIterator[bytes], sink: IO[bytes] | BodyBuffer,
                    limit: int, within: float | None = None, *, declared: int | None = None) -> int:
    """:func:`read_body` on any stream of body chunks (the lean path reads ASGI ``receive``).
    ``declared``: the request's Content-Length; past ``limit`` it is refused before any byte is
    read (the received bytes are capped at ``limit`` too, so it could never pass)."""
    encoding = content_encoding.strip().lower()
    if encoding not in {"", "identity", "gzip", "x-gzip"}:
        raise BodyError(415, f"Unsupported Content-Encoding: {encoding}")
    if declared is not None and declared > limit:
        raise BodyError(413, f"Request body exceeds {limit} bytes.")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in {"gzip", "x-gzip"} else None
    total = 0
    received = 0

    def put(data: bytes) -> None:
        nonlocal total
        total += len(data)
        if total > limit:
            raise BodyError(413, f"Request body exceeds {limit} bytes.")
        sink.write(data)

    try:
        async with asyncio.timeout(within):  # None: no deadline
            async for chunk in chunks:
                if not chunk:
                    continue
                # The received bytes count too: gzip input may decode to nothing at all (a header
                # whose file name never ends), and would otherwise be read for ever.
                received += len(chunk)
                if received > limit:
                    raise BodyError(413, f"Request body exceeds {limit} bytes.")
                if inflater is None:
                    put(chunk)
                    continue
                try:
                    data = inflater.decompress(chunk, CHUNK)
                    put(data)
                    while inflater.unconsumed_tail:
                        put(inflater.decompress(inflater.unconsumed_tail, CHUNK))
                except zlib.error as exc:
                    raise BodyError(400, f"Corrupt gzip body: {exc}") from None
                # A git request (pkt-lines of hex object ids) inflates a few-fold; a body of zeros
                # a thousand-fold, holding the shared body budget for the price of a few KiB.
                if total > INFLATE_FREE and total > INFLATE_RATIO * received:
                    raise BodyError(400, f"The gzip body inflates more than {INFLATE_RATIO}-fold; "
                                         "send it uncompressed.")
                if inflater.eof and inflater.unused_data:
                    raise BodyError(400, "Trailing data after the gzip body.")
    except TimeoutError:
        raise BodyError(408, "The request body did not arrive in time.") from None
    if inflater is not None:
        try:
            put(inflater.flush())
        except zlib.error as exc:
            raise BodyError(400, f"Corrupt gzip body: {exc}") from None
        if not inflater.eof:
            raise BodyError(400, "Truncated gzip body.")
    return total


# -- the git child as a response stream --------------------------------------------------------
@dataclass
class GitRun:
    """One git child: argv, env and stdin, plus what to do when it is gone."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    config: ForgeConfig
    stdin_bytes: bytes | None = None
    stdin_file: IO[bytes] | None = None
    prefix: bytes = b""
    on_exit: Callable[[int | None], Awaitable[None]] | None = None
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    closed: bool = False
    # The child :meth:`start` spawned before the response began; :meth:`stream` takes it over.
    started: Child | None = None

    async def _spawn(self) -> Child:
        return await spawn(self.argv, env=self.env, cwd=self.cwd, stdin=self.stdin_file,
                           pipe_stdin=self.stdin_bytes is not None, stdout_pipe_size=PIPE_SIZE,
                           batched_stdout=BATCHING, off_loop=True)

    async def start(self) -> None:
        """Spawn git before the response starts: once a 200 has gone out, a failed spawn (a full
        spawn queue, EAGAIN, EMFILE) could only cut the body short, which git's client reports as
        a transfer error ("curl 18"); before it, the caller can still answer 503."""
        self.started = await self._spawn()

    async def stream(self) -> AsyncIterator[bytes]:
        child, self.started = self.started, None
        tasks: list[asyncio.Task[Any]] = []
        stderr_tail = bytearray()
        try:
            if self.prefix:
                yield self.prefix
            if child is None:
                child = await self._spawn()
            assert child.stdout_batches is not None and child.stderr is not None
            if self.stdin_bytes is not None:
                tasks.append(asyncio.create_task(_feed(child, self.stdin_bytes)))
            tasks.append(asyncio.create_task(_drain(child.stderr, stderr_tail)))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.config.timeout
            while True:
                wait = min(self.config.idle_timeout, deadline - loop.time())
                if wait <= 0:
                    raise TimeoutError
                async with asyncio.timeout(wait):  # cheaper than wait_for: no task per chunk
                    chunk = await child.stdout_batches.read()
                if not chunk:
                    break
                yield chunk
            async with asyncio.timeout(max(1.0, deadline - loop.time())):  # no task, as above
                await child.wait()
        except TimeoutError:
            log.warning("git %s timed out; killed", self.argv[-3:])
        except SpawnQueueFull:  # admit() said there was room; others got in first (the answer has started)
            log.warning("git %s not started: the spawn queue is full", self.argv[-3:])
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish(child, tasks, stderr_tail)

    async def _finish(self, child: Child | None, tasks: list[asyncio.Task[Any]], stderr_tail: bytearray) -> None:
        if self.closed:
            return
        self.closed = True
        code: int | None = None
        if child is not None:
            child.kill_group()  # a no-op once it has exited
            with contextlib.suppress(Exception):
                code = await asyncio.wait_for(child.wait(), 10)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            child.close_pipes()
            if code not in (0, None) and stderr_tail:
                log.info("git exited %s: %s", code, stderr_tail.decode(errors="replace").strip()[-1000:])
        try:
            if self.on_exit is not None:
                await self.on_exit(code)
        except Exception:
            log.exception("post-git work failed")
        finally:
            self.close_resources()

    def close_resources(self) -> None:
        for fn in self.cleanup:
            with contextlib.suppress(Exception):
                fn()
        self.cleanup.clear()


async def _feed(child: Child, data: bytes) -> None:
    assert child.stdin is not None
    try:
        child.stdin.write(data)
        await child.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        child.stdin.close()


async def _drain(reader: asyncio.StreamReader, tail: bytearray) -> None:
    while chunk := await reader.read(CHUNK):
        tail.extend(chunk)
        del tail[:-4096]


class RunIterator:
    """Async iterator over a :class:`GitRun` that can always be closed, started or not."""

    def __init__(self, run: GitRun) -> None:
        self.run = run
        self._gen: AsyncGenerator[bytes, None] | None = None
        # Last resort if neither the stream nor send_body ever ran (the slot must come back).
        weakref.finalize(self, run.close_resources)

    def __aiter__(self) -> RunIterator:
        return self

    async def __anext__(self) -> bytes:
        if self._gen is None:
            self._gen = self.run.stream()  # type: ignore[assignment]
        assert self._gen is not None
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()
        elif self.run.started is not None:  # spawned, never streamed: kill and reap it, then clean up
            child, self.run.started = self.run.started, None
            await self.run._finish(child, [], bytearray())
        if not self.run.closed:
            self.run.closed = True
            self.run.close_resources()


class _ClosingStreamingResponse(ASGIStreamingResponse):
    """Closes the iterator even when the client went away between chunks: Litestar cancels the
    send task then, and the generator would otherwise wait for the garbage collector."""

    __slots__ = ()

    async def send_body(self, send: Send, receive: Receive) -> None:
        try:
            await super().send_body(send, receive)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self.iterator, "aclose", None)
                if aclose is not None:
                    await aclose()


class GitStream(Stream):
    def __init__(self, run: GitRun, **kwargs: Any) -> None:
        super().__init__(RunIterator(run), **kwargs)

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        response = super().to_asgi_response(*args, **kwargs)
        response.__class__ = _ClosingStreamingResponse
        return response


# -- handlers ------------------------------------------------------------------------------
async def _authorize(request: Request[Any, Any, Any], repo_service: RepoService, rt: ForgeRuntime, owner: str,
                     repo: str, service: str) -> Allowed | Response[str]:
    names = split_repo(owner, repo)
    if names is None or unsafe_raw_path(request):
        return plain(404, "Repository not found.")
    user: User | None = request.scope.get("user")  # type: ignore[assignment]
    auth = request.scope.get("auth")
    # An admin's use of admin-only access is audited once per git operation: a fetch at its ref
    # advertisement (its POSTs may be many), a push at the POST that changes refs.
    push = service == "git-receive-pack"
    audit = ("git push" if push and request.method == "POST" else
             "git fetch" if not push and request.method == "GET" and not _is_head(request) else "")
    result = await check_access(repo_service, names[0], names[1], user,
                                auth if isinstance(auth, AuthInfo) else None,
                                "write" if push else "read", audit=audit)
    if isinstance(result, Denied):
        if result.status in (401, 404) and (moved := await _renamed(request, repo_service, names, user, auth)):
            return moved
        return plain(result.status, result.message, result.headers)
    if push and result.repo.is_archived:
        # git shows this as "remote: ..." with the HTTP status (Gitea refuses pushes to archived repos too).
        return plain(403, "This repository is archived: it is read-only.")
    if not rt.store.locate(result.repo.id).is_dir():
        log.error("repository %s has a row but no directory", result.repo.id)
        return plain(503, "Repository storage is unavailable.")
    return result


async def _renamed(request: Request[Any, Any, Any], repo_service: RepoService, names: tuple[str, str],
                   user: User | None, auth: Any) -> Response[str] | None:
    """A 301 from a renamed repository's old URL to the new one, for those who may see it.

    git follows it for the ref advertisement (``http.followRedirects=initial``, git-config(1))
    and then talks to the new URL."""
    repo = await repo_service.redirected(names[0], names[1])
    if repo is None:
        return None
    permission, _own = await repo_service.access(user, repo)
    if not may_see(repo.is_private, permission, auth if isinstance(auth, AuthInfo) else None):
        return None
    path = request.url.path
    prefix = f"/forge/{names[0]}/"
    rest = path[len(prefix):].split("/", 1)[1] if path.startswith(prefix) and "/" in path[len(prefix):] else ""
    suffix = ".git" if path[len(prefix):].split("/", 1)[0].endswith(".git") else ""
    query = request.url.query
    location = f"{prefix}{repo.name}{suffix}/{rest}" + (f"?{query}" if query else "")
    return plain(301, "This repository was renamed.", {"Location": location})


async def _release_db(repo_service: RepoService) -> None:
    """End the request's database work before git runs, in one round trip.

    Everything a git request needs from the database is known once it is authorized (and, for a
    push, its policy read); what is left is git's own work, which may last minutes. Left to the
    autocommit handler, the read-only transaction would end at the response start with three
    round trips: COMMIT, then the session's ROLLBACK as it lets the connection go, then the
    pool's reset ROLLBACK (SQLAlchemy resets a connection again unless the connection itself
    ended the transaction). Closing the connection ends it once and the pool skips its reset.
    On SQLite every round trip is a hand-off to the connection's thread and back, which a
    loaded host makes cost milliseconds, and a clone makes three requests (bench/forge_clone.py).
    Anything written (an administrator's audit record) is committed instead. The autocommit
    handler then finds the session empty and sends nothing.
    """
    db = repo_service.db
    if wrote_in_transaction(db) or db.new or db.dirty or db.deleted:
        await db.commit()
    elif db.in_transaction():
        await (await db.connection()).close()
    await db.close()


# upload-pack reads only these of server_config(); receive-pack gets all of it.
_UPLOAD_PACK_KEYS = ("uploadpack.", "transfer.hideRefs")


def _is_head(request: Request[Any, Any, Any]) -> bool:
    """A HEAD request, which app/head.py routes to the GET handler (and strips of its body)."""
    return bool(request.scope.get("state", {}).get(HEAD_AS_GET))


def _base_argv(rt: ForgeRuntime, service: str) -> list[str]:
    argv = ["git"]
    upload = service == "git-upload-pack"
    for key, value in server_config(rt.config).items():
        if not upload or key.startswith(_UPLOAD_PACK_KEYS):
            argv += ["-c", f"{key}={value}"]
    return argv


@get("/{owner:str}/{repo:str}/info/refs", name="forge:info_refs")
async def info_refs(request: Request[Any, Any, Any], repo_service: RepoService, forge_runtime: ForgeRuntime,
                    owner: str, repo: str) -> Response[Any]:
    """``GET $GIT_URL/info/refs?service=<svc>`` (gitprotocol-http(5) "Smart Clients").

    v0/v1: ``# service=<svc>`` pkt-line, flush, then git's advertisement; under protocol v2
    (``Git-Protocol: version=2``) upload-pack answers with the v2 capability advertisement and no
    preamble (gitprotocol-v2(5) "HTTP Transport"); receive-pack ignores v2 and answers v0.
    """
    service = request.query_params.get("service", "")
    if service not in SERVICES:
        return plain(403, "Only the smart protocol is served: use service=git-upload-pack or git-receive-pack.")
    protocol, ok = git_protocol(request)
    if not ok:
        return plain(400, "Invalid Git-Protocol header.")
    rt = forge_runtime
    allowed = await _authorize(request, repo_service, rt, owner, repo, service)
    if isinstance(allowed, Response):
        return allowed
    await _release_db(repo_service)
    media_type = f"application/x-{service}-advertisement"
    if _is_head(request):
        # The GET's status and headers (a streamed body: no Content-Length either), without
        # running git for a body nobody receives or taking a concurrency slot.
        return Stream(iter(()), media_type=media_type, headers=NO_CACHE, status_code=200)
    slot = admit(rt, allowed.repo.id)
    if not isinstance(slot, Slot):
        return plain(*slot, {"Retry-After": str(rt.config.retry_after)})
    path = rt.store.locate(allowed.repo.id)
    env = rt.config.git_env({"GIT_PROTOCOL": protocol} if protocol else None)
    v2 = service == "git-upload-pack" and protocol is not None and "version=2" in protocol.split(":")
    prefix = b"" if v2 else pkt_line(f"# service={service}\n") + b"0000"
    run = GitRun(argv=[*_base_argv(rt, service), SERVICES[service], "--stateless-rpc", "--advertise-refs",
                       str(path)], env=env, cwd=path, config=rt.config, prefix=prefix)
    run.cleanup.append(slot.release)
    return GitStream(run, media_type=media_type, headers=NO_CACHE, status_code=200)


async def _service(request: Request[Any, Any, Any], repo_service: RepoService, rt: ForgeRuntime, owner: str,
                   repo: str, service: str) -> Response[Any]:
    """``POST $GIT_URL/<svc>`` (gitprotocol-http(5) "Smart Service git-upload-pack/git-receive-pack")."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != f"application/x-{service}-request":
        return plain(400, f"Expected Content-Type: application/x-{service}-request.")
    protocol, ok = git_protocol(request)
    if not ok:
        return plain(400, "Invalid Git-Protocol header.")
    allowed = await _authorize(request, repo_service, rt, owner, repo, service)
    if isinstance(allowed, Response):
        return allowed
    if service == "git-upload-pack":
        await _release_db(repo_service)  # receive-pack reads its policy first (_receive_pack_run)
    repo_row = allowed.repo
    path = rt.store.locate(repo_row.id)
    extra: dict[str, str] = {"GIT_PROTOCOL": protocol} if protocol else {}
    cleanup: list[Callable[[], None]] = []
    # The body first, then the slot: a client that sends slowly (or gzip that decodes to nothing)
    # must not hold one of the repository's few slots while it does.
    try:
        if service == "git-upload-pack":
            buf = body_buffer(rt)
            cleanup.append(buf.close)
            await read_body(request, buf, rt.config.max_fetch_body_bytes, rt.config.body_timeout)
            buf.release()  # the body is in: admitted or refused below, with no wait in between
            run = GitRun(argv=[*_base_argv(rt, service), "upload-pack", "--stateless-rpc", str(path)],
                         env=rt.config.git_env(extra), cwd=path, config=rt.config, **buf.stdin())
        else:
            run = await _receive_pack_run(request, repo_service, rt, allowed, path, extra, cleanup)
    except BodyError as exc:
        for fn in cleanup:
            fn()
        return plain(exc.status, exc.message, {"Retry-After": str(rt.config.retry_after)} if exc.retry else None)
    except BaseException:
        for fn in cleanup:
            fn()
        raise
    slot = admit(rt, repo_row.id)
    if not isinstance(slot, Slot):
        for fn in cleanup:
            fn()
        return plain(*slot, {"Retry-After": str(rt.config.retry_after)})
    run.cleanup.extend([*cleanup, slot.release])
    return GitStream(run, media_type=f"application/x-{service}-result", headers=NO_CACHE, status_code=200)


async def _receive_pack_run(request: Request[Any, Any, Any], repo_service: RepoService, rt: ForgeRuntime,
                            allowed: Allowed, path: Path, extra: dict[str, str],
                            cleanup: list[Callable[[], None]]) -> GitRun:
    """Spool the push to a file, then set up receive-pack with our pre-receive hook and policy."""
    repo_row = allowed.repo
    policy = await repo_service.push_policy(repo_row)
    await _release_db(repo_service)  # before the push's body, which may take minutes to arrive
    rt.config.ensure_state()
    spool = tempfile.TemporaryFile(dir=rt.config.tmp_dir)  # noqa: SIM115 - closed by the run's cleanup
    cleanup.append(spool.close)
    await read_body(request, spool, rt.config.max_push_bytes, rt.config.timeout)
    spool.flush()
    spool.seek(0)
    report = rt.config.tmp_dir / f"push-{uuid.uuid4().hex}.json"
    cleanup.append(lambda: report.unlink(missing_ok=True))
    pusher_id = allowed.user.id if allowed.user is not None else None
    extra = {
        **extra,
        "ROSE_ASH_REPO_ID": str(repo_row.id),
        "ROSE_ASH_PUSHER_ID": str(pusher_id or ""),
        "ROSE_ASH_POLICY": policy.to_json(),
        "ROSE_ASH_HOOK_REPORT": str(report),
        "ROSE_ASH_HOOK_TIMEOUT": str(int(rt.config.hook_timeout)),
    }
    argv = [
        *_base_argv(rt, "git-receive-pack"),
        "-c", f"core.hooksPath={rt.config.hooks_dir}",
        "-c", f"receive.denyNonFastForwards={'false' if policy.allow_force_push else 'true'}",
        "receive-pack", "--stateless-rpc", str(path),
    ]
    alchemy = request.app.state.alchemy
    repo_id = repo_row.id

    async def after_push(_code: int | None) -> None:
        options: list[str] = []
        with contextlib.suppress(OSError, ValueError):
            options = list(json.loads(report.read_text()).get("push_options", []))
        session_maker = alchemy.create_session_maker()
        async with session_maker() as session, session.begin():
            await RepoService(session, rt.store).sync_refs(repo_id, actor_id=pusher_id, source="push",
                                                           push_options=options)

    return GitRun(argv=argv, env=rt.config.git_env(extra), cwd=path, config=rt.config, stdin_file=spool,
                  on_exit=after_push)


@post("/{owner:str}/{repo:str}/git-upload-pack", status_code=200, name="forge:upload_pack")
async def upload_pack(request: Request[Any, Any, Any], repo_service: RepoService, forge_runtime: ForgeRuntime,
                      owner: str, repo: str) -> Response[Any]:
    return await _service(request, repo_service, forge_runtime, owner, repo, "git-upload-pack")


@post("/{owner:str}/{repo:str}/git-receive-pack", status_code=200, name="forge:receive_pack")
async def receive_pack(request: Request[Any, Any, Any], repo_service: RepoService, forge_runtime: ForgeRuntime,
                       owner: str, repo: str) -> Response[Any]:
    return await _service(request, repo_service, forge_runtime, owner, repo, "git-receive-pack")


git_router = Router(
    path="/forge",
    route_handlers=[info_refs, upload_pack, receive_pack],
    dependencies=DEPENDENCIES,
    request_max_body_size=None,  # our own cap, on the decoded body (read_body)
    include_in_schema=False,
    opt={"exclude_from_csrf": True, **access.git()},  # Basic/token credentials only, never the cookie
)


# -- the lean path -----------------------------------------------------------------------------
# A clone is three requests (the ref advertisement, then ls-refs and fetch under protocol v2),
# and each went through the whole application stack: the access log, allowed hosts, metrics,
# strict input, the page and fragment caches, sessions, single sign-on, authentication, CSRF, the
# router, dependency injection, the guard and the streaming response's task group. Measured in
# process (bench/forge_clone.py's anonymous clone, tests/forge/test_smart_http_lean.py) that was
# about two thirds of the server's own CPU per git request, none of it needed by a git fetch,
# which reads no cookie, renders nothing and writes nothing. GitFastPath answers exactly the
# fetch requests it can prove are ordinary (one allowed Host, a well-formed path and query,
# anonymous or a personal access token, a repository the caller may read) and hands everything
# else, untouched and with its body unread, to the full application: pushes (policy, hooks,
# the ref mirror), HEAD, renamed repositories, every refusal, OAuth tokens, odd headers. A
# refusal therefore keeps the very bytes, status and headers it had (a private repository still
# looks absent), and the fast path has no refusal text of its own except for what it learns only
# once it has read the request body (which it cannot hand on): a body that is corrupt, too large
# or too slow (408), and then no free slot (429/503; the full path's very answers).
_LEAN_PATH = re.compile(r"/forge/([A-Za-z0-9_.-]{1,200})/([A-Za-z0-9_.-]{1,200})/(info/refs|git-upload-pack)")
_UPLOAD_PACK_REQUEST = b"application/x-git-upload-pack-request"
_SINGLE_HEADERS = frozenset({b"host", b"git-protocol", b"authorization", b"content-type", b"content-encoding"})


class _FallThrough(Exception):
    """This request is not one the lean path answers: the full application does."""


@dataclass(frozen=True)
class _Lean:
    """What the lean path needs from a request's headers, read once."""

    owner: str
    repo: str
    refs: bool  # GET info/refs, else POST git-upload-pack
    protocol: str | None
    authorization: str | None
    content_encoding: str
    request_id: str


class GitFastPath:
    """ASGI wrapper in front of the application's handler (installed by app/asgi.py)."""

    def __init__(self, app: Any, inner: Any, identity: Any | None) -> None:
        self.app = app
        self.inner = inner
        self.identity = identity  # app.identity.IdentityProvider: the auth middleware's own lookups
        settings = app.state.settings
        self.settings = settings
        self.hosts = frozenset(settings.allowed_hosts)
        self._sessions: Any = None

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        lean = self._parse(scope) if scope["type"] == "http" else None
        if lean is None:
            await self.inner(scope, receive, send)
            return
        try:
            await self._serve(scope, receive, send, lean)
        except _FallThrough:
            await self.inner(scope, receive, send)

    def _parse(self, scope: Any) -> _Lean | None:
        from app.logs import accepted_request_id, new_request_id

        match = _LEAN_PATH.fullmatch(scope["path"])
        if match is None:
            return None
        refs = match.group(3) == "info/refs"
        if scope["method"] != ("GET" if refs else "POST"):
            return None  # HEAD, pushes' methods, OPTIONS: the full application
        if scope.get("query_string", b"") != (b"service=git-upload-pack" if refs else b""):
            return None
        raw = scope.get("raw_path")
        if raw is not None and _BAD_RAW_PATH.search(raw.split(b"?", 1)[0]):
            return None
        # Each of these read once: two Host lines are SingleHostMiddleware's 400, and of two
        # Content-Type lines Litestar reads the first where we would read the last.
        single: dict[bytes, bytes] = {}
        request_id = b""
        for name, value in scope["headers"]:
            if name in _SINGLE_HEADERS:
                if name in single:
                    return None
                single[name] = value
            elif name == b"x-request-id":
                request_id = value
        host, protocol, authorization = single.get(b"host"), single.get(b"git-protocol"), single.get(b"authorization")
        content_type, content_encoding = single.get(b"content-type"), single.get(b"content-encoding")
        try:
            if host is None or host.decode("ascii") not in self.hosts:
                return None  # AllowedHostsMiddleware refuses it with its own 400
            git_proto: str | None = None
            if protocol is not None:
                git_proto = protocol.decode("ascii").strip()
                if len(git_proto) > 256 or not GIT_PROTOCOL.fullmatch(git_proto):
                    return None  # the handler's 400
            if not refs and (content_type or b"").split(b";", 1)[0].strip().lower() != _UPLOAD_PACK_REQUEST:
                return None  # the handler's 400
            auth = authorization.decode("latin-1") if authorization is not None else None
            encoding = (content_encoding or b"").decode("ascii")
        except UnicodeDecodeError:
            return None
        names = split_repo(match.group(1), match.group(2))
        if names is None:
            return None
        return _Lean(owner=names[0], repo=names[1], refs=refs, protocol=git_proto, authorization=auth,
                     content_encoding=encoding, request_id=accepted_request_id(request_id or None) or new_request_id())

    async def _caller(self, db: Any, header: str | None) -> tuple[User | None, AuthInfo | None, str | None]:
        """Who is asking: the auth middleware's ``_token`` for a personal access token (the same
        parsing and the same identity lookup); anything it would refuse, and OAuth tokens, fall
        through to it."""
        from app.security import OAUTH_ACCESS_PREFIX, parse_authorization

        if header is None or not header.strip():
            return None, None, None
        if self.identity is None:
            raise _FallThrough
        secret = parse_authorization(header)
        if not secret or secret.startswith(OAUTH_ACCESS_PREFIX):
            raise _FallThrough
        found = await self.identity.user_for_token(db, secret)
        if found is None:
            raise _FallThrough  # the middleware's 401 with its challenge
        return found.user, AuthInfo("token", found.scopes, found.token_id), found.user.username

    async def _serve(self, scope: Any, receive: Receive, send: Send, lean: _Lean) -> None:
        from app.logs import REQUEST_ID, access_log
        from forge.runtime import runtime_for

        rt = runtime_for(self.settings)
        if self._sessions is None:
            self._sessions = self.app.state.alchemy.create_session_maker()
        service = RepoService(self._sessions(), rt.store)
        token = REQUEST_ID.set(lean.request_id)
        started = time.perf_counter()
        username: str | None = None
        status = 500
        served = False
        slot: Slot | None = None
        try:
            try:
                try:
                    user, auth, username = await self._caller(service.db, lean.authorization)
                    # The ref advertisement starts a fetch: an administrator's use of admin-only
                    # access is audited there, as on the full path.
                    result = await check_access(service, lean.owner, lean.repo, user, auth, "read",
                                                audit="git fetch" if lean.refs else "")
                    if isinstance(result, Denied) or not rt.store.locate(result.repo.id).is_dir():
                        raise _FallThrough  # refusals (and renames, 503s) are the full path's
                    if lean.refs:
                        # No body to wait for: the slot now, before the audit record is committed,
                        # so a 429 (or 503) falls through with it rolled back and the full path
                        # audits the request once. A POST takes its slot after its body (_answer).
                        admitted = admit(rt, result.repo.id)
                        if not isinstance(admitted, Slot):
                            raise _FallThrough  # its 429/503 with Retry-After
                        slot = admitted
                    await _release_db(service)
                finally:
                    await service.db.close()  # a no-op after _release_db; a rollback when falling through
                served = True
                status = await self._answer(scope, receive, send, lean, rt, result, slot)
            except BaseException:
                if slot is not None:
                    slot.release()  # idempotent; once git ran, its run gave it back after git's exit
                raise
        finally:
            if served:
                GIT_FAST_PATH.labels("info/refs" if lean.refs else "git-upload-pack", str(status)).inc()
                access_log.info("%s %s %s", scope["method"], scope["path"], status, extra={"fields": {
                    "request_id": lean.request_id, "method": scope["method"], "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0], "user": username,
                    "lean": True,
                }})
            REQUEST_ID.reset(token)

    async def _answer(self, scope: Any, receive: Receive, send: Send, lean: _Lean, rt: ForgeRuntime,
                      allowed: Allowed, slot: Slot | None) -> int:
        """The answer; ``slot`` is the ref advertisement's, a POST takes its own once its body is in."""
        path = rt.store.locate(allowed.repo.id)
        env = rt.config.git_env({"GIT_PROTOCOL": lean.protocol} if lean.protocol else None)
        if lean.refs:
            assert slot is not None
            v2 = lean.protocol is not None and "version=2" in lean.protocol.split(":")
            prefix = b"" if v2 else pkt_line("# service=git-upload-pack\n") + b"0000"
            run = GitRun(argv=[*_base_argv(rt, "git-upload-pack"), "upload-pack", "--stateless-rpc",
                               "--advertise-refs", str(path)], env=env, cwd=path, config=rt.config, prefix=prefix)
            media_type = "application/x-git-upload-pack-advertisement"
        else:
            retry = [(b"retry-after", str(rt.config.retry_after).encode())]
            buf = body_buffer(rt)
            try:
                try:
                    await copy_body(lean.content_encoding, _receive_body(receive), buf,
                                    rt.config.max_fetch_body_bytes, rt.config.body_timeout,
                                    declared=declared_length(_header(scope, b"content-length")))
                finally:
                    buf.release()  # read, refused or abandoned: no longer waiting for a slot
            except BodyError as exc:
                buf.close()
                return await self._plain(scope, send, lean, exc.status, exc.message, extra=retry if exc.retry else None)
            except BaseException:
                buf.close()
                raise
            # The body has been read, so falling through is no longer possible: the full
            # path's refusal, same text and headers, from here.
            admitted = admit(rt, allowed.repo.id)
            if not isinstance(admitted, Slot):
                buf.close()
                return await self._plain(scope, send, lean, *admitted, extra=retry)
            slot = admitted
            try:
                stdin = buf.stdin()
            except BaseException:
                buf.close()  # the caller gives the slot back
                raise
            run = GitRun(argv=[*_base_argv(rt, "git-upload-pack"), "upload-pack", "--stateless-rpc", str(path)],
                         env=env, cwd=path, config=rt.config, **stdin)
            run.cleanup.append(buf.close)
            media_type = "application/x-git-upload-pack-result"
        run.cleanup.append(slot.release)
        try:
            await run.start()
        except (SpawnQueueFull, OSError) as exc:
            run.close_resources()  # its slot (and a spilled body) given back: nothing was started
            log.warning("git %s not started: %r", run.argv[-3:], exc)
            return await self._plain(scope, send, lean, 503, SPAWN_BUSY,
                                     extra=[(b"retry-after", str(rt.config.retry_after).encode())])
        except BaseException:  # cancelled: spawn() killed and reaped any child it had started
            run.close_resources()
            raise
        headers = [(b"content-type", media_type.encode()),
                   *((k.lower().encode(), v.encode()) for k, v in NO_CACHE.items())]
        await self._stream(scope, receive, send, lean, headers, run)
        return 200

    async def _start(self, scope: Any, send: Send, lean: _Lean, status: int,
                     headers: list[tuple[bytes, bytes]]) -> None:
        message: Any = {"type": "http.response.start", "status": status,
                        "headers": [*headers, (b"x-request-id", lean.request_id.encode())]}
        # CSP, nosniff, referrer policy, HSTS: Litestar.__call__ wraps ``send`` with the app's
        # before_send hooks (app/headers.py) before its handler (us) runs, so they apply here too.
        await send(message)

    async def _plain(self, scope: Any, send: Send, lean: _Lean, status: int, message: str,
                     extra: list[tuple[bytes, bytes]] | None = None) -> int:
        body = (message.rstrip("\n") + "\n").encode()
        await self._start(scope, send, lean, status, [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in NO_CACHE.items()), *(extra or [])])
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return status

    async def _stream(self, scope: Any, receive: Receive, send: Send, lean: _Lean,
                      headers: list[tuple[bytes, bytes]], run: GitRun) -> None:
        """git's stdout as the body, piece by piece; a client that goes away stops git (its
        process group is killed by the run's ``_finish``), as Litestar's streaming response does."""
        gen = RunIterator(run)
        try:
            async with anyio.create_task_group() as tg:
                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                await self._start(scope, send, lean, 200, headers)
                async for chunk in gen:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await gen.aclose()  # git's exit awaited (or its group killed), its slot given back


def _header(scope: Any, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _receive_body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body from ASGI ``receive``, as ``Request.stream()`` yields it."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyError(400, "The client went away while sending the request.")
        body = message.get("body", b"")
        assert isinstance(body, bytes)
        yield body
        if not message.get("more_body", False):
            return


def install_fast_path(app: Any, identity: Any | None) -> None:
    """Put :class:`GitFastPath` in front of ``app``'s ASGI handler (outside every middleware)."""
    app.asgi_handler = GitFastPath(app, app.asgi_handler, identity)
