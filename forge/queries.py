"""Read-side helpers for the forge web pages and the JSON API (design/forge.md §3.6).

Database listings that :class:`forge.services.RepoService` does not offer, and the few git reads a
repository page needs (latest commits, commit subjects for branch listings, the README), each a
short ``git`` child with a deadline and a size cap. Nothing here writes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import nh3
from markdown_it import MarkdownIt
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.account.models import User
from forge.models import ForgeCollaborator, ForgeRepo
from forge.storage import GitError, RepoStore

README_NAMES = ("README.md", "README.markdown", "README", "README.txt", "README.rst", "readme.md")
README_MAX_BYTES = 512 * 1024
GIT_READ_DEADLINE = 10.0
_OID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True)
class CommitInfo:
    id: str
    author_name: str
    author_email: str
    authored: datetime
    committer_name: str
    committer_email: str
    committed: datetime
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def short_id(self) -> str:
        return self.id[:10]


# -- database -------------------------------------------------------------------------------------
async def user_by_username(db: AsyncSession, username: str) -> User | None:
    if not username or len(username) > 40:
        return None
    from domains.account.services import AccountService

    return await AccountService(db).by_username(username)


async def public_repos(db: AsyncSession, *, limit: int = 100) -> list[tuple[ForgeRepo, str]]:
    """Public repositories, most recently updated first, with their owners' usernames."""
    from domains.account.services import AccountService

    repos = (await db.execute(
        select(ForgeRepo).where(ForgeRepo.is_private.is_(False))
        .order_by(ForgeRepo.updated_at.desc()).limit(limit)
    )).scalars().all()
    # Suspended members' repositories are left out (so a page may show fewer than ``limit``).
    owners = await AccountService(db).by_ids({r.owner_id for r in repos}, active_only=True)
    return [(repo, owners[repo.owner_id].username) for repo in repos if repo.owner_id in owners]


async def repos_of(db: AsyncSession, user: User) -> list[tuple[ForgeRepo, str]]:
    """Repositories ``user`` owns or collaborates on (private ones included), by owner and name."""
    collab = select(ForgeCollaborator.repo_id).where(ForgeCollaborator.user_id == user.id)
    from domains.account.services import AccountService

    repos = (await db.execute(
        select(ForgeRepo).where(or_(ForgeRepo.owner_id == user.id, ForgeRepo.id.in_(collab)))
    )).scalars().all()
    owners = await AccountService(db).by_ids({r.owner_id for r in repos})
    pairs = [(repo, owners[repo.owner_id].username) for repo in repos if repo.owner_id in owners]
    return sorted(pairs, key=lambda pair: (pair[1], pair[0].lower_name))


async def owner_of(db: AsyncSession, repo: ForgeRepo) -> User:
    owner = await db.get(User, repo.owner_id)
    assert owner is not None  # owner_id is a foreign key with ON DELETE CASCADE
    return owner


# -- git reads ------------------------------------------------------------------------------------
_LOG_FORMAT = "%H%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B%x1e"


def _parse_log(out: bytes) -> list[CommitInfo]:
    commits = []
    for record in out.decode(errors="replace").split("\x1e"):
        record = record.lstrip("\n")
        if not record:
            continue
        parts = record.split("\x00", 7)
        if len(parts) != 8:
            continue
        oid, an, ae, ad, cn, ce, cd, body = parts
        commits.append(CommitInfo(oid, an, ae, datetime.fromisoformat(ad), cn, ce, datetime.fromisoformat(cd),
                                  body.rstrip("\n")))
    return commits


async def latest_commits(store: RepoStore, repo_id: uuid.UUID, ref: str, limit: int = 10) -> list[CommitInfo]:
    """``git log`` of ``ref`` (a full ref name or an object id); empty when it does not exist."""
    if not ref.startswith("refs/") and not _OID.match(ref):
        return []
    code, out, _err = await store.git(repo_id, "log", f"--max-count={limit}", f"--format={_LOG_FORMAT}", ref, "--",
                                      check=False, deadline=GIT_READ_DEADLINE)
    return _parse_log(out) if code == 0 else []


async def commits_by_id(store: RepoStore, repo_id: uuid.UUID, oids: Sequence[str]) -> dict[str, CommitInfo]:
    """The commits named by ``oids`` (tags peeled by the caller), in one ``git log --no-walk``."""
    wanted = sorted({o for o in oids if _OID.match(o)})
    if not wanted:
        return {}
    code, out, _err = await store.git(repo_id, "log", "--no-walk=unsorted", f"--format={_LOG_FORMAT}", "--stdin",
                                      input=("\n".join(wanted) + "\n").encode(), check=False,
                                      deadline=GIT_READ_DEADLINE)
    return {c.id: c for c in _parse_log(out)} if code == 0 else {}


async def read_readme(store: RepoStore, repo_id: uuid.UUID, ref: str) -> tuple[str, str] | None:
    """(file name, text) of the README at the root of ``ref``'s tree, or None."""
    try:
        _code, out, _err = await store.git(repo_id, "ls-tree", "-z", "--full-tree", ref, deadline=GIT_READ_DEADLINE)
    except (GitError, TimeoutError):
        return None
    entries: dict[str, tuple[str, str]] = {}
    for item in out.split(b"\0"):
        if not item:
            continue
        meta, _, name = item.decode(errors="replace").partition("\t")
        mode, kind, oid = meta.split(" ")
        if kind == "blob" and not mode.startswith("12"):  # files only, never symlinks
            entries[name] = (kind, oid)
    found = next((n for n in README_NAMES if n in entries), None) or next(
        (n for n in sorted(entries) if n.lower().startswith("readme")), None)
    if found is None:
        return None
    name = found
    oid = entries[name][1]
    try:
        _code, size, _err = await store.git(repo_id, "cat-file", "-s", oid, deadline=GIT_READ_DEADLINE)
        if int(size.strip() or 0) > README_MAX_BYTES:
            return name, ""
        _code, blob, _err = await store.git(repo_id, "cat-file", "blob", oid, deadline=GIT_READ_DEADLINE)
    except (GitError, TimeoutError, ValueError):
        return None
    return name, blob.decode(errors="replace")


_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"])


def render_readme(name: str, text: str) -> str:
    """Markdown with raw HTML off, then sanitised with nh3; anything else as preformatted text."""
    if name.lower().endswith((".md", ".markdown")):
        html = _markdown.render(text)
    else:
        from markupsafe import escape

        html = f"<pre>{escape(text)}</pre>"
    return nh3.clean(html, link_rel="nofollow noopener noreferrer")
