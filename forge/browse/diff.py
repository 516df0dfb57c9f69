"""Unified diffs for the commit and compare pages, read from ``git diff-tree`` with hard caps.

Two children: ``diff-tree -r -z -M --raw`` names every changed file exactly (NUL-separated, so any
byte in a name survives), and ``diff-tree -r -M -p`` streams the patch, whose per-file sections come
in the same order (git-diff-tree(1); each changed path gets a ``diff --git`` header even for a
mode-only change or a pure rename). The patch is read only up to MAX_DIFF_LINES lines and
MAX_LINE_CHARS per line; what is left is marked truncated, with links to the raw files.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from forge.browse.gitread import GIT_DEADLINE, Reader

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


def _parse_raw(out: bytes) -> list[FileDiff]:
    items = out.split(b"\0")
    files: list[FileDiff] = []
    i = 0
    while i < len(items) and items[i].startswith(b":"):
        meta = items[i][1:].decode().split(" ")
        status_code = meta[4][:1]
        score = meta[4][1:]
        if status_code in ("R", "C"):
            old, new = items[i + 1], items[i + 2]
            i += 3
        else:
            old = new = items[i + 1]
            i += 2
        files.append(FileDiff(STATUS.get(status_code, "modified"), old, new, meta[0], meta[1],
                              int(score) if score.isdigit() else None))
    return files


async def read_diff(reader: Reader, old: str | None, new: str) -> Diff:
    """The diff from ``old`` (None: the empty tree, for a root commit) to ``new``."""
    base = ["diff-tree", "--no-commit-id", "-r", "-M", "--no-color", "--no-ext-diff", "--no-textconv",
            "--submodule=short"]
    span = [old, new] if old else ["--root", new]
    raw = await reader.run(*base, "-z", "--raw", *span)
    files = _parse_raw(raw)
    diff = Diff(files[:MAX_FILES], too_many_files=len(files) > MAX_FILES)
    if not diff.files:
        return diff
    total = 0
    index = -1
    current: FileDiff | None = None
    old_no = new_no = 0
    in_header = False
    try:
        async with asyncio.timeout(GIT_DEADLINE), reader.stream(*base, "-p", "--full-index", *span) as out:
            while True:
                raw_line = await _readline(out)
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
                    if raw_line.startswith(b"Binary files ") or raw_line.startswith(b"GIT binary patch"):
                        current.binary = True
                        continue
                    if raw_line.startswith(b"+++ ") or raw_line.startswith(b"--- "):
                        continue
                    if not raw_line.startswith(b"@@"):
                        continue  # index, mode, rename, similarity lines: the raw listing said it
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
    except TimeoutError:
        diff.truncated = True
    if diff.truncated:
        for later in diff.files[index + 1:] if index >= 0 else diff.files:
            later.truncated = True
    return diff


async def _readline(out: asyncio.StreamReader) -> bytes | None:
    """One line without its LF; a line longer than the stream's limit is cut, never an error."""
    try:
        line = await out.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial or None
    except asyncio.LimitOverrunError as exc:
        line = await out.readexactly(exc.consumed)
        rest = b""
        while not rest.endswith(b"\n"):
            try:
                rest = await out.readuntil(b"\n")
            except asyncio.LimitOverrunError as more:
                await out.readexactly(more.consumed)
            except asyncio.IncompleteReadError:
                break
        return line
    return line[:-1]
