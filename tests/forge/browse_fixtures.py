"""A real repository for the code-browser tests, built once per test module with plain git.

It holds every kind of entry the browser must show: a rename, a binary image, a symlink inside
the repository and one that leaves it, a submodule (gitlink + .gitmodules), a file name that is
not UTF-8, an HTML and an SVG file with script in them, a 3 MB file, a 50,000-line diff, a
branch with a slash, an annotated and a lightweight tag.
"""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from tests.helpers.web import post_form

NON_UTF8 = b"caf\xe9 menu.txt"  # Latin-1 é: not UTF-8
BIG_BYTES = 3 * 1024 * 1024
DIFF_LINES = 50_000


def git(*args: str | bytes, cwd: Path | None = None, input: bytes | None = None) -> str:
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "GIT_AUTHOR_NAME": "Tess Tester", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "Tess Tester",
           "GIT_COMMITTER_EMAIL": "t@example.org", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          input=input).stdout.decode(errors="replace")


def png_bytes() -> bytes:
    """A valid 1x1 PNG (so the browser's <img> really decodes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xb4\x23\x5a"))
            + chunk(b"IEND", b""))


@dataclass(frozen=True)
class Fixture:
    path: Path  # the working repository
    head: str  # main's tip
    rename_commit: str
    big_diff_commit: str
    first_commit: str
    feature_tip: str


def build_fixture(root: Path) -> Fixture:
    work = root / "work"
    git("init", "-q", "-b", "main", str(work))

    def commit(message: str) -> str:
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", message, cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()

    (work / "README.md").write_text("# Demo\n\nSome *emphasis* and <script>alert(1)</script>.\n\n"
                                    "```python\nprint('hi')\n```\n")
    (work / "src").mkdir()
    (work / "src" / "app.py").write_text("def greet(name):\n    \"\"\"Say hello.\n    Twice.\"\"\"\n"
                                         "    return f'hello {name}'\n" + "".join(f"x{i} = {i}\n" for i in range(40)))
    (work / "old name.txt").write_text("a file that will be renamed\n" * 20)
    first = commit("First commit\n\nWith a body.")
    git("mv", "old name.txt", "new name.txt", cwd=work)
    rename = commit("Rename a file")
    (work / "logo.png").write_bytes(png_bytes())
    (work / "evil.html").write_text("<html><script>alert('evil')</script></html>\n")
    (work / "pic.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n')
    os.symlink("src/app.py", work / "link-to-app")
    os.symlink("../../etc/passwd", work / "escape-link")
    (work / "big.txt").write_bytes((b"0123456789abcdef" * 64 + b"\n") * (BIG_BYTES // 1025 + 1))
    with open(os.path.join(os.fsencode(work), NON_UTF8), "wb") as handle:
        handle.write(b"non-UTF-8 name\n")
    (work / "docs").mkdir()
    (work / "docs" / "guide.md").write_text("# Guide\n\n[link](https://example.org) and `code`.\n")
    (work / ".gitmodules").write_text('[submodule "vendor/lib"]\n\tpath = vendor/lib\n'
                                      "\turl = https://example.org/lib.git\n")
    commit("Add assets, links and odd names")
    (work / "vendor" / "lib").mkdir(parents=True)  # an unpopulated submodule: `add -A` keeps the gitlink
    git("update-index", "--add", "--cacheinfo", f"160000,{'ab' * 20},vendor/lib", cwd=work)
    git("commit", "-q", "-m", "Add a submodule", cwd=work)
    (work / "huge-diff.txt").write_text("".join(f"line {i}\n" for i in range(DIFF_LINES)))
    big_diff = commit("A 50,000-line diff")
    git("tag", "-a", "v1.0", "-m", "Release one\n\nThe first release, annotated.", cwd=work)
    git("tag", "light", cwd=work)
    git("checkout", "-q", "-b", "feature/x", cwd=work)
    (work / "feature.txt").write_text("on a branch with a slash\n")
    feature = commit("Feature work")
    git("checkout", "-q", "main", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work).strip()
    return Fixture(work, head, rename, big_diff, first, feature)


async def new_repo(client: Any, name: str, *, private: bool = False) -> None:
    response = await post_form(client, "/forge/new", {
        "name": name, "description": "", "default_branch": "main",
        "visibility": "private" if private else "public"}, page="/forge/new")
    assert response.status_code == 303, response.text


async def push_fixture(settings: Settings, db_session: AsyncSession, owner: str, name: str, source: Path,
                       *refs: str) -> Any:
    """Push ``refs`` (default: every branch and tag) of ``source`` into the repository, sync refs."""
    from forge.runtime import runtime_for
    from forge.services import RepoService

    service = RepoService(db_session, runtime_for(settings).store)
    repo = await service.get_by_owner_and_name(owner, name)
    assert repo is not None
    git("push", "-q", str(service.store.locate(repo.id)), *(refs or ("--all",)), cwd=source)
    if not refs:
        git("push", "-q", str(service.store.locate(repo.id)), "--tags", cwd=source)
    await service.sync_refs(repo.id)
    await db_session.commit()
    return repo
