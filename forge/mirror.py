"""The mirror service (design/forge.md §3.5): pull mirrors and push targets as rows, their
credentials at rest, and applying what a remote holds to our repositories.

* :func:`clone_repository` creates a repository here from a remote (HEAD and default branch
  included); if the remote cannot be reached or the fetch fails, nothing is left behind: no row,
  no directory.
* :func:`pull` fetches a remote into ``refs/mirror-incoming/<mirror-id>/*`` (a quarantine
  namespace hidden from clients) and applies the differences to the real refs in ONE
  :meth:`RepoService.update_refs_cas` transaction: all of them or none. A force-pushed upstream
  (a non-fast-forward branch, a moved tag) is followed only when the mirror's ``follow_force``
  is set, and every tip it replaces (or an upstream deletion removes) is kept under
  ``refs/mirror-backup/<UTC time>/…`` in that same transaction and reported on the mirror row,
  so no commit is lost. Backups expire as git's unreachable reflog entries do (30 days), at most
  10 per ref, and the newest backup of each ref is never removed (:func:`prune_backups`, at
  each sync that applies). A pull mirror is read-only to pushes and API ref changes
  (:meth:`RepoService.push_policy`, as on Gitea).
* :class:`MirrorService` configures mirrors (web form, API, CLI) and queues their syncs.

The network side (URL checks, pinning, credentials in the child's environment, ``git push``
leased on what a push mirror last pushed) is :mod:`forge.remote`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from app.settings import Settings
from domains.account.models import User
from forge.mirror_models import MIRROR_DIRECTIONS, ForgeMirror
from forge.models import ForgeRepo
from forge.policy import check_ref_format
from forge.remote import (
    MAX_ERROR_CHARS,
    STAGING,
    GitRemote,
    MirrorError,
    build_remote,
    drop_staging,
    fetch_to_staging,
    ls_remote,
)
from forge.services import RefConflict, RefUpdate, RepoService, branch_name_problem
from forge.storage import RepoStore

SYNC_JOB = "forge.mirror.sync"
MIN_INTERVAL = 60
MAX_INTERVAL = 7 * 24 * 3600

__all__ = [
    "SYNC_JOB",
    "MirrorService",
    "MirrorSyncPayload",
    "SyncReport",
    "apply_incoming",
    "backups_to_prune",
    "clone_repository",
    "import_repository",
    "mirror_view",
    "prune_backups",
    "pull",
]


class MirrorSyncPayload(msgspec.Struct, frozen=True):
    mirror_id: str
    generation: int = 0
    # True for the self-rescheduling chain; a one-shot run (manual "sync now", a push) never reschedules.
    chain: bool = False


log = logging.getLogger("rose_ash.forge.mirror")

# -- pull --------------------------------------------------------------------------------------------------
BACKUP = "refs/mirror-backup"
# Retention of backups, per backed-up ref: git keeps an unreachable reflog entry 30 days
# (gc.reflogExpireUnreachable); a count cap as well, so an upstream force-pushed every few minutes
# cannot pile refs up (each one is listed by every for-each-ref and slows ref transactions).
# The newest backup of a ref is always kept, however old: the last tip that ref had here.
BACKUPS_PER_REF = 10
BACKUP_MAX_AGE = timedelta(days=30)
_STAMP = re.compile(r"(\d{8}T\d{6}Z)(?:-(\d+))?")


@dataclass
class SyncReport:
    """What a pull sync did: every update applied, or (when any was refused) none."""

    applied: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    # (backup ref, oid): the tips a followed force-push or deletion replaced, kept in the same transaction.
    backups: list[tuple[str, str]] = field(default_factory=list)

    @property
    def error(self) -> str:
        return "; ".join(self.rejected)[:MAX_ERROR_CHARS]

    # Backups older than the retention that this sync removed (:func:`prune_backups`).
    pruned: list[str] = field(default_factory=list)

    @property
    def backup_note(self) -> str:
        return "\n".join(f"{ref} {oid}" for ref, oid in self.backups)


def backup_stamp(now: datetime | None = None) -> str:
    """The ``<time>`` part of ``refs/mirror-backup/<time>/…``: UTC, to the second, sortable."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


