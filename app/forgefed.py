"""The seam between forge and federation for ForgeFed (composition root: it may import both).

Forge and federation are sibling layers that never import each other (pyproject's import-linter
contract). This module, imported as a setup module of the ``forgefed`` entry in app/installed.py,
gives federation read access to public repositories (:class:`InstalledForge`, federation's
``ForgeDirectory``) and subscribes federation's push handler to forge's push topic.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs import JobContext
from app.settings import Settings
from domains.account.models import User
from federation.activitypub import forgefed
from forge.events import PushEvent, on_push
from forge.models import ForgeRepo, ForgeRepoRef
from forge.queries import commits_by_id
from forge.runtime import runtime_for

__all__ = ["InstalledForge"]

GIT_DEADLINE = 30.0


def _info(repo: ForgeRepo, owner: str) -> forgefed.RepoInfo:
    return forgefed.RepoInfo(id=str(repo.id), owner=owner, name=repo.name, description=repo.description,
                             default_branch=repo.default_branch, created=repo.created_at)


def _commit(c: object) -> forgefed.CommitInfo:
    from forge.queries import CommitInfo

    assert isinstance(c, CommitInfo)
    return forgefed.CommitInfo(hash=c.id, author_name=c.author_name, author_email=c.author_email,
                               authored=c.authored, committer_name=c.committer_name,
                               committer_email=c.committer_email, committed=c.committed, message=c.message)


class InstalledForge:
    """Public repositories only: a private one, or one whose owner is suspended, is absent."""

    async def public_repo(self, session: AsyncSession, repo_id: str) -> forgefed.RepoInfo | None:
        row = (await session.execute(
            select(ForgeRepo, User.username).join(User, User.id == ForgeRepo.owner_id)
            .where(ForgeRepo.id == uuid.UUID(repo_id), ForgeRepo.is_private.is_(False), User.is_active)
        )).first()
        return _info(row[0], row[1]) if row is not None else None

    async def public_repo_by_name(self, session: AsyncSession, owner: str,
                                  name: str) -> forgefed.RepoInfo | None:
        row = (await session.execute(
            select(ForgeRepo, User.username).join(User, User.id == ForgeRepo.owner_id)
            .where(func.lower(User.username) == owner.lower(), ForgeRepo.lower_name == name.lower(),
                   ForgeRepo.is_private.is_(False), User.is_active)
        )).first()
        return _info(row[0], row[1]) if row is not None else None

    async def has_branch(self, session: AsyncSession, repo_id: str, branch: str) -> bool:
        found = await session.scalar(select(ForgeRepoRef.id).where(
            ForgeRepoRef.repo_id == uuid.UUID(repo_id), ForgeRepoRef.name == f"refs/heads/{branch}"))
        return found is not None

    async def commits(self, settings: Settings, repo_id: str, old: str, new: str, ref: str,
                      limit: int) -> tuple[list[forgefed.CommitInfo], int]:
        store = runtime_for(settings).store
        rid = uuid.UUID(repo_id)
        # A new branch brings what no other branch or tag had (as Gitea's PushCommits counts); not
        # ``--all``, which adds HEAD: the first push of the default branch would count nothing.
        short = ref.removeprefix("refs/heads/")
        spec = [new, f"^{old}"] if old != forgefed.ZERO_OID else \
            [new, "--not", f"--exclude={short}", "--branches", "--tags"]
        code, out, _err = await store.git(rid, "rev-list", "--count", *spec, check=False, deadline=GIT_DEADLINE)
        total = int(out.strip() or 0) if code == 0 else 0
        code, out, _err = await store.git(rid, "rev-list", f"--max-count={limit}", *spec, check=False,
                                          deadline=GIT_DEADLINE)
        oids = out.decode().split() if code == 0 else []
        found = await commits_by_id(store, rid, oids)
        return [_commit(found[o]) for o in oids if o in found], total

    async def commit(self, settings: Settings, repo_id: str, sha: str) -> forgefed.CommitInfo | None:
        store = runtime_for(settings).store
        found = await commits_by_id(store, uuid.UUID(repo_id), [sha])
        return _commit(found[sha]) if sha in found else None


forgefed.use_forge(InstalledForge())


@on_push
async def federate_push(ctx: JobContext, event: PushEvent) -> None:
    await forgefed.federate_push(ctx, forgefed.RepoPush(
        repo_id=event.repo_id, actor_id=event.actor_id, source=event.source,
        changes=[forgefed.RefChange(c.ref, c.old, c.new) for c in event.changes]))
