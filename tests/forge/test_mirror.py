"""The mirror client across two real app processes (A and B), on SQLite and PostgreSQL.

Each server runs without an in-process worker; the test runs each one's durable jobs with
``Worker.run_once`` against its database and data directory, so every sync is deterministic.
Covered: ``POST /api/v1/repos/migrate`` (clone + pull mirror, private source with a token or
with ``auth_username``/``auth_password``) and its refresh job (FF updates, new branches and tags,
deletions); no commit lost in the mirror cases: diverged histories and an upstream force-push
(refused as a whole, or followed with the replaced tips kept under ``refs/mirror-backup/``), a
direct push to a pull mirror (refused with its reason), work done on a push mirror's target
(kept: each ref is leased on what the mirror last pushed; the target's own refusal reasons are
recorded); a push target (A → B on every push; push-delete; the lease as the remote CAS: stale
and non-fast-forward rejections; immutable tags); an unreachable remote leaves nothing behind;
credentials never reach argv, the job's last_error or the logs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.forge.forge_fixtures import DB_KINDS, Forge, _make_forge
from tests.helpers.server import free_port

pytestmark = pytest.mark.e2e
TEST_ENV = {"ROSE_ASH_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true"}


@pytest.fixture(scope="module", params=DB_KINDS)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Forge, Forge]]:
    with ExitStack() as stack:
        gens = [_make_forge(tmp_path_factory.mktemp(name), str(request.param), TEST_ENV) for name in ("a", "b")]
        forges = []
        for gen in gens:
            forges.append(next(gen))
            stack.callback(lambda g=gen: next(g, None))
        yield forges[0], forges[1]


def api(forge: Forge, method: str, path: str, user: str = "alice", **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"token {forge.tokens[user]}"} if user else {}
    return httpx.request(method, f"{forge.base}/api/v1{path}", headers=headers, timeout=60, **kwargs)


def run_jobs(server: Forge) -> int:
    """Run every due job of ``server`` in this process, as its worker would."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    import forge.mirror_jobs  # noqa: F401  (registers forge.mirror.sync and the push listener)
    from app.db import make_engine
    from app.jobs import Worker
    from app.settings import Settings

    settings = Settings.from_env(server.server.env)

    async def go() -> int:
        engine = make_engine(settings.database_url)
        try:
            worker = Worker(async_sessionmaker(engine, expire_on_commit=False), settings=settings, concurrency=1)
            return await worker.run_once()
        finally:
            await engine.dispose()

    return asyncio.run(go())


def refs(forge: Forge, owner: str, repo: str, user: str | None = "alice") -> dict[str, str]:
    out = forge.git("ls-remote", forge.url(owner, repo, user)).stdout
    return {ln.split("\t")[1]: ln.split("\t")[0] for ln in out.splitlines() if "\t" in ln}


def heads_and_tags(found: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in found.items() if k.startswith(("refs/heads/", "refs/tags/")) and not k.endswith("^{}")}


def mirrors(forge: Forge, repo_id: str) -> list[Any]:
    from forge.mirror_models import ForgeMirror

    async def work(session: Any) -> list[Any]:
        rows = await session.execute(select(ForgeMirror).where(ForgeMirror.repo_id == uuid.UUID(repo_id)))
        return list(rows.scalars())

    return forge.db(work)


def queued_syncs(forge: Forge) -> list[Any]:
    from app.jobs import QUEUED, Job

    async def work(session: Any) -> list[Any]:
        rows = await session.execute(select(Job).where(Job.kind == "forge.mirror.sync", Job.state == QUEUED))
        return list(rows.scalars())

    return forge.db(work)


def repo_dirs(forge: Forge) -> list[Path]:
    root = forge.server.data_dir / "repos"
    return sorted(root.glob("*/*.git")) if root.exists() else []


