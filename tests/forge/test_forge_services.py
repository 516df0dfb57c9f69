"""RepoService against a real database (SQLite and PostgreSQL) and real bare repositories."""
# ruff: noqa: ASYNC221  (short git calls in tests)

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from domains.account.models import User
from forge.config import ForgeConfig
from forge.models import ForgeRepoRef
from forge.policy import ZERO_OID, Protection
from forge.services import RefConflict, RefUpdate, RepoService
from forge.storage import RepoStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(tmp_path: Path) -> RepoStore:
    return RepoStore(tmp_path / "repos", ForgeConfig(state_dir=tmp_path / "forge"))


async def user(session: AsyncSession, name: str, *, admin: bool = False) -> User:
    u = User(username=name, email=f"{name}@example.org", password_hash="x", is_admin=admin)
    session.add(u)
    await session.flush()
    return u


def commit_in(path: Path, message: str, parent: str | None = None) -> str:
    """Write a commit straight into the bare repository (no ref change)."""
    def git(*args: str, input: str | None = None) -> str:
        return subprocess.run(["git", "--git-dir", str(path), *args], input=input, capture_output=True, text=True,
                              check=True, env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x",
                                               "PATH": "/usr/bin:/bin:/usr/local/bin"}).stdout.strip()

    blob = git("hash-object", "-w", "--stdin", input=message)
    tree = git("mktree", input=f"100644 blob {blob}\tfile\n")
    return git("commit-tree", tree, "-m", message, *(["-p", parent] if parent else []))


async def test_create_lookup_and_disk_layout(db_session: AsyncSession, store: RepoStore) -> None:
    alice = await user(db_session, "alice")
    service = RepoService(db_session, store)
    repo = await service.create(alice, "My-Repo", description="d", default_branch="trunk")
    path = store.locate(repo.id)
    assert path.parent.name == repo.id.hex[-2:] and path.name == f"{repo.id}.git"
    assert (path / "HEAD").read_text().strip() == "ref: refs/heads/trunk"
    config = subprocess.run(["git", "--git-dir", str(path), "config", "--list", "--local"], capture_output=True,
                            text=True, check=True).stdout
    for setting in ("uploadpack.allowfilter=true", "receive.advertisepushoptions=true",
                    "receive.denynonfastforwards=true", "transfer.fsckobjects=true", "receive.autogc=false"):
        assert setting in config
    assert not (path / "hooks").exists()
    assert (await service.get_by_owner_and_name("ALICE", "my-repo")) is repo
    assert await service.get_by_owner_and_name("alice", "nope") is None
    assert await service.get_by_owner_and_name("../alice", "my-repo") is None
    with pytest.raises(InputProblems) as exc:
        await service.create(alice, "my-repo")
    assert exc.value.status == 409
    for bad in ("", "..", "x.git", "a/b", "-x", "a..b", "x" * 101):
        with pytest.raises(InputProblems):
            await service.create(alice, bad)
    with pytest.raises(InputProblems):
        await service.create(alice, "ok", default_branch="bad..branch")


async def test_permissions_and_collaborators(db_session: AsyncSession, store: RepoStore) -> None:
    alice, bob, carol = await user(db_session, "alice"), await user(db_session, "bob"), await user(db_session, "carol")
    root = await user(db_session, "root0", admin=True)
    service = RepoService(db_session, store)
    public = await service.create(alice, "pub")
    private = await service.create(alice, "priv", private=True)
    assert await service.permission(None, public) == "read"
    assert await service.permission(None, private) == "none"
    assert await service.permission(bob, private) == "none"
    assert await service.permission(alice, private) == "admin"
    assert await service.permission(root, private) == "admin"
    await service.add_collaborator(private, bob, "read")
    await service.add_collaborator(private, carol, "write")
    assert await service.permission(bob, private) == "read"
    assert await service.permission(carol, private) == "write"
    await service.add_collaborator(private, bob, "admin")  # updates in place
    assert [(u.username, p) for u, p in await service.list_collaborators(private)] == [("bob", "admin"),
                                                                                         ("carol", "write")]
    assert await service.remove_collaborator(private, bob) is True
    assert await service.remove_collaborator(private, bob) is False
    assert await service.permission(bob, private) == "none"
    with pytest.raises(InputProblems):
        await service.add_collaborator(private, alice, "read")
    with pytest.raises(InputProblems):
        await service.add_collaborator(private, bob, "owner")  # type: ignore[arg-type]
    await service.set_visibility(private, False)
    assert await service.permission(bob, private) == "read"
    assert [r.name for r in await service.list_for_owner(alice)] == ["priv", "pub"]


async def test_policy_default_branch_and_delete(db_session: AsyncSession, store: RepoStore) -> None:
    alice = await user(db_session, "alice")
    service = RepoService(db_session, store)
    repo = await service.create(alice, "r")
    await service.protect_branch(repo, "release/*")
    await service.protect_branch(repo, "main", allow_deletion=True)
    await service.update_settings(repo, allow_force_push=True, description="new")
    policy = await service.push_policy(repo)
    assert policy.allow_force_push and policy.default_branch == "main"
    assert set(policy.protected) == {Protection("release/*"), Protection("main", True)}
    assert await service.unprotect_branch(repo, "main") is True
    await service.set_default_branch(repo, "develop")
    path = store.locate(repo.id)
    assert (path / "HEAD").read_text().strip() == "ref: refs/heads/develop"
    assert repo.default_branch == "develop"
    with pytest.raises(InputProblems):
        await service.set_default_branch(repo, "no..pe")
    await service.delete(repo)
    assert not path.exists()
    assert await service.get_by_owner_and_name("alice", "r") is None


