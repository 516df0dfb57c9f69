"""Commit statuses (issue 19 item 4): what CI systems post about a commit, and the combined state.

A status is (state, context, description, target URL, creator) on one commit id. Posting again
with the same context adds a row; the newest row per context is that context's current status
(Gitea ``models/git/commit_status.go``: ``GetLatestCommitStatus``). The combined state is the
worst of those current statuses in Gitea's order (``modules/structs/commit_status.go``,
``commitStatusPriorities``): error, failure, warning, pending, success, skipped; with no status at all it
is "" on the API (Gitea leaves ``CombinedStatus.state`` empty) and nothing is shown on pages.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from domains.account.models import User
from forge import keys as forge_keys
from forge.gitea.shapes import UserJSON, ts, users_json
from forge.gitea_ids import gitea_ids
from forge.gitea_models import STATUS_STATES, ForgeCommitStatus
from fragments.purge import emit_purge

__all__ = [
    "STATUS_STATES",
    "CombinedRead",
    "StatusRead",
    "combined_state",
    "combined_status",
    "create_status",
    "page_statuses",
    "status_stamp",
    "statuses_for",
]

# Gitea modules/structs/commit_status.go, commitStatusPriorities: lower is worse.
_PRIORITY = {"error": 0, "failure": 1, "warning": 2, "pending": 3, "success": 4, "skipped": 5}
MAX_CONTEXT = 255
MAX_DESCRIPTION = 1000
MAX_TARGET_URL = 2048
# At most this many statuses on one commit: every post adds a row, so without a cap one token could
# grow a commit's list (and each page showing it) without end. Gitea bounds what it lists the same
# way (``setting.API.MaxResponseItems``-style paging); a post beyond the cap is refused.
MAX_STATUSES_PER_SHA = 1000
# What the API answers for a state outside STATUS_STATES (Gitea's binding error text).
STATE_MESSAGE = "[State]: must be one of pending, success, error, failure, warning, skipped"


class StatusRead(msgspec.Struct, kw_only=True):
    """Gitea ``CommitStatus`` (``status`` is the state, as Gitea names it)."""

    id: int
    status: str
    target_url: str
    description: str
    url: str
    context: str
    creator: UserJSON | None
    created_at: str
    updated_at: str


class CombinedRead(msgspec.Struct, kw_only=True):
    """Gitea ``CombinedStatus`` (``repository`` is filled by the API handler)."""

    state: str
    sha: str
    total_count: int
    statuses: list[StatusRead]
    commit_url: str
    url: str


def combined_state(states: Sequence[str]) -> str:
    """The worst state (Gitea's ``CalcCommitStatus``); "" for none."""
    if not states:
        return ""
    return min(states, key=lambda s: _PRIORITY.get(s, 0))


def validate(state: str, context: str, description: str, target_url: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    if state not in STATUS_STATES:
        errors["state"] = STATE_MESSAGE
    if len(context) > MAX_CONTEXT:
        errors["context"] = f"Use {MAX_CONTEXT} characters at most."
    if len(description) > MAX_DESCRIPTION:
        errors["description"] = f"Use {MAX_DESCRIPTION} characters at most."
    if target_url and (len(target_url) > MAX_TARGET_URL or not target_url.startswith(("http://", "https://"))):
        errors["target_url"] = "Use an http or https URL."
    if "\x00" in context + description + target_url:
        errors["context"] = "Text may not contain NUL."
    return errors


async def create_status(db: AsyncSession, repo_id: uuid.UUID, sha: str, creator: User | None, *, state: str,
                        context: str = "", description: str = "", target_url: str = "") -> ForgeCommitStatus:
    """Record a status on the full commit id ``sha`` (the caller resolved and checked it)."""
    context = context.strip() or "default"
    if errors := validate(state, context, description, target_url):
        raise InputProblems(errors)
    count = (await db.execute(select(func.count()).select_from(ForgeCommitStatus).where(
        ForgeCommitStatus.repo_id == repo_id, ForgeCommitStatus.sha == sha))).scalar_one()
    if count >= MAX_STATUSES_PER_SHA:
        raise InputProblems({"sha": f"This commit already has {count} statuses; no more can be added."})
    row = ForgeCommitStatus(repo_id=repo_id, sha=sha, state=state, context=context, description=description,
                            target_url=target_url, creator_id=creator.id if creator else None)
    db.add(row)
    await db.flush()
    # The pages showing this commit's statuses (repository, tree, commits, commit, branches) carry the
    # repository's surrogate key: purge them at the edge and in the page cache with this transaction.
    await emit_purge(db, [forge_keys.repo(repo_id)])
    return row


async def _rows(db: AsyncSession, repo_id: uuid.UUID, sha: str, *, latest_only: bool = False
                ) -> list[ForgeCommitStatus]:
    """The commit's statuses, newest first, at most MAX_STATUSES_PER_SHA (``latest_only``: the newest
    per context, chosen by the database, so a long history is never loaded to pick from)."""
    where = (ForgeCommitStatus.repo_id == repo_id, ForgeCommitStatus.sha == sha)
    newest_first = (ForgeCommitStatus.created_at.desc(), ForgeCommitStatus.id.desc())
    if not latest_only:
        query = select(ForgeCommitStatus).where(*where).order_by(*newest_first).limit(MAX_STATUSES_PER_SHA)
        return list((await db.execute(query)).scalars().all())
    ranked = select(ForgeCommitStatus.id, func.row_number().over(
        partition_by=ForgeCommitStatus.context, order_by=newest_first).label("rank")).where(*where).subquery()
    query = (select(ForgeCommitStatus).join(ranked, ranked.c.id == ForgeCommitStatus.id)
             .where(ranked.c.rank == 1).order_by(*newest_first).limit(MAX_STATUSES_PER_SHA))
    return list((await db.execute(query)).scalars().all())


async def reads(db: AsyncSession, base_url: str, rows: Sequence[ForgeCommitStatus], *,
                api_base: str = "") -> list[StatusRead]:
    """API shapes for ``rows`` (``api_base``: ``…/api/v1/repos/o/r``, for each status's ``url``)."""
    ids = await gitea_ids(db, "status", [r.id for r in rows])
    creator_ids = {r.creator_id for r in rows if r.creator_id is not None}
    creators: dict[uuid.UUID, UserJSON] = {}
    if creator_ids:
        users = list((await db.execute(select(User).where(User.id.in_(creator_ids)))).scalars().all())
        creators = {u.id: j for u, j in zip(users, await users_json(db, base_url, users), strict=True)}
    return [StatusRead(
        id=ids[r.id], status=r.state, target_url=r.target_url, description=r.description,
        url=f"{api_base}/statuses/{r.sha}" if api_base else "", context=r.context,
        creator=creators.get(r.creator_id) if r.creator_id else None,
        created_at=ts(r.created_at), updated_at=ts(r.updated_at),
    ) for r in rows]


async def statuses_for(session: AsyncSession, repo_id: uuid.UUID, sha: str, *, base_url: str = "",
                       api_base: str = "", latest_only: bool = False) -> list[StatusRead]:
    """The statuses of commit ``sha``, newest first (``latest_only``: one per context).

    For pages (``templates/forge/_statuses.html``) and the API alike. ``base_url`` only shapes the
    creators' profile URLs; pages may leave it out.
    """
    rows = await _rows(session, repo_id, sha, latest_only=latest_only)
    return await reads(session, base_url, rows, api_base=api_base)


async def combined_status(session: AsyncSession, repo_id: uuid.UUID, sha: str, *, base_url: str = "",
                          api_base: str = "") -> CombinedRead:
    """Gitea's combined status: the latest status per context and the worst of their states."""
    latest = await statuses_for(session, repo_id, sha, base_url=base_url, api_base=api_base, latest_only=True)
    return CombinedRead(
        state=combined_state([s.status for s in latest]), sha=sha, total_count=len(latest), statuses=latest,
        commit_url=f"{api_base}/git/commits/{sha}" if api_base else "",
        url=f"{api_base}/commits/{sha}/status" if api_base else "",
    )


# -- for pages ---------------------------------------------------------------------------------------
# Pages show many commits (a commits list, every branch head), so they read the current status of
# every context of all their commits in one query, and only what templates/forge/_statuses.html shows
# (no creator: that would be a users query and Gitea ids the page has no use for).
PAGE_SHAS_MAX = 500  # a page never lists more commits than this; more ids are ignored, never queried


@dataclass(frozen=True, slots=True)
class PageStatus:
    status: str
    context: str
    description: str
    target_url: str


@dataclass(frozen=True, slots=True)
class PageStatuses:
    """One commit's combined ``state`` and its current status per context (ordered by context)."""

    state: str
    statuses: list[PageStatus]


async def page_statuses(session: AsyncSession, repo_id: uuid.UUID, shas: Sequence[str]) -> dict[str, PageStatuses]:
    """{commit id: its statuses} for the commits among ``shas`` that have any, in one query.

    The newest row per (commit, context) is picked in SQL with ``row_number()`` (a window function
    both PostgreSQL and SQLite ≥ 3.25 have), so a context posted to a thousand times still reads
    one row per context.
    """
    wanted = sorted(set(shas))[:PAGE_SHAS_MAX]
    if not wanted:
        return {}
    s = ForgeCommitStatus
    rank = func.row_number().over(partition_by=(s.sha, s.context),
                                  order_by=(s.created_at.desc(), s.id.desc())).label("rank")
    inner = (select(s.sha, s.context, s.state, s.description, s.target_url, rank)
             .where(s.repo_id == repo_id, s.sha.in_(wanted)).subquery())
    rows = (await session.execute(
        select(inner.c.sha, inner.c.context, inner.c.state, inner.c.description, inner.c.target_url)
        .where(inner.c.rank == 1).order_by(inner.c.sha, inner.c.context)
    )).all()
    grouped: dict[str, list[PageStatus]] = {}
    for sha, context, state, description, target_url in rows:
        grouped.setdefault(sha, []).append(PageStatus(state, context, description, target_url))
    return {sha: PageStatuses(combined_state([x.status for x in found]), found) for sha, found in grouped.items()}


async def status_stamp(session: AsyncSession, repo_id: uuid.UUID) -> str:
    """The repository's newest status change and status count, for the ETags of pages showing statuses.

    Repository-wide on purpose: a branch or commits-list page learns which commits it shows only
    from git, after the ETag check, and the edge purge on a new status is repository-wide too.
    """
    s = ForgeCommitStatus
    newest, count = (await session.execute(
        select(func.max(s.updated_at), func.count(s.id)).where(s.repo_id == repo_id))).one()
    return f"{newest.isoformat() if newest else '-'}/{count}"
