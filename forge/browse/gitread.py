"""What the code browser reads from a repository: object parsing over the cat-file pool, and the
few questions cat-file cannot answer (history, diffs, blame, archives) as short ``git`` children.

Paths are bytes throughout: git stores file names as bytes and a repository may hold names that
are not UTF-8; they reach git's argv through ``os.fsdecode`` (surrogateescape), which gives git
the same bytes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from forge.catfile import CatFilePool, ObjectInfo
from forge.process import spawn
from forge.storage import RepoStore

FULL_OID = re.compile(r"^[0-9a-f]{40}$")
SHORT_OID = re.compile(r"^[0-9a-f]{7,40}$")
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
GIT_DEADLINE = 20.0
# Tree listings: how far back `git log` looks for each entry's last commit before giving up
# (the entries not found by then show no commit rather than making the page slow).
LAST_COMMIT_SCAN = 5000
LAST_COMMIT_DEADLINE = 5.0
LAST_COMMIT_MAX_ENTRIES = 1000  # a directory larger than this lists its entries without commits

# A pushed object can be small on the wire and huge inflated (a 900 MB commit message compresses to
# ~1 MB): pages read commits and tags only up to MAX_COMMIT_BYTES (the message is cut there) and
# trees only up to MAX_TREE_BYTES (~100,000 entries), never the whole object.
MAX_COMMIT_BYTES = 1024 * 1024
MAX_TREE_BYTES = 8 * 1024 * 1024
TRUNCATED_NOTE = "\n\n[… message truncated: the commit object is {size} bytes]"
MODE_TREE = "40000"
MODE_SYMLINK = "120000"
MODE_SUBMODULE = "160000"


class NotFound(Exception):
    """A path, ref or object that does not exist (or is malformed): the page answers 404."""


class ObjectTooLarge(Exception):
    """A commit, tag or tree beyond what a page reads (MAX_COMMIT_BYTES, MAX_TREE_BYTES): 413."""


# -- objects ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Signature:
    name: str
    email: str
    when: datetime

    @classmethod
    def parse(cls, raw: bytes) -> Signature:
        text = raw.decode(errors="replace")
        lt, gt = text.find("<"), text.rfind(">")
        name = text[:lt].strip() if lt >= 0 else text
        email = text[lt + 1:gt] if 0 <= lt < gt else ""
        when = datetime.fromtimestamp(0, UTC)
        rest = text[gt + 1:].split() if gt >= 0 else []
        with contextlib.suppress(ValueError, OverflowError, IndexError):
            seconds = int(rest[0])
            tz = rest[1] if len(rest) > 1 else "+0000"
            sign = -1 if tz.startswith("-") else 1
            offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])) * sign
            when = datetime.fromtimestamp(seconds, timezone(offset))
        return cls(name, email, when)


@dataclass(frozen=True)
class Commit:
    oid: str
    tree: str
    parents: tuple[str, ...]
    author: Signature
    committer: Signature
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def body(self) -> str:
        return self.message.partition("\n")[2].strip("\n")

    @property
    def short(self) -> str:
        return self.oid[:10]


@dataclass(frozen=True)
class Tag:
    oid: str
    target: str
    target_type: str
    name: str
    tagger: Signature | None
    message: str


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    name: bytes
    oid: str

    @property
    def kind(self) -> str:
        if self.mode == MODE_TREE:
            return "tree"
        if self.mode == MODE_SUBMODULE:
            return "submodule"
        if self.mode == MODE_SYMLINK:
            return "symlink"
        return "blob"

    @property
    def display(self) -> str:
        return self.name.decode(errors="replace")


def _headers(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A commit or tag object's header lines (continuations folded) and its message."""
    head, _, message = data.partition(b"\n\n")
    headers: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\n"):
        if line.startswith(b" ") and headers:
            key, value = headers[-1]
            headers[-1] = (key, value + b"\n" + line[1:])
        else:
            key, _, value = line.partition(b" ")
            headers.append((key, value))
    return headers, message


def _decode(message: bytes, encoding: str | None) -> str:
    if encoding:
        with contextlib.suppress(LookupError, UnicodeDecodeError):
            return message.decode(encoding)
    return message.decode(errors="replace")


def parse_commit(oid: str, data: bytes) -> Commit:
    headers, message = _headers(data)
    values: dict[bytes, bytes] = {}
    parents: list[str] = []
    for key, value in headers:
        if key == b"parent":
            parents.append(value.decode())
        else:
            values.setdefault(key, value)
    encoding = values.get(b"encoding", b"").decode(errors="replace") or None
    return Commit(oid, values.get(b"tree", b"").decode(), tuple(parents), Signature.parse(values.get(b"author", b"")),
                  Signature.parse(values.get(b"committer", b"")), _decode(message, encoding).rstrip("\n"))