async def test_cas_ref_updates_and_the_mirror(db_session: AsyncSession, store: RepoStore) -> None:
    from app.jobs import Job

    alice = await user(db_session, "alice")
    service = RepoService(db_session, store)
    repo = await service.create(alice, "cas")
    path = store.locate(repo.id)
    c1 = commit_in(path, "one")
    c2 = commit_in(path, "two", c1)
    c3 = commit_in(path, "three", c1)

    changes = await service.update_refs_cas(repo, [RefUpdate("refs/heads/main", c1, None),
                                                   RefUpdate("refs/tags/v1", c1, None)], actor_id=alice.id)
    assert [(c.ref, c.old, c.new) for c in changes] == [("refs/heads/main", ZERO_OID, c1),
                                                       ("refs/tags/v1", ZERO_OID, c1)]
    await service.update_refs_cas(repo, [RefUpdate("refs/heads/main", c2, c1)])
    # stale: main is at c2, the caller believes c1 -> nothing changes, including the other ref
    with pytest.raises(RefConflict) as exc:
        await service.update_refs_cas(repo, [RefUpdate("refs/heads/other", c3, None),
                                             RefUpdate("refs/heads/main", c3, c1)])
    assert "refs/heads/main" in str(exc.value)
    with pytest.raises(RefConflict):
        await service.update_refs_cas(repo, [RefUpdate("refs/tags/v1", c2, None)])  # already exists
    with pytest.raises(InputProblems):
        await service.update_refs_cas(repo, [RefUpdate("refs/notes/x", c2, None)])
    with pytest.raises(InputProblems):
        await service.update_refs_cas(repo, [RefUpdate("refs/heads/x", "abc", None)])
    refs = {r.name: r.oid for r in await service.refs(repo)}
    assert refs == {"refs/heads/main": c2, "refs/tags/v1": c1}
    await service.update_refs_cas(repo, [RefUpdate("refs/heads/main", None, c2)])
    assert [r.name for r in await service.refs(repo)] == ["refs/tags/v1"]
    await db_session.refresh(repo)
    assert repo.ref_version == 3
    # In enqueue order (UUIDv7 ids grow; PostgreSQL's created_at is one transaction time for all three).
    jobs = (await db_session.execute(select(Job).where(Job.kind == "forge.push").order_by(Job.id))).scalars().all()
    payloads: list[dict[str, Any]] = [j.payload for j in jobs]
    assert [p["source"] for p in payloads] == ["api", "api", "api"]
    assert payloads[0]["actor_id"] == str(alice.id)
    # drift repaired by the same routine
    subprocess.run(["git", "--git-dir", str(path), "update-ref", "refs/heads/side", c3], check=True)
    await db_session.execute(ForgeRepoRef.__table__.update().values(oid="0" * 40))  # type: ignore[attr-defined]
    changes = await service.sync_refs(repo.id)
    assert {c.ref for c in changes} == {"refs/heads/side", "refs/tags/v1"}
    assert {r.name: r.oid for r in await service.refs(repo)} == {"refs/heads/side": c3, "refs/tags/v1": c1}
    assert await service.sync_refs(repo.id) == []


async def test_cas_with_push_policy(db_session: AsyncSession, store: RepoStore) -> None:
    alice = await user(db_session, "alice")
    service = RepoService(db_session, store)
    repo = await service.create(alice, "policy")
    path = store.locate(repo.id)
    c1 = commit_in(path, "one")
    c2 = commit_in(path, "two", c1)
    side = commit_in(path, "side", c1)
    policy = await service.push_policy(repo)
    await service.update_refs_cas(repo, [RefUpdate("refs/heads/main", c1, None),
                                         RefUpdate("refs/tags/v1", c1, None)], policy=policy)
    await service.update_refs_cas(repo, [RefUpdate("refs/heads/main", c2, c1)], policy=policy)  # fast-forward
    with pytest.raises(RefConflict, match="non-fast-forward"):
        await service.update_refs_cas(repo, [RefUpdate("refs/heads/main", side, c2)], policy=policy)
    with pytest.raises(RefConflict, match="tags cannot be moved"):
        await service.update_refs_cas(repo, [RefUpdate("refs/tags/v1", c2, c1)], policy=policy)
    with pytest.raises(RefConflict, match="default branch"):
        await service.update_refs_cas(repo, [RefUpdate("refs/heads/main", None, c2)], policy=policy)
    assert {r.name: r.oid for r in await service.refs(repo)} == {"refs/heads/main": c2, "refs/tags/v1": c1}
    await service.update_refs_cas(repo, [RefUpdate("refs/heads/main", side, c2)])  # no policy: a forced CAS
    assert {r.name: r.oid for r in await service.refs(repo)}["refs/heads/main"] == side
