"""Unified diffs for the commit and compare pages, read from ``git diff-tree`` with hard caps.

One child, ``diff-tree -r -M -z --patch-with-raw``: the raw listing names every changed file
exactly (NUL-separated, so any byte in a name survives), then the patch streams, its per-file
sections in the same order (git-diff-tree(1); each changed path gets a ``diff --git`` header even
for a mode-only change or a pure rename). The patch is read only up to MAX_DIFF_LINES lines and
MAX_LINE_CHARS per line; what is left is marked truncated, with links to the raw files.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from forge.browse.gitread import GIT_DEADLINE, NotFound, Reader

MAX_DIFF_LINES = 5000
MAX_FILE_LINES = 2000
MAX_LINE_CHARS = 2000
MAX_FILES = 1000
_HUNK = re.compile(rb"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
STATUS = {"A": "added", "D": "deleted", "M": "modified", "R": "renamed", "C": "copied", "T": "type changed"}


@dataclass
class Line:
    kind: str  # "add", "del", "ctx", "hunk", "note"
    old: int | None
    new: int | None
    text: str


@dataclass
class FileDiff:
    status: str
    old_path: bytes
    new_path: bytes
    old_mode: str
    new_mode: str
    similarity: int | None = None
    binary: bool = False
    lines: list[Line] = field(default_factory=list)
    additions: int = 0
    deletions: int = 0
    truncated: bool = False  # the file's patch was cut (too long) or never read (over the page's cap)

    @property
    def path(self) -> bytes:
        return self.new_path if self.status != "deleted" else self.old_path

    @property
    def display(self) -> str:
        if self.status in ("renamed", "copied"):
            return f"{self.old_path.decode(errors='replace')} → {self.new_path.decode(errors='replace')}"
        return self.path.decode(errors="replace")


@dataclass
class Diff:
    files: list[FileDiff]
    truncated: bool = False  # not every file's patch was read
    too_many_files: bool = False


class _Lines:
    """Lines (without LF) from a child's stdout after what was already read; an over-long line is
    cut at MAX_LINE_BYTES and the rest of it skipped, never buffered whole."""

    MAX_LINE_BYTES = MAX_LINE_CHARS * 4

    def __init__(self, stream: asyncio.StreamReader, buffer: bytes = b"") -> None:
        self.stream = stream
        self.buffer = buffer

    async def readline(self) -> bytes | None:
        skipping = False
        cut = b""
        while True:
            newline = self.buffer.find(b"\n")
            if newline >= 0:
                line, self.buffer = self.buffer[:newline], self.buffer[newline + 1:]
                return cut if skipping else line
            if len(self.buffer) > self.MAX_LINE_BYTES:
                if not skipping:
                    cut, skipping = self.buffer[:self.MAX_LINE_BYTES], True
                self.buffer = b""
            chunk = await self.stream.read(65536)
            if not chunk:
                line, self.buffer = self.buffer, b""
                if skipping:
                    return cut
                return line or None
            self.buffer += chunk


async def read_diff(reader: Reader, old: str | None, new: str) -> Diff:
    """The diff from ``old`` (None: the empty tree, for a root commit) to ``new``.

    One child: ``--patch-with-raw -z`` writes the raw listing (NUL-separated, names exact), an
    empty item, then the patch, whose per-file sections follow the listing's order.
    """
    span = [old, new] if old else ["--root", new]
    args = ["diff-tree", "--no-commit-id", "-r", "-M", "--no-color", "--no-ext-diff", "--no-textconv",
            "--submodule=short", "--full-index", "-z", "--patch-with-raw", *span]
    diff = Diff([])
    try:
        async with asyncio.timeout(GIT_DEADLINE), reader.stream(*args) as out:
            buffer = await _read_raw(out, diff)
            await _read_patch(_Lines(out, buffer), diff)
    except TimeoutError:
        diff.truncated = True
        for f in diff.files:
            if not f.lines and not f.binary:
                f.truncated = True
    return diff


async def _read_raw(out: asyncio.StreamReader, diff: Diff) -> bytes:
    """Parse the raw listing into ``diff.files``; returns what was read past its end."""
    buffer = b""
    pending: list[bytes] = []
    while True:
        parts = buffer.split(b"\0")
        # Complete items are all but the last; a meta item needs 1 or 2 names after it.
        items, buffer = parts[:-1], parts[-1]
        pending.extend(items)
        while pending:
            head = pending[0]
            if head == b"":
                rest = b"\0".join([*pending[1:], buffer]) if len(pending) > 1 else buffer
                return rest
            if not head.startswith(b":"):
                raise NotFound  # not the raw format: something is badly wrong with this object
            meta = head[1:].decode().split(" ")
            status_code = meta[4][:1]
            need = 3 if status_code in ("R", "C") else 2
            if len(pending) < need:
                break
            old, new = (pending[1], pending[2]) if need == 3 else (pending[1], pending[1])
            score = meta[4][1:]
            if len(diff.files) < MAX_FILES:
                diff.files.append(FileDiff(STATUS.get(status_code, "modified"), old, new, meta[0], meta[1],
                                           int(score) if score.isdigit() else None))
            else:
                diff.too_many_files = True
            del pending[:need]
        chunk = await out.read(65536)
        if not chunk:
            return b""
        buffer += chunk


async def _read_patch(lines: _Lines, diff: Diff) -> None:
    total = 0
    index = -1
    current: FileDiff | None = None
    old_no = new_no = 0
    in_header = False
    while True:
        raw_line = await lines.readline()
        if raw_line is None:
            break
        if raw_line.startswith(b"diff --git "):
            index += 1
            if index >= len(diff.files):
                break
            current = diff.files[index]
            in_header = True
            continue
        if current is None:
            continue
        if in_header:
            if raw_line.startswith((b"Binary files ", b"GIT binary patch")):
                current.binary = True
                continue
            if not raw_line.startswith(b"@@"):
                continue  # index, mode, rename, similarity, ---/+++ lines: the raw listing said it
            in_header = False
        if total >= MAX_DIFF_LINES:
            current.truncated = True
            diff.truncated = True
            break
        if len(current.lines) >= MAX_FILE_LINES:
            current.truncated = True
            continue
        total += 1
        text = raw_line[:MAX_LINE_CHARS].decode(errors="replace")
        if raw_line.startswith(b"@@"):
            found = _HUNK.match(raw_line)
            if found:
                old_no, new_no = int(found.group(1)), int(found.group(2))
            current.lines.append(Line("hunk", None, None, text))
        elif raw_line.startswith(b"+"):
            current.lines.append(Line("add", None, new_no, text[1:]))
            current.additions += 1
            new_no += 1
        elif raw_line.startswith(b"-"):
            current.lines.append(Line("del", old_no, None, text[1:]))
            current.deletions += 1
            old_no += 1
        elif raw_line.startswith(b"\\"):
            current.lines.append(Line("note", None, None, text))
        else:
            current.lines.append(Line("ctx", old_no, new_no, text[1:]))
            old_no += 1
            new_no += 1
    if diff.truncated:
        for later in diff.files[index + 1:] if index >= 0 else diff.files:
            later.truncated = True