def parse_tag(oid: str, data: bytes) -> Tag:
    headers, message = _headers(data)
    values = dict(headers)
    tagger = Signature.parse(values[b"tagger"]) if b"tagger" in values else None
    text = message.decode(errors="replace")
    # A signed tag's signature follows the message; it is not part of what people wrote.
    text = text.split("-----BEGIN PGP SIGNATURE-----", 1)[0].split("-----BEGIN SSH SIGNATURE-----", 1)[0]
    return Tag(oid, values.get(b"object", b"").decode(), values.get(b"type", b"").decode(),
               values.get(b"tag", b"").decode(errors="replace"), tagger, text.rstrip("\n"))


def parse_tree(data: bytes) -> list[TreeEntry]:
    """git's tree format: ``<octal mode> SP <name> NUL <20-byte id>``, repeated."""
    entries: list[TreeEntry] = []
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        mode = data[pos:space].decode()
        entries.append(TreeEntry(mode, data[space + 1:nul], data[nul + 1:nul + 21].hex()))
        pos = nul + 21
    # Directories first, then files, each by name (as Gitea lists them).
    entries.sort(key=lambda e: (e.mode != MODE_TREE, e.name.lower(), e.name))
    return entries


def split_path(path: bytes) -> list[bytes]:
    """The path's components; NotFound for anything git cannot store (``..``, NUL, absurd length)."""
    if len(path) > MAX_PATH_BYTES or b"\0" in path or b"\n" in path:
        raise NotFound
    parts = [p for p in path.strip(b"/").split(b"/")]
    if parts == [b""]:
        return []
    for part in parts:
        if part in (b"", b".", b"..") or len(part) > MAX_NAME_BYTES:
            raise NotFound
    return parts


