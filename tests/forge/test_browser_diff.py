"""The diff reader (forge/browse/diff.py) on a real repository: a 1 MB line is cut, never buffered
whole or fatal; names with spaces, tabs and non-UTF-8 bytes come through exactly; a rename, a
mode change and a binary file are told apart; a file over the per-file cap is marked truncated."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from forge.browse.diff import MAX_DIFF_LINES, MAX_LINE_CHARS, read_diff
from forge.browse.gitread import Reader
from forge.catfile import CatFilePool
from forge.config import ForgeConfig
from forge.storage import RepoStore
from tests.forge.browse_fixtures import git

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _build(tmp_path: Path) -> tuple[RepoStore, uuid.UUID, str, str]:
    store = RepoStore(tmp_path / "repos", ForgeConfig(state_dir=tmp_path / "state"))
    repo_id = uuid.uuid4()
    bare = store.locate(repo_id)
    bare.parent.mkdir(parents=True)
    git("init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    (work / "keep.txt").write_text("same\n" * 50)
    (work / "script.sh").write_text("echo hi\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    base = git("rev-parse", "HEAD", cwd=work).strip()
    (work / "long.txt").write_text("x" * 1_000_000 + "\nshort\n")
    (work / "tab\tand space.txt").write_text("odd name\n")
    Path(os.fsdecode(os.path.join(os.fsencode(work), b"caf\xe9.txt"))).write_bytes(b"latin-1 name\n")
    (work / "blob.bin").write_bytes(b"\0\1\2" * 100)
    git("mv", "keep.txt", "kept.txt", cwd=work)
    os.chmod(work / "script.sh", 0o755)
    (work / "many.txt").write_text("".join(f"{i}\n" for i in range(MAX_DIFF_LINES + 10)))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "two", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work).strip()
    git("push", "-q", str(bare), "main", cwd=work)
    return store, repo_id, base, head


async def test_diff_reader_edge_cases(tmp_path: Path) -> None:
    store, repo_id, base, head = _build(tmp_path)
    pool = CatFilePool(store)
    try:
        diff = await read_diff(Reader(store, pool, repo_id), base, head)
    finally:
        await pool.close()
    by_path = {f.path: f for f in diff.files}
    assert set(by_path) == {b"long.txt", b"tab\tand space.txt", b"caf\xe9.txt", b"blob.bin", b"kept.txt",
                            b"script.sh", b"many.txt"}
    assert by_path[b"kept.txt"].status == "renamed" and by_path[b"kept.txt"].old_path == b"keep.txt"
    assert by_path[b"script.sh"].old_mode == "100644" and by_path[b"script.sh"].new_mode == "100755"
    assert by_path[b"blob.bin"].binary
    long_lines = [line for line in by_path[b"long.txt"].lines if line.kind == "add"]
    assert len(long_lines[0].text) < MAX_LINE_CHARS and long_lines[1].text == "short"
    assert [line.text for line in by_path[b"caf\xe9.txt"].lines if line.kind == "add"] == ["latin-1 name"]
    assert by_path[b"many.txt"].truncated and len(by_path[b"many.txt"].lines) <= 2000  # the per-file cap
    assert sum(len(f.lines) for f in diff.files) <= MAX_DIFF_LINES