async def _current_refs(store: RepoStore, repo_id: uuid.UUID, *patterns: str) -> dict[str, str]:
    _code, out, _err = await store.git(repo_id, "for-each-ref", "--format=%(objectname) %(refname)", *patterns)
    return {name: oid for oid, _, name in (ln.partition(" ") for ln in out.decode().splitlines())}


def backups_to_prune(backups: Mapping[str, str], now: datetime, *, per_ref: int = BACKUPS_PER_REF,
                     max_age: timedelta = BACKUP_MAX_AGE) -> dict[str, str]:
    """Which of ``backups`` (``{backup ref: oid}``) are past the retention: per backed-up ref
    (``heads/main``), those beyond the newest ``per_ref`` and those older than ``max_age``, but
    never that ref's newest. A ref whose name is not ``<stamp>[-n]/<ref>`` was not made here and
    is never removed."""
    by_ref: dict[str, list[tuple[datetime, int, str]]] = {}
    for ref in backups:
        stamp, _slash, backed_up = ref.removeprefix(f"{BACKUP}/").partition("/")
        match = _STAMP.fullmatch(stamp)
        if match is None or not backed_up or not ref.startswith(f"{BACKUP}/"):
            continue
        try:
            when = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:  # digits that are no date (month 13): not a stamp of ours
            continue
        by_ref.setdefault(backed_up, []).append((when, int(match.group(2) or 1), ref))
    doomed: dict[str, str] = {}
    for entries in by_ref.values():
        entries.sort(reverse=True)  # newest first; "-2" is the second backup within one second
        for rank, (when, _n, ref) in enumerate(entries[1:], start=1):
            if rank >= per_ref or now - when > max_age:
                doomed[ref] = backups[ref]
    return doomed


async def prune_backups(store: RepoStore, repo_id: uuid.UUID, *, now: datetime | None = None,
                        per_ref: int = BACKUPS_PER_REF, max_age: timedelta = BACKUP_MAX_AGE) -> list[str]:
    """Delete the backups past the retention (:func:`backups_to_prune`) in one ref transaction,
    each with its expected oid; the names deleted. Best effort: if the transaction fails (another
    sync pruned first), nothing is deleted and the next sync tries again."""
    backups = await _current_refs(store, repo_id, BACKUP)
    doomed = backups_to_prune(backups, now or datetime.now(UTC), per_ref=per_ref, max_age=max_age)
    if not doomed:
        return []
    lines = ["start", *(f"delete {ref} {oid}" for ref, oid in sorted(doomed.items())), "prepare", "commit"]
    code, _out, err = await store.git(repo_id, "update-ref", "--stdin", input=("\n".join(lines) + "\n").encode(),
                                      check=False)
    if code != 0:
        log.warning("repo %s: pruning %d mirror backups failed, kept for the next sync: %s", repo_id, len(doomed),
                    err.decode(errors="replace").strip()[:MAX_ERROR_CHARS])
        return []
    log.info("repo %s: pruned %d mirror backups past their retention", repo_id, len(doomed))
    return sorted(doomed)