# -- reader ---------------------------------------------------------------------------------------------
@dataclass
class Reader:
    """One repository's reads for one request."""

    store: RepoStore
    pool: CatFilePool
    repo_id: uuid.UUID
    _commits: dict[str, Commit] = field(default_factory=dict)

    async def object(self, oid: str, expect: str, *, max_size: int | None = None
                     ) -> tuple[ObjectInfo, bytes | None]:
        got = await self.pool.read(self.repo_id, oid, max_size=max_size)
        if got is None or got[0].type != expect:
            raise NotFound
        return got

    async def info(self, name: str) -> ObjectInfo | None:
        return await self.pool.info(self.repo_id, name)

    async def _bounded(self, oid: str, expect: str) -> tuple[ObjectInfo, bytes, str]:
        """A commit or tag object cut at MAX_COMMIT_BYTES, and the note to append to its message when
        it was cut; ObjectTooLarge when even its header lines do not fit."""
        got = await self.pool.read_prefix(self.repo_id, oid, MAX_COMMIT_BYTES)
        if got is None or got[0].type != expect:
            raise NotFound
        info, data, truncated = got
        if not truncated:
            return info, data, ""
        if b"\n\n" not in data:
            raise ObjectTooLarge(f"The {expect} object {info.oid} is {info.size} bytes; it is too large to show.")
        return info, data, TRUNCATED_NOTE.format(size=info.size)

    async def commit(self, oid: str) -> Commit:
        cached = self._commits.get(oid)
        if cached is not None:
            return cached
        info, data, note = await self._bounded(oid, "commit")
        commit = parse_commit(info.oid, data)
        if note:
            commit = dataclasses.replace(commit, message=commit.message + note)
        self._commits[oid] = commit
        return commit

    async def tag(self, oid: str) -> Tag:
        info, data, note = await self._bounded(oid, "tag")
        tag = parse_tag(info.oid, data)
        return dataclasses.replace(tag, message=tag.message + note) if note else tag

    async def tree(self, oid: str) -> list[TreeEntry]:
        info, data = await self.object(oid, "tree", max_size=MAX_TREE_BYTES)
        if data is None:
            raise ObjectTooLarge(f"The tree {info.oid} is {info.size} bytes; it is too large to show.")
        return parse_tree(data)

    async def resolve_sha(self, text: str) -> str:
        """A full commit id from a full or abbreviated one (tags peeled); NotFound otherwise."""
        if not SHORT_OID.match(text):
            raise NotFound
        info = await self.info(text + "^{commit}") if not FULL_OID.match(text) else await self.info(text)
        if info is None:
            raise NotFound
        if info.type == "tag":
            peeled = await self.info(info.oid + "^{commit}")
            if peeled is None:
                raise NotFound
            info = peeled
        if info.type != "commit":
            raise NotFound
        return info.oid

    async def entry_at(self, commit: Commit, parts: Sequence[bytes]) -> TreeEntry:
        """The tree entry at ``parts`` below the commit's root (a synthetic one for the root)."""
        entry = TreeEntry(MODE_TREE, b"", commit.tree)
        for part in parts:
            if entry.mode != MODE_TREE:
                raise NotFound
            found = next((e for e in await self.tree(entry.oid) if e.name == part), None)
            if found is None:
                raise NotFound
            entry = found
        return entry

    # -- children ------------------------------------------------------------------------------------
    def _argv(self, *args: str) -> list[str]:
        return ["git", "--git-dir", str(self.store.locate(self.repo_id)), "--literal-pathspecs", *args]

    async def run(self, *args: str, input: bytes | None = None) -> bytes:
        from forge.process import run

        async with asyncio.timeout(GIT_DEADLINE):
            code, out, _err = await run(self._argv(*args), env=self.store.git_env(), input=input)
        if code != 0:
            raise NotFound
        return out

    @contextlib.asynccontextmanager
    async def stream(self, *args: str) -> AsyncIterator[asyncio.StreamReader]:
        """A git child's stdout, to be read as far as needed; the child is killed on leaving."""
        child = await spawn(self._argv(*args), env=self.store.git_env())
        try:
            assert child.stdout is not None
            yield child.stdout
        finally:
            child.kill_group()
            child.close_pipes()
            with contextlib.suppress(Exception):
                child.popen.wait(timeout=1)

    async def last_commits(self, commit: str, directory: bytes, names: Sequence[bytes]
                           ) -> dict[bytes, tuple[str, int, str]]:
        """For each entry of ``directory``: (commit id, commit time, subject) of the newest commit of
        ``commit``'s history that touched it. One ``git log --name-only`` read only until every
        entry has been seen (killed then), and at most LAST_COMMIT_SCAN commits back."""
        wanted = set(names)
        found: dict[bytes, tuple[str, int, str]] = {}
        if not wanted or len(wanted) > LAST_COMMIT_MAX_ENTRIES:
            return found
        prefix = directory + b"/" if directory else b""
        spec = [os.fsdecode(prefix)] if prefix else []
        args = ["log", "-z", "--name-only", "--no-renames", f"--max-count={LAST_COMMIT_SCAN}",
                "--format=%x01%H %ct %s", commit, "--", *spec]
        current: tuple[str, int, str] | None = None
        buffer = b""
        try:
            async with asyncio.timeout(LAST_COMMIT_DEADLINE), self.stream(*args) as out:
                while len(found) < len(wanted):
                    chunk = await out.read(65536)
                    if not chunk:
                        break
                    buffer += chunk
                    *items, buffer = buffer.split(b"\0")
                    for item in items:
                        item = item.lstrip(b"\n")
                        if item.startswith(b"\x01"):
                            head = item[1:].split(b" ", 2)
                            with contextlib.suppress(ValueError, IndexError):
                                current = (head[0].decode(), int(head[1]),
                                           head[2].decode(errors="replace") if len(head) > 2 else "")
                            continue
                        if current is None or not item.startswith(prefix):
                            continue
                        name = item[len(prefix):].split(b"/", 1)[0]
                        if name in wanted and name not in found:
                            found[name] = current
        except TimeoutError:
            pass  # a partial answer: the entries not reached show no commit
        return found

    async def log(self, start: str, *, path: bytes = b"", limit: int = 50, skip_first: bool = False) -> list[str]:
        """Commit ids of ``start``'s history (date order), optionally only those touching ``path``."""
        spec = ["--", os.fsdecode(path)] if path else ["--"]
        out = await self.run("log", "--date-order", "--format=%H", f"--max-count={limit + int(skip_first)}",
                             start, *spec)
        oids = out.decode().split()
        return oids[1:] if skip_first else oids

    async def is_ancestor(self, older: str, newer: str) -> bool:
        from forge.process import run

        async with asyncio.timeout(GIT_DEADLINE):
            code, _out, _err = await run(self._argv("merge-base", "--is-ancestor", older, newer),
                                         env=self.store.git_env())
        return code == 0

    async def merge_base(self, a: str, b: str) -> str | None:
        try:
            out = await self.run("merge-base", a, b)
        except NotFound:
            return None
        return out.decode().strip() or None

    async def blame(self, commit: str, path: bytes) -> bytes:
        return await self.run("blame", "--porcelain", commit, "--", os.fsdecode(path))
