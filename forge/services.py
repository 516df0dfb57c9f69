"""Repository rules: creation, lookup, permissions, collaborators, settings, the ref mirror and
the one compare-and-swap path for ref changes that are not pushes (design/forge.md §3.2, §3.3).

Methods work inside the caller's session and never commit: request handlers commit through
advanced-alchemy's ``autocommit_include_redirects``, jobs and the git endpoints in their own
``session.begin()`` blocks.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

from advanced_alchemy.mixins.uuid import uuid7 as _uuid7  # type: ignore[attr-defined]
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from domains.account.models import User
from forge.events import PushEvent, RefChange, enqueue_push
from forge.models import PERMISSIONS, ForgeBranchProtection, ForgeCollaborator, ForgeRepo, ForgeRepoRef
from forge.policy import ZERO_OID, Command, Protection, PushPolicy, check_ref_format, decide
from forge.storage import GitError, RepoStore

Permission = Literal["none", "read", "write", "admin"]
_RANK: dict[str, int] = {"none": 0, "read": 1, "write": 2, "admin": 3}
REPO_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
OWNER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,39}$")
_OID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")

__all__ = [
    "Permission",
    "RefConflict",
    "RefUpdate",
    "RepoService",
    "at_least",
    "repo_name_problem",
]


def at_least(have: Permission, need: Permission) -> bool:
    return _RANK[have] >= _RANK[need]


def repo_name_problem(name: str) -> str | None:
    if not REPO_NAME.match(name) or name in {".", ".."}:
        return "Use letters, digits, '-', '_' and '.', starting with a letter, digit or '_' (100 at most)."
    if name.lower().endswith(".git") or ".." in name:
        return "A repository name may not end in '.git' or contain '..'."
    return None


def branch_name_problem(branch: str) -> str | None:
    if not branch or len(branch) > 200 or not check_ref_format(f"refs/heads/{branch}"):
        return "Not a valid branch name."
    return None


@dataclass(frozen=True)
class RefUpdate:
    """One step of a compare-and-swap ref transaction.

    ``old=None`` means "must not exist" (create); ``new=None`` means delete. Both are full object ids.
    """

    ref: str
    new: str | None
    old: str | None


class RefConflict(Exception):
    """git refused the transaction (a ref moved, already exists, or a name clashes); nothing changed."""


class RepoService:
    def __init__(self, session: AsyncSession, store: RepoStore) -> None:
        self.db = session
        self.store = store

    # -- lookup ---------------------------------------------------------------------------------
    async def get(self, repo_id: uuid.UUID) -> ForgeRepo | None:
        return await self.db.get(ForgeRepo, repo_id)

    async def get_by_owner_and_name(self, owner: str, name: str) -> ForgeRepo | None:
        """Case-insensitive lookup of ``owner/name`` (the name without ``.git``).

        One statement (owner joined in), not the owner's row and then the repository's: every git
        request starts here, and on SQLite each statement is a trip to the connection's thread and
        back, which a loaded host makes cost milliseconds (bench/forge_clone.py)."""
        if not OWNER_NAME.match(owner) or repo_name_problem(name):
            return None
        from domains.account.schemas import normalise_username

        result = await self.db.execute(
            select(ForgeRepo).join(User, User.id == ForgeRepo.owner_id)
            .where(User.username == normalise_username(owner), ForgeRepo.lower_name == name.lower())
        )
        return result.scalar_one_or_none()

    async def list_for_owner(self, owner: User, *, viewer: User | None = None) -> Sequence[ForgeRepo]:
        query = select(ForgeRepo).where(ForgeRepo.owner_id == owner.id).order_by(ForgeRepo.lower_name)
        repos = (await self.db.execute(query)).scalars().all()
        return [r for r in repos if not r.is_private or at_least(await self.permission(viewer, r), "read")]

    # -- permissions ----------------------------------------------------------------------------
    async def permission(self, user: User | None, repo: ForgeRepo) -> Permission:
        """What ``user`` may do: owner and site admins ``admin``; collaborators their grant;
        anyone else ``read`` on a public repository and ``none`` on a private one."""
        return (await self.access(user, repo))[0]

    async def access(self, user: User | None, repo: ForgeRepo) -> tuple[Permission, Permission]:
        """(:meth:`permission`, what ``user`` may do without the site-administrator role).

        Where the first covers an action and the second does not, the action uses admin powers
        and is written to the audit log (:meth:`audit_admin_use`).
        """
        if user is None:
            return ("none" if repo.is_private else "read"), ("none" if repo.is_private else "read")
        if user.id == repo.owner_id:
            return "admin", "admin"
        grant = (await self.db.execute(
            select(ForgeCollaborator.permission)
            .where(ForgeCollaborator.repo_id == repo.id, ForgeCollaborator.user_id == user.id)
        )).scalar_one_or_none()
        own = cast("Permission", grant) if grant in PERMISSIONS else ("none" if repo.is_private else "read")
        return ("admin" if user.is_admin else own), own

    async def audit_admin_use(self, user: User, repo: ForgeRepo, need: Permission, what: str) -> None:
        """Record an administrator's use of powers they hold only as site admin (app/audit.py):
        reading someone else's private repository, or changing someone else's repository."""
        if need == "read" and not repo.is_private:
            return
        from app import audit

        owner = await self.db.get(User, repo.owner_id)
        target = f"{owner.username if owner else repo.owner_id}/{repo.name}"
        await audit.record(self.db, user, f"forge.repo.{need}", target, what, subject_id=repo.owner_id)

    # -- create / settings / delete ---------------------------------------------------------------
    async def create(self, owner: User, name: str, *, description: str = "", private: bool = False,
                     default_branch: str = "main") -> ForgeRepo:
        """Create the row and an empty bare repository; raises InputProblems (422/409)."""
        name = name.strip()
        errors: dict[str, str] = {}
        if problem := repo_name_problem(name):
            errors["name"] = problem
        if problem := branch_name_problem(default_branch):
            errors["default_branch"] = problem
        if len(description) > 2000:
            errors["description"] = "Use 2,000 characters at most."
        if errors:
            raise InputProblems(errors)
        taken = await self.db.execute(
            select(ForgeRepo.id).where(ForgeRepo.owner_id == owner.id, ForgeRepo.lower_name == name.lower())
        )
        if taken.first() is not None:
            raise InputProblems({"name": "You already have a repository with that name."}, status=409)
        repo = ForgeRepo(owner_id=owner.id, name=name, lower_name=name.lower(), description=description,
                         is_private=private, default_branch=default_branch)
        repo.id = _new_id()
        await self.store.init(repo.id, default_branch)
        self.db.add(repo)
        try:
            await self.db.flush()
        except IntegrityError:
            self.store.delete(repo.id)
            raise InputProblems({"name": "You already have a repository with that name."}, status=409) from None
        return repo

    async def update_settings(self, repo: ForgeRepo, *, description: str | None = None,
                              private: bool | None = None, allow_force_push: bool | None = None,
                              default_branch: str | None = None) -> ForgeRepo:
        if description is not None:
            if len(description) > 2000:
                raise InputProblems({"description": "Use 2,000 characters at most."})
            repo.description = description
        if private is not None:
            repo.is_private = private
        if allow_force_push is not None:
            repo.allow_force_push = allow_force_push
        if default_branch is not None and default_branch != repo.default_branch:
            await self.set_default_branch(repo, default_branch)
        await self.db.flush()
        return repo

    async def rename(self, repo: ForgeRepo, new_name: str) -> None:
        """Rename within the owner; the old name keeps redirecting here (web, API, git) until a
        repository takes it (Gitea ``models/repo/redirect.go``). Disk is untouched (§3.4)."""
        from forge.gitea_models import ForgeRepoRedirect

        new_name = new_name.strip()
        if problem := repo_name_problem(new_name):
            raise InputProblems({"name": problem})
        lower = new_name.lower()
        if lower != repo.lower_name:
            taken = await self.db.execute(
                select(ForgeRepo.id).where(ForgeRepo.owner_id == repo.owner_id, ForgeRepo.lower_name == lower))
            if taken.first() is not None:
                raise InputProblems({"name": "You already have a repository with that name."}, status=409)
            await self.db.execute(delete(ForgeRepoRedirect).where(
                ForgeRepoRedirect.owner_id == repo.owner_id,
                ForgeRepoRedirect.lower_name.in_([lower, repo.lower_name])))
            self.db.add(ForgeRepoRedirect(owner_id=repo.owner_id, lower_name=repo.lower_name, repo_id=repo.id))
        repo.name, repo.lower_name = new_name, lower
        await self.db.flush()

    async def redirected(self, owner: str, name: str) -> ForgeRepo | None:
        """The repository that ``owner/name`` used to name before a rename, or None."""
        if not OWNER_NAME.match(owner) or repo_name_problem(name):
            return None
        from domains.account.services import AccountService
        from forge.gitea_models import ForgeRepoRedirect

        owner_user = await AccountService(self.db).by_username(owner)
        if owner_user is None:
            return None
        repo_id = (await self.db.execute(select(ForgeRepoRedirect.repo_id).where(
            ForgeRepoRedirect.owner_id == owner_user.id, ForgeRepoRedirect.lower_name == name.lower()
        ))).scalar_one_or_none()
        return await self.db.get(ForgeRepo, repo_id) if repo_id is not None else None

    async def set_visibility(self, repo: ForgeRepo, private: bool) -> ForgeRepo:
        return await self.update_settings(repo, private=private)

    async def set_default_branch(self, repo: ForgeRepo, branch: str) -> None:
        """Point HEAD at ``refs/heads/<branch>`` (it may not exist yet in an empty repository)."""
        if problem := branch_name_problem(branch):
            raise InputProblems({"default_branch": problem})
        await self.store.set_head(repo.id, branch)
        repo.default_branch = branch
        await self.db.flush()

    async def delete(self, repo: ForgeRepo) -> None:
        """Delete the row, then the directory (a crash in between leaves only an orphan directory)."""
        await self.db.execute(delete(ForgeRepo).where(ForgeRepo.id == repo.id))
        await self.db.flush()
        self.store.delete(repo.id)

    # -- collaborators and protection -----------------------------------------------------------
    async def add_collaborator(self, repo: ForgeRepo, user: User, permission: Permission = "write") -> None:
        if permission not in PERMISSIONS:
            raise InputProblems({"permission": "Use read, write or admin."})
        if user.id == repo.owner_id:
            raise InputProblems({"user": "The owner already has every permission."})
        existing = (await self.db.execute(
            select(ForgeCollaborator).where(ForgeCollaborator.repo_id == repo.id,
                                            ForgeCollaborator.user_id == user.id)
        )).scalar_one_or_none()
        if existing is None:
            self.db.add(ForgeCollaborator(repo_id=repo.id, user_id=user.id, permission=permission))
        else:
            existing.permission = permission
        await self.db.flush()

    async def remove_collaborator(self, repo: ForgeRepo, user: User) -> bool:
        result = await self.db.execute(
            delete(ForgeCollaborator).where(ForgeCollaborator.repo_id == repo.id,
                                            ForgeCollaborator.user_id == user.id)
        )
        return bool(getattr(result, "rowcount", 0))

    async def list_collaborators(self, repo: ForgeRepo) -> list[tuple[User, Permission]]:
        from domains.account.services import AccountService

        rows = (await self.db.execute(
            select(ForgeCollaborator.user_id, ForgeCollaborator.permission).where(ForgeCollaborator.repo_id == repo.id)
        )).tuples().all()
        users = await AccountService(self.db).by_ids(user_id for user_id, _ in rows)
        found: list[tuple[User, Permission]] = [
            (users[user_id], cast("Permission", perm)) for user_id, perm in rows if user_id in users
        ]
        return sorted(found, key=lambda pair: pair[0].username)

    async def protect_branch(self, repo: ForgeRepo, pattern: str, *, allow_deletion: bool = False) -> None:
        existing = (await self.db.execute(
            select(ForgeBranchProtection).where(ForgeBranchProtection.repo_id == repo.id,
                                                ForgeBranchProtection.pattern == pattern)
        )).scalar_one_or_none()
        if existing is None:
            self.db.add(ForgeBranchProtection(repo_id=repo.id, pattern=pattern, allow_deletion=allow_deletion))
        else:
            existing.allow_deletion = allow_deletion
        await self.db.flush()

    async def unprotect_branch(self, repo: ForgeRepo, pattern: str) -> bool:
        result = await self.db.execute(
            delete(ForgeBranchProtection).where(ForgeBranchProtection.repo_id == repo.id,
                                                ForgeBranchProtection.pattern == pattern)
        )
        return bool(getattr(result, "rowcount", 0))

    async def protections(self, repo: ForgeRepo) -> Sequence[ForgeBranchProtection]:
        return (await self.db.execute(
            select(ForgeBranchProtection).where(ForgeBranchProtection.repo_id == repo.id)
            .order_by(ForgeBranchProtection.pattern)
        )).scalars().all()

    async def push_policy(self, repo: ForgeRepo) -> PushPolicy:
        """The policy the pre-receive hook enforces for this repository."""
        rules = await self.protections(repo)
        from forge.mirror_models import ForgeMirror  # the mirror tables sit beside the repository's

        pull_mirror = await self.db.scalar(select(ForgeMirror.remote_url).where(
            ForgeMirror.repo_id == repo.id, ForgeMirror.direction == "pull").limit(1))
        return PushPolicy(
            default_branch=repo.default_branch,
            allow_force_push=repo.allow_force_push,
            protected=tuple(Protection(r.pattern, r.allow_deletion) for r in rules),
            # As on Gitea, a pull mirror takes its refs from its upstream only.
            read_only=(f"this repository is a pull mirror of {pull_mirror}: it is read-only "
                       "(push to the upstream instead)") if pull_mirror is not None else "",
        )

    # -- ref mirror -----------------------------------------------------------------------------
    async def refs(self, repo: ForgeRepo, prefix: str = "refs/") -> Sequence[ForgeRepoRef]:
        """The mirrored refs (no disk access), sorted by name."""
        return (await self.db.execute(
            select(ForgeRepoRef).where(ForgeRepoRef.repo_id == repo.id, ForgeRepoRef.name.startswith(prefix))
            .order_by(ForgeRepoRef.name)
        )).scalars().all()

    async def sync_refs(self, repo_id: uuid.UUID, *, actor_id: uuid.UUID | None = None, source: str = "reconcile",
                        push_options: Sequence[str] = (), emit: bool = True) -> list[RefChange]:
        """Bring ``forge_repo_ref`` in line with ``git for-each-ref refs/heads refs/tags``.

        This is both the post-push update and the drift reconciler. It first takes the repository
        row's write lock (a no-op UPDATE: a row lock on PostgreSQL, the write lock on SQLite), so
        concurrent syncs of one repository serialise and the last one reads git's newest state.
        When something changed it bumps ``ref_version`` and, if ``emit``, enqueues one
        ``forge.push`` job in the same transaction.
        """
        locked = await self.db.execute(
            update(ForgeRepo).where(ForgeRepo.id == repo_id).values(ref_version=ForgeRepo.ref_version)
        )
        if not getattr(locked, "rowcount", 0):
            return []
        on_disk = await self._read_refs(repo_id)
        rows = (await self.db.execute(
            select(ForgeRepoRef.name, ForgeRepoRef.oid, ForgeRepoRef.peeled).where(ForgeRepoRef.repo_id == repo_id)
        )).all()
        in_db = {name: (oid, peeled) for name, oid, peeled in rows}
        changes: list[RefChange] = []
        added = [name for name in on_disk if name not in in_db]
        changed = [name for name in on_disk if name in in_db and in_db[name] != on_disk[name]]
        removed = [name for name in in_db if name not in on_disk]
        if added:
            await self.db.execute(insert(ForgeRepoRef), [
                {"id": _new_id(), "repo_id": repo_id, "name": name, "oid": on_disk[name][0],
                 "peeled": on_disk[name][1]} for name in added
            ])
            changes += [RefChange(name, ZERO_OID, on_disk[name][0]) for name in added]
        for name in changed:
            await self.db.execute(
                update(ForgeRepoRef).where(ForgeRepoRef.repo_id == repo_id, ForgeRepoRef.name == name)
                .values(oid=on_disk[name][0], peeled=on_disk[name][1], updated_at=func.now())
            )
            changes.append(RefChange(name, in_db[name][0], on_disk[name][0]))
        for start in range(0, len(removed), 500):
            chunk = removed[start:start + 500]
            await self.db.execute(
                delete(ForgeRepoRef).where(ForgeRepoRef.repo_id == repo_id, ForgeRepoRef.name.in_(chunk))
            )
        changes += [RefChange(name, in_db[name][0], ZERO_OID) for name in removed]
        if not changes:
            return []
        changes.sort(key=lambda c: c.ref)
        version = (await self.db.execute(
            update(ForgeRepo).where(ForgeRepo.id == repo_id).values(ref_version=ForgeRepo.ref_version + 1)
            .returning(ForgeRepo.ref_version)
        )).scalar_one()
        # The pages that show the refs (the repository's, the index) are refreshed with this very
        # commit, at the edge and in every process's page cache, not when the push job runs.
        from forge import keys as forge_keys
        from fragments.purge import emit_purge  # not at import: the pre-receive hook stays light

        await emit_purge(self.db, forge_keys.repo_pages(repo_id))
        if emit:
            await enqueue_push(self.db, PushEvent(
                repo_id=str(repo_id), actor_id=str(actor_id) if actor_id else None, source=source,
                changes=changes, push_options=list(push_options), ref_version=int(version),
            ))
        return changes

    async def _read_refs(self, repo_id: uuid.UUID) -> dict[str, tuple[str, str | None]]:
        _code, out, _err = await self.store.git(
            repo_id, "for-each-ref", "--format=%(objectname) %(*objectname) %(refname)", "refs/heads", "refs/tags",
        )
        refs: dict[str, tuple[str, str | None]] = {}
        for line in out.decode().splitlines():
            oid, peeled, name = line.split(" ", 2)
            refs[name] = (oid, peeled or None)
        return refs

    async def _check_policy(self, repo: ForgeRepo, updates: Sequence[RefUpdate], policy: PushPolicy) -> None:
        commands = [Command(u.old or ZERO_OID, u.new or ZERO_OID, u.ref) for u in updates]
        ancestry = {(c.old, c.new): await _is_ancestor(self.store, repo.id, c.old, c.new)
                    for c in commands if not c.is_create and not c.is_delete}
        decision = decide(commands, policy, lambda old, new: ancestry.get((old, new), False))
        if not decision.accepted:
            raise RefConflict("; ".join(f"{r.ref}: {r.reason}" for r in decision.rejections))

    # -- compare-and-swap ref changes (API, UI, mirror) ------------------------------------------------
    async def update_refs_cas(self, repo: ForgeRepo, updates: Sequence[RefUpdate], *,
                              actor_id: uuid.UUID | None = None, source: str = "api",
                              policy: PushPolicy | None = None,
                              keep: Sequence[tuple[str, str]] = ()) -> list[RefChange]:
        """Apply ``updates`` in ONE ``git update-ref --stdin`` transaction with explicit old values.

        git verifies every old value under its ref locks (git-update-ref(1): ``create <ref>
        <new>``, ``update <ref> <new> <old>``, ``delete <ref> <old>``), so a stale caller gets
        :class:`RefConflict` and nothing changes: the same stale-ref detection as a push. This is
        never a read-then-write in Python. On PostgreSQL the transaction is also bracketed by
        ``pg_advisory_xact_lock`` on the repository, so nodes queue instead of storming lockfiles.
        With ``policy`` (e.g. ``await service.push_policy(repo)``) the same rules as a push apply
        first (fast-forward only, immutable tags, protected branches), raising :class:`RefConflict`.
        Afterwards the ref mirror is synced and a ``forge.push`` event enqueued. ``keep`` are
        ``(ref, oid)`` pairs under ``refs/mirror-backup/`` created in the same transaction (a
        mirror's replaced tips), so the updates and their backups land together or not at all.
        """
        lines = ["start"]
        for kept, kept_oid in keep:
            if not kept.startswith("refs/mirror-backup/") or not check_ref_format(kept) or not _OID.match(kept_oid):
                raise InputProblems({"ref": f"Not an allowed backup ref: {kept!r}"})
            lines.append(f"create {kept} {kept_oid}")
        for u in updates:
            if not u.ref.startswith(("refs/heads/", "refs/tags/")) or not check_ref_format(u.ref):
                raise InputProblems({"ref": f"Not an allowed ref name: {u.ref!r}"})
            for oid in (u.new, u.old):
                if oid is not None and not _OID.match(oid):
                    raise InputProblems({"ref": f"Not a full object id: {oid!r}"})
            if u.new is None and u.old is None:
                raise InputProblems({"ref": "A delete needs the expected old value."})
            if u.old is None:
                lines.append(f"create {u.ref} {u.new}")
            elif u.new is None:
                lines.append(f"delete {u.ref} {u.old}")
            else:
                lines.append(f"update {u.ref} {u.new} {u.old}")
        lines += ["prepare", "commit"]
        if policy is not None:
            await self._check_policy(repo, updates, policy)
        bind = self.db.get_bind()
        if bind.dialect.name == "postgresql":
            await self.db.execute(select(func.pg_advisory_xact_lock(_lock_key(repo.id))))
        try:
            await self.store.git(repo.id, "update-ref", "--stdin", input=("\n".join(lines) + "\n").encode())
        except GitError as exc:
            raise RefConflict(exc.stderr.strip().removeprefix("fatal: ")) from exc
        return await self.sync_refs(repo.id, actor_id=actor_id, source=source)


async def _is_ancestor(store: RepoStore, repo_id: uuid.UUID, old: str, new: str) -> bool:
    code, _out, _err = await store.git(repo_id, "merge-base", "--is-ancestor", old, new, check=False)
    return code == 0


def _new_id() -> uuid.UUID:
    return uuid.UUID(str(_uuid7()))


def _lock_key(repo_id: uuid.UUID) -> int:
    """A signed 64-bit advisory-lock key derived from the repository id."""
    return int.from_bytes(repo_id.bytes[-8:], "big", signed=True)