async def apply_incoming(service: RepoService, repo: ForgeRepo, incoming: Mapping[str, str], *,
                         follow_force: bool = False, actor_id: uuid.UUID | None = None,
                         now: datetime | None = None) -> SyncReport:
    """Make the repository's heads and tags equal ``incoming`` (the fetched upstream): all or nothing.

    Creations and fast-forwards are applied. A branch the upstream deleted is deleted and its tip
    kept under ``refs/mirror-backup/<time>/heads/<name>``. A non-fast-forward branch update or a
    moved tag (a force-pushed upstream) is followed only with ``follow_force``, its old tip kept
    the same way; otherwise the whole sync is refused, nothing changes, and every diverged ref is
    reported. The upstream deleting the default branch is always refused. The updates and the
    backups go through one ``git update-ref --stdin`` transaction with explicit old values, so a
    ref that moved meanwhile fails them all.
    """
    current = await _current_refs(service.store, repo.id, "refs/heads", "refs/tags")
    report = SyncReport()
    updates: list[RefUpdate] = []
    replaced: list[tuple[str, str]] = []
    for ref in sorted(set(incoming) | set(current)):
        old, new = current.get(ref), incoming.get(ref)
        if old == new:
            continue
        if not ref.startswith(("refs/heads/", "refs/tags/")) or not check_ref_format(ref):
            report.rejected.append(f"{ref}: funny refname (see git check-ref-format)")
            continue
        if old is None:
            updates.append(RefUpdate(ref, new, None))
            continue
        if new is None:
            if ref == f"refs/heads/{repo.default_branch}":
                report.rejected.append(f"{ref}: the upstream deleted the default branch; it is kept here")
                continue
            updates.append(RefUpdate(ref, None, old))
            replaced.append((ref, old))
            continue
        if ref.startswith("refs/heads/"):
            code, _o, _e = await service.store.git(repo.id, "merge-base", "--is-ancestor", old, new, check=False)
            if code == 0:
                updates.append(RefUpdate(ref, new, old))
                continue
            what = "non-fast-forward (the upstream was force-pushed)"
        else:
            what = "the upstream moved this tag"
        if not follow_force:
            report.rejected.append(f"{ref}: {what}; this mirror does not follow force-pushes "
                                   f"(here {old[:12]}, upstream {new[:12]})")
            continue
        updates.append(RefUpdate(ref, new, old))
        replaced.append((ref, old))
    if report.rejected:
        report.rejected.append("nothing was applied (a mirror sync applies all updates or none)")
        return report
    if not updates:
        report.pruned = await prune_backups(service.store, repo.id, now=now)
        return report
    base = stamp = backup_stamp(now)
    n = 1
    while replaced and await _current_refs(service.store, repo.id, f"{BACKUP}/{stamp}"):
        n += 1  # two syncs within one second (or another mirror of this repository): never overwrite a backup
        stamp = f"{base}-{n}"
    report.backups = [(f"{BACKUP}/{stamp}/{ref.removeprefix('refs/')}", oid) for ref, oid in replaced]
    try:
        await service.update_refs_cas(repo, updates, actor_id=actor_id, source="mirror", keep=report.backups)
    except RefConflict as exc:
        report.backups = []
        report.rejected.append(f"refs changed during the sync, nothing was applied; retried next time: {exc}")
        return report
    except InputProblems as exc:
        report.backups = []
        report.rejected.append(f"nothing was applied: {exc}")
        return report
    report.applied = [u.ref for u in updates]
    report.pruned = await prune_backups(service.store, repo.id, now=now)
    return report


async def pull(service: RepoService, repo: ForgeRepo, remote: GitRemote, *, mirror_id: str = "adhoc",
               follow_force: bool = False, actor_id: uuid.UUID | None = None) -> SyncReport:
    """Fetch and apply in one call (the job splits the two so no transaction spans the network)."""
    staging = f"{STAGING}/{mirror_id}"
    try:
        incoming = await fetch_to_staging(remote, service.store, repo.id, staging)
        return await apply_incoming(service, repo, incoming, follow_force=follow_force, actor_id=actor_id)
    finally:
        await drop_staging(service.store, repo.id, staging)


async def clone_repository(service: RepoService, owner: User, name: str, remote: GitRemote, *,
                           description: str = "", private: bool = False) -> ForgeRepo:
    """Create ``owner/name`` from ``remote``: refs, HEAD and the default branch follow the remote.

    The remote is listed first, so an unreachable one creates nothing; any later failure deletes
    the new row and its directory before the error propagates.
    """
    listing = await ls_remote(remote, service.store)
    default_branch = listing.head or ("main" if "refs/heads/main" in listing.refs else
                                      next((r.removeprefix("refs/heads/") for r in sorted(listing.refs)
                                            if r.startswith("refs/heads/")), "main"))
    if branch_name_problem(default_branch):
        default_branch = "main"
    repo = await service.create(owner, name, description=description, private=private, default_branch=default_branch)
    staging = f"{STAGING}/clone"
    try:
        incoming = await fetch_to_staging(remote, service.store, repo.id, staging)
        updates = [RefUpdate(ref, oid, None) for ref, oid in sorted(incoming.items())]
        if updates:
            await service.update_refs_cas(repo, updates, actor_id=owner.id, source="mirror")
        await drop_staging(service.store, repo.id, staging)
    except BaseException:
        await service.delete(repo)
        raise
    return repo


