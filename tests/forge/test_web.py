"""Forge web pages in process, on SQLite and PostgreSQL: index, owner and repository pages with the
401/404/403 cases, the new-repository form (PRG, 422/409, nothing created on bad input), settings."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings
from forge.models import ForgeBranchProtection, ForgeCollaborator, ForgeRepo
from tests.helpers.web import login, post_form, signup

pytestmark = pytest.mark.anyio


async def repo_count(db_session: AsyncSession) -> int:
    return int((await db_session.execute(select(func.count()).select_from(ForgeRepo))).scalar_one())


async def new_repo(client: Any, name: str, *, private: bool = False, **extra: str) -> Any:
    return await post_form(client, "/forge/new", {
        "name": name, "description": extra.get("description", ""), "default_branch": extra.get("branch", "main"),
        "visibility": "private" if private else "public",
    }, page="/forge/new")


async def as_user(client: Any, username: str) -> None:
    client.cookies.clear()
    await login(client, username)


def git(*args: str, cwd: Path | None = None) -> str:
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "T",
           "GIT_COMMITTER_EMAIL": "t@example.org", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


async def seed_commits(settings: Settings, db_session: AsyncSession, owner: str, name: str, tmp: Path,
                       files: dict[str, str]) -> str:
    """Commit ``files`` and push them straight into the bare repository, then sync the ref mirror."""
    from forge.runtime import runtime_for
    from forge.services import RepoService

    service = RepoService(db_session, runtime_for(settings).store)
    repo = await service.get_by_owner_and_name(owner, name)
    assert repo is not None
    work = tmp / f"seed-{name}"
    git("init", "-q", "-b", repo.default_branch, str(work))
    for fname, content in files.items():
        (work / fname).write_text(content)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "First commit\n\nWith a body.", cwd=work)
    git("tag", "v1", cwd=work)
    git("push", "-q", str(service.store.locate(repo.id)), f"{repo.default_branch}", "v1", cwd=work)
    await service.sync_refs(repo.id)
    await db_session.commit()
    return git("rev-parse", "HEAD", cwd=work).strip()


async def test_new_repository_form_prg_and_bad_input(client: Any, db_session: AsyncSession) -> None:
    anonymous = await client.get("/forge/new")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/account/login")
    await signup(client, "alice")
    form = await client.get("/forge/new")
    assert form.status_code == 200 and "_csrf_token" in form.text
    assert "no-store" in form.headers["cache-control"]

    created = await new_repo(client, "hello", description="A greeting")
    assert created.status_code == 303 and created.headers["location"] == "/forge/alice/hello"
    assert await repo_count(db_session) == 1

    for bad in ("", "no spaces", "../etc", "x.git", "-dash"):
        response = await new_repo(client, bad)
        assert response.status_code == 422, bad
        assert 'class="error"' in response.text
    assert (await new_repo(client, "hello", branch="bad..branch")).status_code == 422
    duplicate = await new_repo(client, "HELLO")
    assert duplicate.status_code == 409 and "already have" in duplicate.text
    assert await repo_count(db_session) == 1
    missing_csrf = await client.post("/forge/new", data={"name": "nocsrf"})
    assert missing_csrf.status_code == 403
    assert await repo_count(db_session) == 1


async def test_public_and_private_repository_pages(client: Any, settings: Settings, db_session: AsyncSession,
                                                   tmp_path: Path) -> None:
    await signup(client, "bob")
    await signup(client, "alice")  # signed in as alice from here
    assert (await new_repo(client, "open", description="Open things")).status_code == 303
    assert (await new_repo(client, "secret", private=True)).status_code == 303
    head = await seed_commits(settings, db_session, "alice", "open", tmp_path, {
        "README.md": "# Hello\n\n<script>alert(1)</script>\n\n[link](javascript:alert(1)) and **bold**\n",
        "code.py": "print('hi')\n",
    })

    page = await client.get("/forge/alice/open")
    assert page.status_code == 200
    assert "http://127.0.0.1:8000/forge/alice/open.git" in page.text
    assert "Open things" in page.text and "First commit" in page.text and head[:10] in page.text
    assert "<h1>Hello</h1>" in page.text and "<strong>bold</strong>" in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;alert" in page.text
    assert "href=\"javascript:" not in page.text
    assert "v1" in page.text
    assert page.headers["cache-control"].startswith("public")
    assert "set-cookie" not in page.headers
    assert "forge-repo-" in page.headers["surrogate-key"]
    etag = page.headers["etag"]
    again = await client.get("/forge/alice/open", headers={"If-None-Match": etag})
    assert again.status_code == 304

    # The same page for anonymous visitors (public pages never depend on who asks).
    client.cookies.clear()
    anon = await client.get("/forge/alice/open")
    assert anon.status_code == 200 and anon.headers["etag"] == etag
    assert (await client.get("/forge/alice/open.git")).status_code == 301
    # The pages never shadow git smart HTTP on the same prefix.
    for path in ("/forge/alice/open.git/info/refs", "/forge/alice/open/info/refs"):
        adv = await client.get(path, params={"service": "git-upload-pack"})
        assert adv.status_code == 200 and adv.headers["content-type"] == "application/x-git-upload-pack-advertisement"
        assert head in adv.text
    assert (await client.get("/forge/alice/nothing")).status_code == 404

    # Private: anonymous and non-member -> 404 as if absent (tests/forge/test_private_is_absent.py), member -> 200.
    assert (await client.get("/forge/alice/secret")).status_code == 404
    assert (await client.get("/forge/alice/secret", headers={"Accept": "application/json"})).status_code == 404
    await as_user(client, "bob")
    assert (await client.get("/forge/alice/secret")).status_code == 404
    await as_user(client, "alice")
    mine = await client.get("/forge/alice/secret")
    assert mine.status_code == 200 and "private" in mine.headers["cache-control"]
    assert "This repository is empty" in mine.text

    # Index and owner pages list public repositories only; the personal hole lists yours.
    client.cookies.clear()
    index = await client.get("/forge/")
    assert index.status_code == 200 and "alice/open" in index.text and "secret" not in index.text
    assert index.headers["cache-control"].startswith("public") and "set-cookie" not in index.headers
    owner = await client.get("/forge/alice")
    assert owner.status_code == 200 and "open" in owner.text and "secret" not in owner.text
    assert (await client.get("/forge/nobody")).status_code == 404
    await as_user(client, "alice")
    hole = await client.get("/f/me/forge-repos")
    assert "alice/secret" in hole.text and "alice/open" in hole.text
    menu = await client.get("/f/me/forge-repo-menu", params={"repo": "alice/open"})
    assert "/forge/alice/open/settings" in menu.text
    await as_user(client, "bob")
    menu = await client.get("/f/me/forge-repo-menu", params={"repo": "alice/open"})
    assert "/settings" not in menu.text


async def test_settings_access_and_changes(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "bob")
    await signup(client, "carol")
    await signup(client, "alice")
    assert (await new_repo(client, "proj")).status_code == 303
    assert (await new_repo(client, "hidden", private=True)).status_code == 303
    page = "/forge/alice/proj/settings"
    assert (await client.get(page)).status_code == 200

    saved = await post_form(client, page, {"description": "New words", "visibility": "private",
                                           "default_branch": "trunk", "allow_force_push": "on"}, page=page)
    assert saved.status_code == 303 and saved.headers["location"] == page
    repo = (await db_session.execute(select(ForgeRepo).where(ForgeRepo.name == "proj"))).scalar_one()
    assert (repo.description, repo.is_private, repo.default_branch, repo.allow_force_push) == (
        "New words", True, "trunk", True)
    bad = await post_form(client, page, {"description": "x", "visibility": "public", "default_branch": "a..b"},
                          page=page)
    assert bad.status_code == 422
    bad = await post_form(client, page, {"description": "x", "visibility": "sideways"}, page=page)
    assert bad.status_code == 422
    await db_session.refresh(repo)
    assert repo.description == "New words" and repo.default_branch == "trunk"

    added = await post_form(client, f"{page}/collaborators", {"username": "bob", "permission": "read"}, page=page)
    assert added.status_code == 303
    assert (await post_form(client, f"{page}/collaborators", {"username": "ghost", "permission": "read"},
                            page=page)).status_code == 422
    assert (await post_form(client, f"{page}/collaborators", {"username": "carol", "permission": "god"},
                            page=page)).status_code == 422
    assert (await post_form(client, f"{page}/collaborators", {"username": "alice", "permission": "read"},
                            page=page)).status_code == 422
    rows = (await db_session.execute(select(ForgeCollaborator.permission))).scalars().all()
    assert rows == ["read"]

    protected = await post_form(client, f"{page}/protection", {"pattern": "release/*"}, page=page)
    assert protected.status_code == 303
    assert (await post_form(client, f"{page}/protection", {"pattern": "bad..x"}, page=page)).status_code == 422
    patterns = (await db_session.execute(select(ForgeBranchProtection.pattern))).scalars().all()
    assert patterns == ["release/*"]
    shown = await client.get(page)
    assert "release/*" in shown.text and "bob" in shown.text

    # bob reads the (now private) repository but may not open its settings: 403; carol is a stranger: 404.
    await as_user(client, "bob")
    assert (await client.get("/forge/alice/proj")).status_code == 200
    assert (await client.get(page)).status_code == 403
    assert (await post_form(client, f"{page}/delete", {"confirm": "proj"}, page="/forge/new")).status_code == 403
    await as_user(client, "carol")
    assert (await client.get(page)).status_code == 404
    assert (await client.get("/forge/alice/hidden/settings")).status_code == 404
    client.cookies.clear()
    anon = await client.get(page)
    assert anon.status_code == 303 and anon.headers["location"].startswith("/account/login")

    await as_user(client, "alice")
    removed = await post_form(client, f"{page}/collaborators/remove", {"username": "bob"}, page=page)
    assert removed.status_code == 303
    assert (await post_form(client, f"{page}/collaborators/remove", {"username": "bob"},
                            page=page)).status_code == 422
    unprotected = await post_form(client, f"{page}/protection/remove", {"pattern": "release/*"}, page=page)
    assert unprotected.status_code == 303
    # PostgreSQL refuses NUL in text: removing a rule named with one answered 500. The kernel's
    # form decoder now refuses it before the handler (app/forms.py), with a reason.
    nul = await post_form(client, f"{page}/protection/remove", {"pattern": "main\x00"}, page=page)
    assert nul.status_code == 400 and "NUL" in nul.text

    wrong = await post_form(client, f"{page}/delete", {"confirm": "nope"}, page=page)
    assert wrong.status_code == 422 and await repo_count(db_session) == 2
    gone = await post_form(client, f"{page}/delete", {"confirm": "proj"}, page=page)
    assert gone.status_code == 303 and gone.headers["location"] == "/account"
    assert await repo_count(db_session) == 1
    assert (await client.get("/forge/alice/proj")).status_code == 404


async def test_mirror_form_validates_urls(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "alice")
    assert (await new_repo(client, "m")).status_code == 303
    page = "/forge/alice/m/settings"
    for url in ("ftp://example.org/x.git", "file:///etc", "https://user:pw@example.org/x.git",
                "https://127.0.0.1/x.git", "https://localhost/x.git", "http://example.org/x.git"):
        response = await post_form(client, f"{page}/mirrors", {"direction": "pull", "remote_url": url,
                                                                "interval": "3600"}, page=page)
        assert response.status_code == 422, url
        assert 'name="remote_url"' in response.text and "Choose pull or push" not in response.text, url
    response = await post_form(client, f"{page}/mirrors", {"direction": "sideways", "remote_url": "x",
                                                            "interval": "5"}, page=page)
    assert response.status_code == 422
    assert "Choose pull or push." in response.text and "seconds." in response.text  # each field says why
    from forge.mirror_models import ForgeMirror

    db_session.expire_all()
    assert (await db_session.execute(select(func.count()).select_from(ForgeMirror))).scalar_one() == 0


class TestMirrorForm:
    """With the test allowance for private addresses, a valid mirror is saved and its first sync queued."""

    @pytest.fixture
    def settings(self, tmp_path: Path, database_url: str) -> Settings:
        import uuid

        from tests.conftest import REDIS_URL

        return Settings.from_env(
            {}, data_dir=tmp_path / "data", database_url=database_url, redis_url=REDIS_URL or None,
            redis_namespace=f"rose-ash-test-{uuid.uuid4().hex[:8]}",
            secret_key="test-secret-key-not-for-production-0123456789", worker_in_process=False,
            auth_rate_limit=1000, federation_allow_private_addresses=True,
        )

    async def test_add_sync_and_remove_a_mirror(self, client: Any, db_session: AsyncSession) -> None:
        from app.jobs import Job
        from forge.mirror_models import ForgeMirror

        await signup(client, "alice")
        assert (await new_repo(client, "m")).status_code == 303
        page = "/forge/alice/m/settings"
        token = "rat_secret-token-for-the-remote-000000"
        saved = await post_form(client, f"{page}/mirrors", {
            "direction": "push", "remote_url": "http://127.0.0.1:9/forge/alice/m.git", "token": token,
            "interval": "600"}, page=page)
        assert saved.status_code == 303 and saved.headers["location"] == page
        mirror = (await db_session.execute(select(ForgeMirror))).scalar_one()
        assert (mirror.direction, mirror.interval_seconds) == ("push", 600)
        assert mirror.credential and token.encode() not in mirror.credential
        shown = await client.get(page)
        assert "http://127.0.0.1:9/forge/alice/m.git" in shown.text and token not in shown.text
        duplicate = await post_form(client, f"{page}/mirrors", {
            "direction": "push", "remote_url": "http://127.0.0.1:9/forge/alice/m.git", "interval": "600"}, page=page)
        assert duplicate.status_code == 409
        too_often = await post_form(client, f"{page}/mirrors", {
            "direction": "pull", "remote_url": "http://127.0.0.1:9/x.git", "interval": "5"}, page=page)
        assert too_often.status_code == 422

        assert (await post_form(client, f"{page}/mirrors/sync", {"mirror_id": str(mirror.id)},
                                page=page)).status_code == 303
        jobs = (await db_session.execute(select(Job).where(Job.kind == "forge.mirror.sync"))).scalars().all()
        # "Sync now" moves the mirror's one recurring job to now, under a new generation.
        assert [(j.payload["generation"], j.payload["chain"], j.repeat_seconds) for j in jobs] == [(2, True, 600)]
        assert all(token not in str(j.payload) for j in jobs)

        assert (await post_form(client, f"{page}/mirrors/remove", {"mirror_id": str(mirror.id)},
                                page=page)).status_code == 303
        assert (await db_session.execute(select(ForgeMirror))).first() is None
        assert (await db_session.execute(select(Job).where(Job.kind == "forge.mirror.sync"))).first() is None
        assert (await post_form(client, f"{page}/mirrors/remove", {"mirror_id": str(mirror.id)},
                                page=page)).status_code == 422

    async def test_follow_force_toggle_and_the_kept_tips(self, client: Any, db_session: AsyncSession) -> None:
        from forge.mirror_models import ForgeMirror

        await signup(client, "alice")
        assert (await new_repo(client, "ff")).status_code == 303
        page = "/forge/alice/ff/settings"
        assert (await post_form(client, f"{page}/mirrors", {
            "direction": "pull", "remote_url": "http://127.0.0.1:9/up.git", "interval": "600", "follow_force": "on"},
            page=page)).status_code == 303
        mirror = (await db_session.execute(select(ForgeMirror))).scalar_one()
        assert mirror.follow_force is True
        shown = await client.get(page)
        assert "Stop following force-pushes" in shown.text
        assert (await post_form(client, f"{page}/mirrors/force", {"mirror_id": str(mirror.id)},
                                page=page)).status_code == 303
        await db_session.refresh(mirror)
        assert mirror.follow_force is False
        assert (await post_form(client, f"{page}/mirrors/force", {"mirror_id": str(mirror.id), "follow_force": "on"},
                                page=page)).status_code == 303
        await db_session.refresh(mirror)
        assert mirror.follow_force is True
        bad = await post_form(client, f"{page}/mirrors/force", {"mirror_id": "not-a-mirror", "follow_force": "on"},
                              page=page)
        assert bad.status_code == 422 and "No such pull mirror." in bad.text
        # The tips a followed force-push replaced are listed for the administrators.
        mirror.last_backups = "refs/mirror-backup/20260101T000000Z/heads/main " + "a" * 40
        await db_session.commit()
        shown = await client.get(page)
        assert "refs/mirror-backup/20260101T000000Z/heads/main" in shown.text

    async def test_overlapping_syncs_of_one_mirror_never_run_together(self, client: Any, db_session: AsyncSession,
                                                                     settings: Settings) -> None:
        from datetime import UTC, datetime, timedelta

        from sqlalchemy.ext.asyncio import async_sessionmaker

        from app.jobs import Job, JobContext
        from forge.mirror import MirrorSyncPayload
        from forge.mirror_jobs import LEASE, _take_lease, sync_mirror
        from forge.mirror_models import ForgeMirror

        await signup(client, "alice")
        assert (await new_repo(client, "leased")).status_code == 303
        page = "/forge/alice/leased/settings"
        assert (await post_form(client, f"{page}/mirrors", {
            "direction": "pull", "remote_url": "http://127.0.0.1:9/x.git", "interval": "600"},
            page=page)).status_code == 303
        mirror = (await db_session.execute(select(ForgeMirror))).scalar_one()
        assert await _take_lease(db_session, mirror.id) is True
        assert await _take_lease(db_session, mirror.id) is False
        await db_session.commit()

        # A chain job that finds the lease taken retries later and changes nothing.
        maker = async_sessionmaker(db_session.bind, expire_on_commit=False)
        ctx = JobContext(sessionmaker=maker, settings=settings)
        before = len((await db_session.execute(select(Job))).scalars().all())
        await sync_mirror(ctx, MirrorSyncPayload(str(mirror.id), mirror.generation, chain=True))
        await db_session.refresh(mirror)
        assert mirror.last_sync_at is None
        assert len((await db_session.execute(select(Job))).scalars().all()) == before + 1

        # An expired lease (a crashed sync) is taken over; the run records its outcome and releases it.
        mirror.sync_started_at = datetime.now(UTC) - timedelta(seconds=LEASE + 1)
        await db_session.commit()
        await sync_mirror(ctx, MirrorSyncPayload(str(mirror.id), mirror.generation, chain=True))
        await db_session.refresh(mirror)
        assert mirror.last_sync_at is not None and mirror.sync_started_at is None
        assert mirror.last_error  # nothing listens on port 9


async def test_rename_and_archive_from_the_settings_page(client: Any, db_session: AsyncSession) -> None:
    await signup(client, "bob")
    await signup(client, "carol")
    await signup(client, "alice")
    assert (await new_repo(client, "proj")).status_code == 303
    assert (await new_repo(client, "other")).status_code == 303
    assert (await new_repo(client, "secret", private=True)).status_code == 303
    page = "/forge/alice/proj/settings"
    shown = await client.get(page)
    assert shown.status_code == 200
    assert f'action="{page}/rename"' in shown.text and f'action="{page}/archive"' in shown.text

    async def repo_row(name: str) -> ForgeRepo | None:
        db_session.expire_all()
        return (await db_session.execute(select(ForgeRepo).where(ForgeRepo.lower_name == name))).scalar_one_or_none()

    # The API's rules, and nothing written when they refuse.
    for bad, status in (("bad..name", 422), ("x" * 101, 422), ("other", 409), ("OTHER", 409), ("proj", 422)):
        refused = await post_form(client, f"{page}/rename", {"new_name": bad}, page=page)
        assert refused.status_code == status, bad
        assert 'id="e-new_name"' in refused.text, bad
    assert (row := await repo_row("proj")) is not None and row.name == "proj"
    no_csrf = await client.post(f"{page}/rename", data={"new_name": "stolen"})
    assert no_csrf.status_code == 403 and await repo_row("stolen") is None

    renamed = await post_form(client, f"{page}/rename", {"new_name": "Renamed"}, page=page)
    assert renamed.status_code == 303 and renamed.headers["location"] == "/forge/alice/Renamed/settings"
    after = await client.get(renamed.headers["location"])
    assert "Renamed alice/proj to alice/Renamed" in after.text
    assert await repo_row("proj") is None and (row := await repo_row("renamed")) is not None
    assert row.name == "Renamed"
    # The old addresses redirect (the API's rename records them the same way).
    old = await client.get("/forge/alice/proj")
    assert old.status_code == 301 and old.headers["location"] == "/forge/alice/Renamed"
    assert (await client.get(page)).status_code == 301
    page = "/forge/alice/Renamed/settings"

    archived = await post_form(client, f"{page}/archive", {"archived": "true"}, page=page)
    assert archived.status_code == 303 and archived.headers["location"] == page
    assert "Archived: the repository is read-only now" in (await client.get(page)).text
    assert (row := await repo_row("renamed")) is not None and row.is_archived
    repo_page = await client.get("/forge/alice/Renamed")
    assert repo_page.status_code == 200 and "This repository is archived" in repo_page.text
    assert "Unarchive repository" in (await client.get(page)).text
    assert (await post_form(client, f"{page}/archive", {"archived": "maybe"}, page=page)).status_code == 422
    assert (row := await repo_row("renamed")) is not None and row.is_archived
    again = await post_form(client, f"{page}/archive", {"archived": "true"}, page=page)
    assert again.status_code == 303 and "already archived" in (await client.get(page)).text
    unarchived = await post_form(client, f"{page}/archive", {"archived": "false"}, page=page)
    assert unarchived.status_code == 303
    assert "Unarchived" in (await client.get(page)).text
    assert (row := await repo_row("renamed")) is not None and not row.is_archived

    # Only those who may change settings: a reader of the public repository 403 (as the settings
    # page), a stranger to the private one 404, the anonymous 401; nothing changes.
    await as_user(client, "bob")
    assert (await post_form(client, f"{page}/rename", {"new_name": "bobs"}, page="/forge/new")).status_code == 403
    assert (await post_form(client, f"{page}/archive", {"archived": "true"}, page="/forge/new")).status_code == 403
    await as_user(client, "carol")
    secret = "/forge/alice/secret/settings"
    assert (await post_form(client, f"{secret}/rename", {"new_name": "x"}, page="/forge/new")).status_code == 404
    assert (await post_form(client, f"{secret}/archive", {"archived": "true"}, page="/forge/new")).status_code == 404
    client.cookies.clear()
    anon = await post_form(client, f"{page}/archive", {"archived": "true"})
    assert anon.status_code == 401  # a POST is not sent on to the sign-in page
    assert (row := await repo_row("renamed")) is not None and row.name == "Renamed" and not row.is_archived
    assert (row := await repo_row("secret")) is not None and not row.is_archived