def test_pull_mirror_clone_and_refresh(pair: tuple[Forge, Forge]) -> None:
    a, b = pair
    a.create_repo("alice", "upstream", private=True, default_branch="trunk")
    work = a.new_clone("alice", "upstream", "alice")
    a.git("checkout", "-q", "-b", "trunk", cwd=work)
    a.commit(work, "one")
    a.git("tag", "-a", "v1", "-m", "v1", cwd=work)
    a.git("push", "-q", a.url("alice", "upstream", "alice"), "trunk", "v1", cwd=work)

    source = a.url("alice", "upstream")  # no credentials in the URL: the token goes in auth_token
    response = api(b, "POST", "/repos/migrate", json={
        "clone_addr": source, "repo_name": "copy", "mirror": True, "private": False,
        "auth_token": a.tokens["alice"], "mirror_interval": "10m"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["default_branch"] == "trunk" and created["empty"] is False
    created["id"] = b.repo_uuid("alice", "copy")  # the API's id is Gitea's integer; the tests use our UUID
    assert heads_and_tags(refs(b, "alice", "copy")) == heads_and_tags(refs(a, "alice", "upstream"))
    clone = b.new_clone("alice", "copy")
    assert b.git("symbolic-ref", "HEAD", cwd=clone).stdout.strip() == "refs/heads/trunk"

    # New commits, a branch and a tag upstream; B's sync job brings them over.
    a.commit(work, "two")
    a.git("branch", "feature", cwd=work)
    a.git("branch", "doomed", cwd=work)
    a.git("tag", "v2", cwd=work)
    a.git("push", "-q", a.url("alice", "upstream", "alice"), "trunk", "feature", "doomed", "v2", cwd=work)
    assert run_jobs(b) >= 1
    assert heads_and_tags(refs(b, "alice", "copy")) == heads_and_tags(refs(a, "alice", "upstream"))
    [mirror] = mirrors(b, created["id"])
    assert mirror.direction == "pull" and mirror.last_error == "" and mirror.last_sync_at is not None
    assert a.tokens["alice"].encode() not in (mirror.credential or b"")  # encrypted at rest
    # The chain rescheduled itself ~10 minutes out (and only once).
    chained = [j for j in queued_syncs(b) if j.payload["mirror_id"] == str(mirror.id)]
    assert len(chained) == 1 and chained[0].payload["chain"] is True
    # Staging refs are gone and were never advertised.
    bare = b.bare_path(created["id"])
    assert b.git("--git-dir", str(bare), "for-each-ref", "refs/mirror-incoming").stdout == ""

    # Upstream deletes a branch and rewrites another (delete + create = non-fast-forward for B).
    a.git("push", "-q", a.url("alice", "upstream", "alice"), ":doomed", ":feature", cwd=work)
    a.git("checkout", "-q", "--orphan", "other", cwd=work)
    a.commit(work, "unrelated")
    a.git("push", "-q", a.url("alice", "upstream", "alice"), "other:feature", cwd=work)
    before = refs(b, "alice", "copy")
    _sync_now(b, "alice", "copy", mirror.id)
    # The mirror does not follow force-pushes: the sync applies nothing at all (not even the deletion).
    assert refs(b, "alice", "copy") == before
    [mirror] = mirrors(b, created["id"])
    assert "refs/heads/feature" in mirror.last_error and "non-fast-forward" in mirror.last_error
    assert "nothing was applied" in mirror.last_error and mirror.last_backups == ""
    assert a.tokens["alice"] not in mirror.last_error
    assert b.git("--git-dir", str(bare), "for-each-ref", "refs/mirror-backup").stdout == ""

    # Configured to follow force-pushes: everything lands in one transaction, the replaced tips are kept.
    _set_follow_force(b, created["id"])
    _sync_now(b, "alice", "copy", mirror.id)
    after = refs(b, "alice", "copy")
    assert heads_and_tags(after) == heads_and_tags(refs(a, "alice", "upstream"))
    [mirror] = mirrors(b, created["id"])
    assert mirror.last_error == ""
    kept = dict(ln.split(" ") for ln in mirror.last_backups.splitlines())  # backup ref -> oid
    assert {ref.split("/", 3)[3] for ref in kept} == {"heads/feature", "heads/doomed"}
    assert all(ref.startswith("refs/mirror-backup/") for ref in kept)
    on_disk = b.git("--git-dir", str(bare), "for-each-ref", "--format=%(refname) %(objectname)",
                    "refs/mirror-backup").stdout.split()
    assert dict(zip(on_disk[::2], on_disk[1::2], strict=True)) == kept
    assert set(kept.values()) == {before["refs/heads/feature"], before["refs/heads/doomed"]}
    _no_commit_lost(b, bare, before)
    b.git("--git-dir", str(bare), "fsck", "--no-dangling")


def _set_follow_force(forge: Forge, repo_id: str, follow: bool = True) -> None:
    from forge.mirror_models import ForgeMirror

    async def work(session: Any) -> None:
        row = (await session.execute(select(ForgeMirror).where(
            ForgeMirror.repo_id == uuid.UUID(repo_id), ForgeMirror.direction == "pull"))).scalar_one()
        row.follow_force = follow

    forge.db(work)


def _no_commit_lost(forge: Forge, bare: Path, before: dict[str, str]) -> None:
    """Every tip the repository had is still reachable from one of its refs (backups included)."""
    for name, oid in before.items():
        if name.endswith("^{}") or name == "HEAD":
            continue
        holders = forge.git("--git-dir", str(bare), "for-each-ref", "--contains", oid, "--format=%(refname)",
                            check=False).stdout.split()
        tagged = forge.git("--git-dir", str(bare), "for-each-ref", "--points-at", oid, "--format=%(refname)").stdout
        assert holders or tagged.strip(), f"{name} ({oid}) is no longer reachable"


def _sync_now(forge: Forge, owner: str, repo: str, mirror_id: Any) -> None:
    assert api(forge, "POST", f"/repos/{owner}/{repo}/mirror-sync").status_code == 200
    assert run_jobs(forge) >= 1


def test_push_target_round_trip_and_remote_cas(pair: tuple[Forge, Forge]) -> None:
    from forge.config import ForgeConfig
    from forge.remote import build_remote, push, push_command
    from forge.storage import RepoStore

    a, b = pair
    src = a.create_repo("alice", "pushsrc")
    dst = b.create_repo("alice", "pushdst", private=True)
    target = b.url("alice", "pushdst")
    added = api(a, "POST", "/repos/alice/pushsrc/push_mirrors", json={
        "remote_address": target, "remote_password": b.tokens["alice"], "interval": "1h"})
    assert added.status_code == 200, added.text
    assert b.tokens["alice"] not in added.text
    listed = api(a, "GET", "/repos/alice/pushsrc/push_mirrors").json()
    assert [m["remote_address"] for m in listed] == [target]

    # A push to A reaches B through the push listener (forge.push job -> one-shot mirror sync).
    work = a.new_clone("alice", "pushsrc", "alice")
    first = a.commit(work, "first")
    a.git("branch", "topic", cwd=work)
    a.git("tag", "-a", "v1", "-m", "v1", cwd=work)
    a.git("push", "-q", a.url("alice", "pushsrc", "alice"), "main", "topic", "v1", cwd=work)
    run_jobs(a)
    assert heads_and_tags(refs(b, "alice", "pushdst")) == heads_and_tags(refs(a, "alice", "pushsrc"))
    back = b.new_clone("alice", "pushdst", "alice")  # fetch back from B
    assert b.rev(back, "HEAD") == first

    # Push-delete travels too.
    a.git("push", "-q", a.url("alice", "pushsrc", "alice"), ":topic", cwd=work)
    run_jobs(a)
    assert "refs/heads/topic" not in refs(b, "alice", "pushdst")

    # The lease is B's compare-and-swap: a stale expectation is rejected and B is untouched.
    second = a.commit(work, "second")
    a.git("push", "-q", a.url("alice", "pushsrc", "alice"), "main", cwd=work)
    store = RepoStore(a.server.data_dir / "repos", ForgeConfig(state_dir=a.work / "client-state"))
    remote = asyncio.run(build_remote(target, b.tokens["alice"], allow_private=True))
    stale = asyncio.run(push(store, uuid.UUID(src["uuid"]), remote, [("refs/heads/main", second, "1" * 40)]))
    assert [(r.ref, r.flag) for r in stale] == [("refs/heads/main", "!")] and "stale" in stale[0].summary
    assert refs(b, "alice", "pushdst")["refs/heads/main"] == first
    # Credentials are only in the environment, never in argv.
    argv = push_command(remote, [("refs/heads/main", second, first)])
    assert not any(b.tokens["alice"] in arg for arg in argv)
    env = remote.env({})
    assert any(b.tokens["alice"] in v for v in env.values()) and env["GIT_TERMINAL_PROMPT"] == "0"

    # Non-fast-forward with a correct lease: B's policy refuses it. Moving a tag: refused too.
    orphan = a.tmp("orphan")
    a.git("init", "-q", "-b", "main", str(orphan))
    unrelated = a.commit(orphan, "unrelated")
    a.git("push", "-q", str(a.bare_path(src["uuid"])), "main:refs/heads/side", cwd=orphan)
    nonff = asyncio.run(push(store, uuid.UUID(src["uuid"]), remote, [("refs/heads/main", unrelated, first)]))
    assert nonff[0].flag == "!"
    moved = asyncio.run(push(store, uuid.UUID(src["uuid"]), remote,
                             [("refs/tags/v1", second, refs(b, "alice", "pushdst")["refs/tags/v1"])]))
    assert moved[0].flag == "!"
    assert refs(b, "alice", "pushdst")["refs/heads/main"] == first
    # The good update still goes through with the right lease.
    ok = asyncio.run(push(store, uuid.UUID(src["uuid"]), remote, [("refs/heads/main", second, first)]))
    assert ok[0].ok and refs(b, "alice", "pushdst")["refs/heads/main"] == second
    b.git("--git-dir", str(b.bare_path(dst["uuid"])), "fsck", "--no-dangling")

    # Removing the push target stops further syncs.
    [m] = listed
    assert api(a, "DELETE", f"/repos/alice/pushsrc/push_mirrors/{m['remote_name']}").status_code == 204
    assert api(a, "GET", "/repos/alice/pushsrc/push_mirrors").json() == []


def test_unreachable_remote_leaves_nothing_and_no_secret_leaks(pair: tuple[Forge, Forge]) -> None:
    a, b = pair
    dirs_before = repo_dirs(b)
    closed = f"http://127.0.0.1:{free_port()}/forge/alice/nothing.git"
    secret = "rat_this-is-not-a-real-token-0123456789"
    response = api(b, "POST", "/repos/migrate", json={"clone_addr": closed, "repo_name": "ghost",
                                                      "auth_token": secret, "mirror": True})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert secret not in response.text
    assert api(b, "GET", "/repos/alice/ghost").status_code == 404
    assert repo_dirs(b) == dirs_before

    # A reachable repository that does not exist: also nothing left behind.
    missing = api(b, "POST", "/repos/migrate", json={"clone_addr": a.url("alice", "no-such-repo"),
                                                     "repo_name": "ghost2"})
    assert missing.status_code == 422
    assert api(b, "GET", "/repos/alice/ghost2").status_code == 404
    assert repo_dirs(b) == dirs_before

    # URL policy: private addresses are refused unless the test allowance is on; credentials in URLs always.
    with_userinfo = api(b, "POST", "/repos/migrate", json={
        "clone_addr": a.url("alice", "upstream", "alice"), "repo_name": "ghost3"})
    assert with_userinfo.status_code == 422 and a.tokens["alice"] not in with_userinfo.text

    # A pull mirror with a wrong token: the sync fails, records why, and never the token.
    src = a.create_repo("alice", "guarded", private=True)
    assert src
    work = a.new_clone("alice", "guarded", "alice")
    a.commit(work, "x")
    a.git("push", "-q", a.url("alice", "guarded", "alice"), "main", cwd=work)
    ok = api(b, "POST", "/repos/migrate", json={"clone_addr": a.url("alice", "guarded"), "repo_name": "guarded",
                                                "auth_token": a.tokens["alice"], "mirror": True})
    assert ok.status_code == 201, ok.text
    guarded_id = b.repo_uuid("alice", "guarded")

    async def swap_token(session: Any) -> None:
        from app.settings import Settings
        from forge.mirror import MirrorService
        from forge.mirror_models import ForgeMirror
        from forge.runtime import runtime_for

        settings = Settings.from_env(b.server.env)
        row = (await session.execute(select(ForgeMirror).where(
            ForgeMirror.repo_id == uuid.UUID(guarded_id)))).scalar_one()
        from forge.mirror import _context, seal_token

        row.credential = seal_token(settings.secret_key, secret, _context(row.repo_id, row.direction,
                                                                           row.remote_url))
        assert MirrorService(session, runtime_for(settings).store, settings).token_of(row) == secret

    b.db(swap_token)
    _sync_now(b, "alice", "guarded", None)
    [mirror] = mirrors(b, guarded_id)
    assert mirror.last_error and secret not in mirror.last_error
    for server in (a, b):
        log = server.server.log_path.read_text(errors="replace")
        assert secret not in log and a.tokens["alice"] not in log and b.tokens["alice"] not in log


def test_cli_ls_remote_add_list_sync(pair: tuple[Forge, Forge]) -> None:
    import json

    a, b = pair
    a.create_repo("alice", "clisrc", private=True)
    work = a.new_clone("alice", "clisrc", "alice")
    head = a.commit(work, "cli")
    a.git("push", "-q", a.url("alice", "clisrc", "alice"), "main", cwd=work)
    b.create_repo("alice", "clidst")
    url = a.url("alice", "clisrc")
    token = a.tokens["alice"]

    denied = b.server.cli("forge", "mirror", "ls-remote", url, check=False)
    assert denied.returncode == 1 and "error:" in denied.stderr
    b.server.env["ROSE_ASH_MIRROR_TOKEN"] = token
    try:
        listed = b.server.cli("forge", "mirror", "ls-remote", url)
        added = b.server.cli("forge", "mirror", "add", "--repo", "alice/clidst", "--direction", "pull",
                             "--url", url, "--interval", "600")
    finally:
        del b.server.env["ROSE_ASH_MIRROR_TOKEN"]
    assert f"{head}\trefs/heads/main" in listed.stdout and "ref: refs/heads/main\tHEAD" in listed.stdout
    mirror_id = added.stdout.strip().splitlines()[-1]
    shown = json.loads(b.server.cli("forge", "mirror", "list", "--repo", "alice/clidst").stdout)
    assert [(m["id"], m["direction"], m["has_credential"]) for m in shown] == [(mirror_id, "pull", True)]
    assert "queued 1 sync(s)" in b.server.cli("forge", "mirror", "sync", "--repo", "alice/clidst").stdout
    run_jobs(b)
    assert refs(b, "alice", "clidst")["refs/heads/main"] == head
    for result in (listed, added):
        assert token not in result.stdout and token not in result.stderr


def test_import_from_the_new_repository_form(pair: tuple[Forge, Forge]) -> None:
    import re

    from tests.forge.forge_fixtures import PASSWORD

    a, b = pair
    a.create_repo("alice", "webimport", default_branch="stable")
    work = a.new_clone("alice", "webimport", "alice")
    a.git("checkout", "-q", "-b", "stable", cwd=work)
    head = a.commit(work, "imported")
    a.git("push", "-q", a.url("alice", "webimport", "alice"), "stable", cwd=work)
    dirs_before = repo_dirs(b)

    field = re.compile(r'name="_csrf_token" value="([^"]+)"')
    with httpx.Client(base_url=b.base, timeout=60) as browser:
        token = field.search(browser.get("/account/login").text)
        assert token
        signed_in = browser.post("/account/login", data={"login": "alice", "password": PASSWORD,
                                                         "_csrf_token": token.group(1)})
        assert signed_in.status_code == 303

        def submit(**form: str) -> httpx.Response:
            csrf = field.search(browser.get("/forge/new").text)
            assert csrf
            return browser.post("/forge/new", data={"visibility": "public", "_csrf_token": csrf.group(1), **form})

        dead = submit(name="deadimport", import_url=f"http://127.0.0.1:{free_port()}/forge/x/y.git", mirror="on")
        assert dead.status_code == 422 and 'class="error"' in dead.text
        assert repo_dirs(b) == dirs_before and api(b, "GET", "/repos/alice/deadimport").status_code == 404

        done = submit(name="imported", import_url=a.url("alice", "webimport"), mirror="on")
        assert done.status_code == 303 and done.headers["location"] == "/forge/alice/imported"
    got = api(b, "GET", "/repos/alice/imported").json()
    assert got["default_branch"] == "stable"
    assert refs(b, "alice", "imported")["refs/heads/stable"] == head
    [mirror] = mirrors(b, b.repo_uuid("alice", "imported"))
    assert mirror.direction == "pull" and mirror.remote_url == a.url("alice", "webimport")


# -- mirrors that never lose a commit -----------------------------------------------------------------------
def _add_mirror(forge: Forge, owner: str, name: str, direction: str, url: str, token: str | None, *,
                follow_force: bool = False) -> str:
    from app.settings import Settings
    from forge.mirror import MirrorService
    from forge.runtime import runtime_for

    settings = Settings.from_env(forge.server.env)

    async def work(session: Any) -> str:
        from forge.services import RepoService

        store = runtime_for(settings).store
        repo = await RepoService(session, store).get_by_owner_and_name(owner, name)
        assert repo is not None
        mirror = await MirrorService(session, store, settings).add(
            repo, direction=direction, remote_url=url, token=token, interval_seconds=3600, follow_force=follow_force)
        return str(mirror.id)

    return forge.db(work)


def _mirror_row(forge: Forge, mirror_id: str) -> Any:
    from forge.mirror_models import ForgeMirror

    async def work(session: Any) -> Any:
        return await session.get(ForgeMirror, uuid.UUID(mirror_id))

    return forge.db(work)


def test_direct_push_to_a_pull_mirror_is_refused(pair: tuple[Forge, Forge]) -> None:
    a, b = pair
    a.create_repo("alice", "ro-up")
    up = a.new_clone("alice", "ro-up", "alice")
    first = a.commit(up, "upstream one")
    a.git("push", "-q", a.url("alice", "ro-up", "alice"), "main", cwd=up)
    made = api(b, "POST", "/repos/migrate", json={"clone_addr": a.url("alice", "ro-up"), "repo_name": "ro-copy",
                                                  "mirror": True})
    assert made.status_code == 201, made.text
    copy_id = b.repo_uuid("alice", "ro-copy")

    # The owner pushes straight to the mirror: git shows the reason, no ref moves, no object stays reachable.
    work = b.new_clone("alice", "ro-copy", "alice")
    mine = b.commit(work, "pushed to the mirror")
    b.git("checkout", "-q", "-b", "extra", cwd=work)
    refused = b.git("push", b.url("alice", "ro-copy", "alice"), "main", "extra", cwd=work, check=False)
    assert refused.returncode != 0
    assert "pull mirror" in refused.stderr and "read-only" in refused.stderr, refused.stderr
    assert "[remote rejected]" in refused.stderr
    assert heads_and_tags(refs(b, "alice", "ro-copy")) == {"refs/heads/main": first}
    bare = b.bare_path(copy_id)
    assert b.git("--git-dir", str(bare), "cat-file", "-e", mine, check=False).returncode != 0  # quarantine dropped
    # The same through the API's ref changes (the contents API writes a commit and moves a branch).
    import base64

    wrote = api(b, "POST", "/repos/alice/ro-copy/contents/new.txt",
                json={"content": base64.b64encode(b"x").decode(), "message": "api write", "branch": "main"})
    assert wrote.status_code >= 400, wrote.text
    assert heads_and_tags(refs(b, "alice", "ro-copy")) == {"refs/heads/main": first}

    # The mirror's own sync still works.
    second = a.commit(up, "upstream two")
    a.git("push", "-q", a.url("alice", "ro-up", "alice"), "main", cwd=up)
    _sync_now(b, "alice", "ro-copy", None)
    assert heads_and_tags(refs(b, "alice", "ro-copy")) == {"refs/heads/main": second}
    [mirror] = mirrors(b, copy_id)
    assert mirror.last_error == ""


def test_diverged_histories_never_lose_a_commit(pair: tuple[Forge, Forge]) -> None:
    """The mirror holds commits the upstream never had; the upstream also rewrote a tag."""
    a, b = pair
    upstream = a.create_repo("alice", "div-up")
    up = a.new_clone("alice", "div-up", "alice")
    a.commit(up, "upstream base")
    a.git("tag", "v1", cwd=up)
    a.git("push", "-q", a.url("alice", "div-up", "alice"), "main", "v1", cwd=up)

    # B's repository had its own life before it became a mirror: other commits on main, its own v1 and a side branch.
    b.create_repo("alice", "div-copy")
    copy_id = b.repo_uuid("alice", "div-copy")
    local = b.new_clone("alice", "div-copy", "alice")
    b.commit(local, "local base")
    b.git("tag", "v1", cwd=local)
    b.git("checkout", "-q", "-b", "side", cwd=local)
    b.commit(local, "local side")
    b.git("push", "-q", b.url("alice", "div-copy", "alice"), "main", "side", "v1", cwd=local)
    before = refs(b, "alice", "div-copy")

    mirror_id = _add_mirror(b, "alice", "div-copy", "pull", a.url("alice", "div-up"), None)
    run_jobs(b)
    assert refs(b, "alice", "div-copy") == before  # all or none: nothing applied
    row = _mirror_row(b, mirror_id)
    assert "refs/heads/main" in row.last_error and "refs/tags/v1" in row.last_error
    assert "nothing was applied" in row.last_error

    _set_follow_force(b, copy_id)
    _sync_now(b, "alice", "div-copy", mirror_id)
    after = heads_and_tags(refs(b, "alice", "div-copy"))
    assert after == heads_and_tags(refs(a, "alice", "div-up"))
    row = _mirror_row(b, mirror_id)
    assert row.last_error == ""
    kept = {ln.split(" ")[0].split("/", 3)[3]: ln.split(" ")[1] for ln in row.last_backups.splitlines()}
    assert kept == {"heads/main": before["refs/heads/main"], "heads/side": before["refs/heads/side"],
                    "tags/v1": before["refs/tags/v1"]}
    bare = b.bare_path(copy_id)
    _no_commit_lost(b, bare, before)
    b.git("--git-dir", str(bare), "fsck", "--no-dangling")
    # The kept tips can be fetched back by anyone who may read the repository.
    back = b.tmp("backup-fetch")
    b.git("init", "-q", "--bare", str(back))
    b.git("--git-dir", str(back), "fetch", "-q", b.url("alice", "div-copy"), "+refs/mirror-backup/*:refs/kept/*")
    assert b.git("--git-dir", str(back), "rev-parse", "refs/kept/" + row.last_backups.split()[0].split("/", 2)[2]
                 ).stdout.strip() == row.last_backups.split()[1]

    # The next upstream force-push is followed again, under a new time stamp; the earlier backup stays.
    _allow_force_push(a, upstream["uuid"])
    a.git("commit", "-q", "--amend", "-m", "upstream base, amended", cwd=up)
    a.git("push", "-q", "--force", a.url("alice", "div-up", "alice"), "main", cwd=up)
    first_backups = row.last_backups
    _sync_now(b, "alice", "div-copy", mirror_id)
    row = _mirror_row(b, mirror_id)
    assert row.last_error == "" and row.last_backups != first_backups
    stamps = {ln.split("/")[2] for ln in b.git("--git-dir", str(bare), "for-each-ref", "--format=%(refname)",
                                               "refs/mirror-backup").stdout.split()}
    assert len(stamps) == 2
    _no_commit_lost(b, bare, {**before, **{f"x/{n}": o for n, o in after.items()}})


def test_push_mirror_keeps_work_done_on_the_target(pair: tuple[Forge, Forge]) -> None:
    a, b = pair
    src = a.create_repo("alice", "pm-src")
    b.create_repo("alice", "pm-dst")
    dst_id = b.repo_uuid("alice", "pm-dst")
    mirror_id = _add_mirror(a, "alice", "pm-src", "push", b.url("alice", "pm-dst"), b.tokens["alice"])
    work = a.new_clone("alice", "pm-src", "alice")
    base = a.commit(work, "base")
    a.git("branch", "keep", cwd=work)
    a.git("push", "-q", a.url("alice", "pm-src", "alice"), "main", "keep", cwd=work)
    run_jobs(a)
    assert heads_and_tags(refs(b, "alice", "pm-dst")) == {"refs/heads/main": base, "refs/heads/keep": base}
    row = _mirror_row(a, mirror_id)
    assert json_loads(row.pushed_refs) == {"refs/heads/main": base, "refs/heads/keep": base}

    # Someone works on the target: a commit on main and a branch of their own.
    there = b.new_clone("alice", "pm-dst", "alice")
    theirs = b.commit(there, "work done on the target")
    b.git("push", "-q", b.url("alice", "pm-dst", "alice"), "main", "main:refs/heads/target-only", cwd=there)

    # The source moves on: main diverges from the target's, a new branch appears, "keep" moves, and a
    # branch the source never pushed must not be deleted.
    ours = a.commit(work, "work done on the source")
    a.git("branch", "-f", "keep", cwd=work)
    a.git("branch", "fresh", cwd=work)
    a.git("push", "-q", a.url("alice", "pm-src", "alice"), "main", "keep", "fresh", cwd=work)
    run_jobs(a)
    now = heads_and_tags(refs(b, "alice", "pm-dst"))
    assert now["refs/heads/main"] == theirs  # the target's work was not overwritten
    assert now["refs/heads/target-only"] == theirs
    assert now["refs/heads/keep"] == ours and now["refs/heads/fresh"] == ours  # the rest went through
    row = _mirror_row(a, mirror_id)
    assert "refs/heads/main" in row.last_error and "stale info" in row.last_error
    assert json_loads(row.pushed_refs) == {"refs/heads/main": base, "refs/heads/keep": ours,
                                           "refs/heads/fresh": ours}
    assert b.tokens["alice"] not in row.last_error

    # A rewrite on the source (allowed there) meets the target's own policy: its reason is kept verbatim.
    _allow_force_push(a, src["uuid"])
    a.git("reset", "-q", "--hard", base, cwd=work)
    rewritten = a.commit(work, "rewritten keep")
    a.git("push", "-q", "--force", a.url("alice", "pm-src", "alice"), "HEAD:keep", cwd=work)
    run_jobs(a)
    assert heads_and_tags(refs(b, "alice", "pm-dst"))["refs/heads/keep"] == ours
    row = _mirror_row(a, mirror_id)
    assert "refs/heads/keep" in row.last_error
    assert "non-fast-forward updates are refused on branches" in row.last_error, row.last_error
    assert rewritten not in json_loads(row.pushed_refs).values()

    # Deleting a branch we pushed travels (leased on what we pushed); the target's own branch stays.
    a.git("push", "-q", a.url("alice", "pm-src", "alice"), ":fresh", cwd=work)
    run_jobs(a)
    final = heads_and_tags(refs(b, "alice", "pm-dst"))
    assert "refs/heads/fresh" not in final and final["refs/heads/target-only"] == theirs
    assert final["refs/heads/main"] == theirs
    b.git("--git-dir", str(b.bare_path(dst_id)), "fsck", "--no-dangling")


def _allow_force_push(forge: Forge, repo_id: str) -> None:
    from forge.models import ForgeRepo

    async def work(session: Any) -> None:
        row = await session.get(ForgeRepo, uuid.UUID(repo_id))
        row.allow_force_push = True

    forge.db(work)


def json_loads(text: str) -> Any:
    import json

    return json.loads(text or "{}")


def test_migrate_with_username_and_password(pair: tuple[Forge, Forge]) -> None:
    a, b = pair
    a.create_repo("alice", "basic-src", private=True)
    work = a.new_clone("alice", "basic-src", "alice")
    head = a.commit(work, "basic")
    a.git("push", "-q", a.url("alice", "basic-src", "alice"), "main", cwd=work)
    source = a.url("alice", "basic-src")
    dirs_before = repo_dirs(b)

    both = api(b, "POST", "/repos/migrate", json={"clone_addr": source, "repo_name": "basic-x",
                                                  "auth_token": "t", "auth_username": "alice", "auth_password": "p"})
    assert both.status_code == 422 and "not both" in both.text
    nopass = api(b, "POST", "/repos/migrate", json={"clone_addr": source, "repo_name": "basic-x",
                                                    "auth_username": "alice"})
    assert nopass.status_code == 422 and "auth_password" in nopass.text
    wrong = api(b, "POST", "/repos/migrate", json={"clone_addr": source, "repo_name": "basic-x",
                                                   "auth_username": "alice", "auth_password": "rat_wrong-password"})
    assert wrong.status_code == 422 and "rat_wrong-password" not in wrong.text
    assert repo_dirs(b) == dirs_before and api(b, "GET", "/repos/alice/basic-x").status_code == 404

    made = api(b, "POST", "/repos/migrate", json={"clone_addr": source, "repo_name": "basic-copy", "mirror": True,
                                                  "auth_username": "alice", "auth_password": a.tokens["alice"]})
    assert made.status_code == 201, made.text
    assert refs(b, "alice", "basic-copy")["refs/heads/main"] == head
    # The stored credential is HTTP Basic and keeps working for the sync.
    newer = a.commit(work, "basic two")
    a.git("push", "-q", a.url("alice", "basic-src", "alice"), "main", cwd=work)
    _sync_now(b, "alice", "basic-copy", None)
    assert refs(b, "alice", "basic-copy")["refs/heads/main"] == newer
    [mirror] = mirrors(b, b.repo_uuid("alice", "basic-copy"))
    assert mirror.last_error == "" and a.tokens["alice"].encode() not in (mirror.credential or b"")


def test_porcelain_keeps_each_refusals_own_reason() -> None:
    from forge.remote import parse_porcelain, summarize_push

    out = ("To http://peer/x.git\n"
           "!\trefs/heads/keep:refs/heads/keep\t[remote rejected] (pre-receive hook declined)\n"
           "!\trefs/heads/main:refs/heads/main\t[rejected] (stale info)\n"
           "*\trefs/heads/fresh:refs/heads/fresh\t[new branch]\nDone\n")
    err = ("remote: error: refs/heads/keep: non-fast-forward updates are refused on branches\n"
           "remote: error: refs/heads/keep2: not about keep\nremote: error: push refused by repository policy\n")
    keep, main, fresh = parse_porcelain(out, err)
    assert keep.detail == "error: refs/heads/keep: non-fast-forward updates are refused on branches"
    assert not main.ok and main.detail == "" and "stale info" in main.reason and fresh.ok
    summary = summarize_push([keep, main, fresh])
    assert summary.startswith("refs/heads/keep: [remote rejected] (pre-receive hook declined): error: refs/heads/keep")
    assert "refs/heads/fresh" not in summary
    # A single refused ref takes whatever the remote said.
    [only] = parse_porcelain("!\trefs/heads/x:refs/heads/x\t[remote rejected] (hook declined)\n",
                             "remote: mirror repository is read-only\n")
    assert only.detail == "mirror repository is read-only"


def test_basic_credentials_travel_in_the_environment_only() -> None:
    import base64

    from forge.remote import MirrorError, basic_credential, build_remote, push_command

    remote = asyncio.run(build_remote("http://127.0.0.1:9/x.git", basic_credential("alice", "s3cret-pass"),
                                      allow_private=True))
    header = base64.b64encode(b"alice:s3cret-pass").decode()
    assert ("http.extraHeader", f"Authorization: Basic {header}") in remote.config
    assert not any("s3cret" in arg or header in arg for arg in push_command(remote, [("refs/heads/main", "1" * 40,
                                                                                        None)]))
    assert remote.scrub(f"failed with s3cret-pass and {header}") == "failed with [redacted] and [redacted]"
    for bad in (basic_credential("al:ice", "pw"), basic_credential("alice", "pw\nX-Evil: 1")):
        with pytest.raises(MirrorError):
            asyncio.run(build_remote("http://127.0.0.1:9/x.git", bad, allow_private=True))