async def import_repository(service: RepoService, settings: Settings, owner: User, name: str, url: str,
                            token: str | None, *, mirror: bool = False, interval_seconds: int = 3600,
                            description: str = "", private: bool = False, follow_force: bool = False) -> ForgeRepo:
    """Clone ``url`` into ``owner/name`` and, with ``mirror``, keep pulling it on a schedule.

    ``token`` is an access token or a :func:`forge.remote.basic_credential`. Raises
    :class:`InputProblems` with the keys ``name``, ``url``, ``interval`` (422, or 409 for a taken
    name); whatever failed, no row and no directory are left (the caller rolls back).
    """
    if mirror and not MIN_INTERVAL <= interval_seconds <= MAX_INTERVAL:
        raise InputProblems({"interval": f"Use between {MIN_INTERVAL} and {MAX_INTERVAL} seconds."})
    try:
        remote = await build_remote(url, token, allow_private=settings.federation_allow_private_addresses)
    except MirrorError as exc:
        raise InputProblems({"url": str(exc)}) from None
    if await service.get_by_owner_and_name(owner.username, name) is not None:
        raise InputProblems({"name": "You already have a repository with that name."}, status=409)
    try:
        repo = await clone_repository(service, owner, name, remote, description=description, private=private)
    except MirrorError as exc:
        raise InputProblems({"url": str(exc)}) from None
    except RefConflict as exc:
        raise InputProblems({"url": f"The remote's refs could not be applied: {exc}"}, status=409) from None
    if mirror:
        try:
            await MirrorService(service.db, service.store, settings).add(
                repo, direction="pull", remote_url=url, token=token, interval_seconds=interval_seconds,
                follow_force=follow_force)
        except BaseException:
            service.store.delete(repo.id)
            raise
    return repo


# -- credentials at rest -----------------------------------------------------------------------------------
def _aead(secret_key: str) -> AESGCM:
    return AESGCM(hashlib.sha256(b"rose-ash forge mirror credential\0" + secret_key.encode()).digest())


def seal_token(secret_key: str, token: str, context: str) -> bytes:
    nonce = os.urandom(12)
    return b"\x01" + nonce + _aead(secret_key).encrypt(nonce, token.encode(), context.encode())


def open_token(secret_key: str, blob: bytes | None, context: str) -> str | None:
    if not blob:
        return None
    if blob[:1] != b"\x01":
        raise MirrorError("The stored credential has an unknown format.")
    try:
        return _aead(secret_key).decrypt(blob[1:13], blob[13:], context.encode()).decode()
    except InvalidTag:
        raise MirrorError("The stored credential cannot be decrypted (was SECRET_KEY changed?).") from None


def _context(repo_id: uuid.UUID, direction: str, url: str) -> str:
    return f"{repo_id}\0{direction}\0{url}"


