"""Mirror backups expire (forge/mirror.py, prune_backups): a pull mirror that follows force-pushes
keeps each replaced tip under refs/mirror-backup/<stamp>/<ref>; past 30 days or beyond the newest
10 of a ref they are deleted, in one ref transaction, but the newest backup of a ref never is.
Real bare repositories and real git; the retention is decided by the stamps, so ``now`` is given."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

import forge.mirror
from forge.config import ForgeConfig
from forge.mirror import BACKUP, apply_incoming, backup_stamp, backups_to_prune, prune_backups
from forge.services import RefUpdate, RepoService
from forge.storage import RepoStore
from tests.forge.test_forge_services import commit_in, user

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
OID = "1" * 40


def named(ref: str, days_ago: float, n: int = 1) -> str:
    stamp = backup_stamp(NOW - timedelta(days=days_ago))
    return f"{BACKUP}/{stamp}{f'-{n}' if n > 1 else ''}/{ref}"


def test_the_newest_of_a_ref_stays_however_old_and_the_cap_counts_per_ref() -> None:
    lone = named("heads/gone", 400)
    main = [named("heads/main", day) for day in range(12)]  # 0..11 days old: 12 backups
    tag = [named("tags/v1", 40), named("tags/v1", 35)]
    backups = {ref: OID for ref in [lone, *main, *tag]}
    doomed = backups_to_prune(backups, NOW)
    assert lone not in doomed  # the only (so newest) backup of its ref: kept at 400 days
    assert sorted(doomed) == sorted([main[10], main[11], tag[0]])  # beyond 10 of main; the older tag one
    assert all(doomed[ref] == OID for ref in doomed)  # deleted with the oid they were read at


def test_age_alone_expires_and_a_second_within_one_second_is_newer() -> None:
    first, second = named("heads/main", 31), named("heads/main", 31, n=2)
    fresh, old = named("heads/dev", 29), named("heads/dev", 30.5)
    doomed = backups_to_prune({first: OID, second: OID, fresh: OID, old: OID}, NOW)
    assert set(doomed) == {first, old}  # "-2" was made after the plain stamp; 29 days is kept
    ten = {named("heads/x", day / 10, n): OID for n, day in enumerate(range(20), start=1)}
    assert len(backups_to_prune(ten, NOW, per_ref=3)) == 17


@pytest.mark.parametrize("foreign", [
    f"{BACKUP}/by-hand/heads/main",             # not a stamp
    f"{BACKUP}/20261399T000000Z/heads/main",    # a stamp's shape, but no date
    f"{BACKUP}/20200101T000000Z",               # no ref under the stamp
    "refs/heads/20200101T000000Z/heads/main",   # not under the backup namespace
])
def test_refs_not_made_here_are_never_pruned(foreign: str) -> None:
    backups = {foreign: OID, named("heads/main", 100): OID, named("heads/main", 90): OID}
    assert foreign not in backups_to_prune(backups, NOW, per_ref=1)


@pytest.fixture
def store(tmp_path: Path) -> RepoStore:
    return RepoStore(tmp_path / "repos", ForgeConfig(state_dir=tmp_path / "forge"))


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(path), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def backup_refs(path: Path) -> dict[str, str]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", BACKUP)
    return dict(line.split(" ") for line in out.splitlines())


async def mirrored_repo(db: AsyncSession, store: RepoStore) -> tuple[RepoService, Any, Path, list[str]]:
    service = RepoService(db, store)
    repo = await service.create(await user(db, "alice"), "mirror")
    path = store.locate(repo.id)
    commits = [commit_in(path, "c0")]
    for i in range(1, 14):
        commits.append(commit_in(path, f"c{i}", commits[-1]))
    await service.update_refs_cas(repo, [RefUpdate("refs/heads/main", commits[0], None)])
    return service, repo, path, commits


async def test_prune_deletes_only_the_expired_in_the_repository(db_session: AsyncSession, store: RepoStore) -> None:
    _service, repo, path, commits = await mirrored_repo(db_session, store)
    made = {named("heads/main", day): commits[day] for day in range(13)}
    made[named("heads/gone", 90)] = commits[0]
    made[f"{BACKUP}/by-hand/heads/main"] = commits[1]
    for ref, oid in made.items():
        git(path, "update-ref", ref, oid)
    pruned = await prune_backups(store, repo.id, now=NOW)
    left = backup_refs(path)
    assert sorted(pruned) == sorted(named("heads/main", day) for day in (10, 11, 12))
    assert set(left) == set(made) - set(pruned)
    assert all(left[ref] == made[ref] for ref in left)  # the kept ones still name their commits
    assert git(path, "cat-file", "-t", commits[12]) == "commit"  # objects stay until git gc
    assert await prune_backups(store, repo.id, now=NOW) == []  # nothing more to do: a no-op


async def test_a_backup_that_moved_meanwhile_stops_the_whole_prune(db_session: AsyncSession, store: RepoStore,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _service, repo, path, commits = await mirrored_repo(db_session, store)
    made = {named("heads/main", day): commits[i] for i, day in enumerate((1, 40, 50))}
    for ref, oid in made.items():
        git(path, "update-ref", ref, oid)
    real = forge.mirror._current_refs

    async def stale(*args: Any) -> dict[str, str]:  # what a listing read before the ref moved would say
        listed = await real(*args)
        return {ref: (commits[13] if ref == named("heads/main", 50) else oid) for ref, oid in listed.items()}

    monkeypatch.setattr(forge.mirror, "_current_refs", stale)
    assert await prune_backups(store, repo.id, now=NOW) == []
    assert backup_refs(path) == made  # one transaction: the other expired backup was kept too


async def test_a_followed_force_push_prunes_and_keeps_its_new_backup(db_session: AsyncSession,
                                                                     store: RepoStore) -> None:
    service, repo, path, commits = await mirrored_repo(db_session, store)
    old = {named("heads/main", 45): commits[2], named("heads/main", 60): commits[3]}
    for ref, oid in old.items():
        git(path, "update-ref", ref, oid)
    unrelated = commit_in(path, "rewritten history")  # not a descendant of main: a force-push
    refused = await apply_incoming(service, repo, {"refs/heads/main": unrelated}, now=NOW)
    assert refused.rejected and refused.pruned == [] and backup_refs(path) == old  # a refused sync prunes nothing
    report = await apply_incoming(service, repo, {"refs/heads/main": unrelated}, follow_force=True, now=NOW)
    assert report.applied == ["refs/heads/main"] and report.backups == [(named("heads/main", 0), commits[0])]
    assert report.pruned == sorted(old)  # now older than 30 days and no longer the newest
    assert backup_refs(path) == {named("heads/main", 0): commits[0]}
    assert git(path, "rev-parse", "refs/heads/main") == unrelated