# -- configuration (web form, API) -------------------------------------------------------------------------
class MirrorService:
    def __init__(self, db: AsyncSession, store: RepoStore, settings: Settings) -> None:
        self.db = db
        self.store = store
        self.settings = settings

    async def list_for(self, repo: ForgeRepo) -> list[ForgeMirror]:
        rows = await self.db.execute(select(ForgeMirror).where(ForgeMirror.repo_id == repo.id)
                                     .order_by(ForgeMirror.direction, ForgeMirror.remote_url))
        return list(rows.scalars().all())

    async def get(self, repo: ForgeRepo, mirror_id: str) -> ForgeMirror | None:
        try:
            mid = uuid.UUID(mirror_id)
        except ValueError:
            return None
        mirror = await self.db.get(ForgeMirror, mid)
        return mirror if mirror is not None and mirror.repo_id == repo.id else None

    async def add(self, repo: ForgeRepo, *, direction: str, remote_url: str, token: str | None,
                  interval_seconds: int = 3600, follow_force: bool = False) -> ForgeMirror:
        """Validate and save a pull mirror or push target, and queue its first sync (which reschedules itself)."""
        errors: dict[str, str] = {}
        if direction not in MIRROR_DIRECTIONS:
            errors["direction"] = "Choose pull or push."
        if not MIN_INTERVAL <= interval_seconds <= MAX_INTERVAL:
            errors["interval"] = f"Use between {MIN_INTERVAL} and {MAX_INTERVAL} seconds."
        if len(remote_url) > 2000:
            errors["remote_url"] = "That URL is too long."
        else:
            try:
                await build_remote(remote_url, token, allow_private=self.settings.federation_allow_private_addresses)
            except MirrorError as exc:
                errors["remote_url"] = str(exc)
        if errors:
            raise InputProblems(errors)
        existing = (await self.db.execute(select(ForgeMirror).where(
            ForgeMirror.repo_id == repo.id, ForgeMirror.direction == direction, ForgeMirror.remote_url == remote_url,
        ))).scalar_one_or_none()
        if existing is not None:
            raise InputProblems({"remote_url": "That mirror already exists."}, status=409)
        mirror = ForgeMirror(repo_id=repo.id, direction=direction, remote_url=remote_url,
                             interval_seconds=interval_seconds, generation=1, last_error="",
                             follow_force=follow_force and direction == "pull", last_backups="", pushed_refs="",
                             credential=seal_token(self.settings.secret_key, token,
                                                   _context(repo.id, direction, remote_url)) if token else None)
        self.db.add(mirror)
        await self.db.flush()
        from forge.mirror_jobs import schedule_mirror  # the job module imports this one

        await schedule_mirror(self.db, mirror)
        return mirror

    async def remove(self, repo: ForgeRepo, mirror_id: str) -> bool:
        mirror = await self.get(repo, mirror_id)
        if mirror is None:
            return False
        from forge.mirror_jobs import unschedule_mirror

        await unschedule_mirror(self.db, mirror.id)
        await self.db.delete(mirror)
        await self.db.flush()
        return True

    async def set_follow_force(self, repo: ForgeRepo, mirror_id: str, follow: bool) -> ForgeMirror:
        """Whether a pull mirror follows force-pushed upstreams (keeping the replaced tips)."""
        mirror = await self.get(repo, mirror_id)
        if mirror is None or mirror.direction != "pull":
            raise MirrorError("No such pull mirror.")
        mirror.follow_force = follow
        await self.db.flush()
        return mirror

    async def schedule_now(self, repo: ForgeRepo, mirror_id: str) -> None:
        """Sync now and restart the schedule from here: the mirror's recurring job moves to now under a
        new generation, so a schedule whose run died after repeated failures is re-armed too."""
        mirror = await self.get(repo, mirror_id)
        if mirror is None:
            raise MirrorError("No such mirror.")
        mirror.generation += 1
        await self.db.flush()
        from forge.mirror_jobs import schedule_mirror

        await schedule_mirror(self.db, mirror)

    def token_of(self, mirror: ForgeMirror) -> str | None:
        return open_token(self.settings.secret_key, mirror.credential,
                          _context(mirror.repo_id, mirror.direction, mirror.remote_url))

    async def remote_of(self, mirror: ForgeMirror) -> GitRemote:
        return await build_remote(mirror.remote_url, self.token_of(mirror),
                                  allow_private=self.settings.federation_allow_private_addresses)


def mirror_view(mirror: ForgeMirror) -> dict[str, object]:
    """The JSON shape of a mirror (never its credential)."""
    return {
        "id": str(mirror.id), "direction": mirror.direction, "remote_url": mirror.remote_url,
        "interval": mirror.interval_seconds, "enabled": mirror.enabled, "has_credential": mirror.credential is not None,
        "last_sync_at": mirror.last_sync_at.isoformat() if mirror.last_sync_at else None,
        "last_error": mirror.last_error, "follow_force": mirror.follow_force,
        "last_backups": mirror.last_backups.splitlines(),
    }
