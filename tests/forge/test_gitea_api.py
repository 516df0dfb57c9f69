"""The Gitea-compatible repository API in process, on SQLite and PostgreSQL: field names, status
codes (401/403/404/409/422 as problem+json), scopes, collaborators, branches and tags."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import Settings

pytestmark = pytest.mark.anyio

REPO_FIELDS = {"id", "name", "full_name", "owner", "description", "private", "default_branch", "clone_url",
               "html_url", "empty", "created_at", "updated_at", "permissions"}


@pytest.fixture
async def tokens(db_session: AsyncSession) -> dict[str, str]:
    """alice, bob, carol with repo:write + api; alice-ro with repo:read; alice-api with api only."""
    from domains.account.schemas import SignupInput
    from domains.account.services import AccountService, TokenService

    out: dict[str, str] = {}
    for name in ("alice", "bob", "carol"):
        user = await AccountService(db_session).signup(SignupInput(
            username=name, email=f"{name}@example.org", password="correct horse battery staple"))
        _tok, out[name] = await TokenService(db_session).issue(user, "t", ["repo:write", "api"])
        if name == "alice":
            _tok, out["alice-ro"] = await TokenService(db_session).issue(user, "ro", ["repo:read"])
            _tok, out["alice-api"] = await TokenService(db_session).issue(user, "api", ["api"])
    await db_session.commit()
    return out


def auth(token: str, scheme: str = "token") -> dict[str, str]:
    if scheme == "basic":
        return {"Authorization": "Basic " + base64.b64encode(f"x:{token}".encode()).decode()}
    return {"Authorization": f"{scheme} {token}"}


async def create(client: Any, token: str, name: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/user/repos", json={"name": name, **extra}, headers=auth(token))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_repository_fields_and_visibility_codes(client: Any, tokens: dict[str, str]) -> None:
    await create(client, tokens["alice"], "pub", description="Public one")
    await create(client, tokens["alice"], "priv", private=True)

    for scheme in ("token", "Bearer", "basic"):
        response = await client.get("/api/v1/repos/alice/pub", headers=auth(tokens["alice"], scheme))
        assert response.status_code == 200, scheme
    data = response.json()
    assert set(data) >= REPO_FIELDS
    assert data["name"] == "pub" and data["full_name"] == "alice/pub" and data["private"] is False
    assert data["owner"]["login"] == "alice" and data["owner"]["id"]
    assert data["clone_url"] == "http://127.0.0.1:8000/forge/alice/pub.git"
    assert data["html_url"] == "http://127.0.0.1:8000/forge/alice/pub"
    assert data["empty"] is True and data["default_branch"] == "main" and data["description"] == "Public one"
    assert data["permissions"] == {"admin": True, "push": True, "pull": True}

    anon = await client.get("/api/v1/repos/alice/pub")
    assert anon.status_code == 200
    assert anon.json()["permissions"] == {"admin": False, "push": False, "pull": True}
    bob_view = await client.get("/api/v1/repos/alice/pub", headers=auth(tokens["bob"]))
    assert bob_view.json()["permissions"] == {"admin": False, "push": False, "pull": True}

    # Private and absent look the same to anyone who may not see it (tests/forge/test_private_is_absent.py).
    assert_problem(await client.get("/api/v1/repos/alice/priv"), 404)
    assert_problem(await client.get("/api/v1/repos/alice/priv", headers=auth(tokens["bob"])), 404)
    assert_problem(await client.get("/api/v1/repos/alice/missing", headers=auth(tokens["alice"])), 404)
    assert_problem(await client.get("/api/v1/repos/alice/priv", headers=auth("rat_wrong")), 401)
    # The route needs repo:read (app/access.py): a token without it is refused before any lookup,
    # so private and absent still answer alike.
    assert_problem(await client.get("/api/v1/repos/alice/priv", headers=auth(tokens["alice-api"])), 403)
    assert_problem(await client.get("/api/v1/repos/alice/missing", headers=auth(tokens["alice-api"])), 403)
    assert (await client.get("/api/v1/repos/alice/priv", headers=auth(tokens["alice-ro"]))).status_code == 200
    # The session cookie is never honoured under /api/.
    client.cookies.set("rose_ash_session", "x")
    assert_problem(await client.get("/api/v1/repos/alice/priv"), 404)
    client.cookies.clear()

    mine = await client.get("/api/v1/user/repos", headers=auth(tokens["alice-api"]))
    assert mine.status_code == 200 and sorted(r["name"] for r in mine.json()) == ["priv", "pub"]
    assert (await client.get("/api/v1/user/repos", headers=auth(tokens["bob"]))).json() == []
    assert_problem(await client.get("/api/v1/user/repos"), 401)


async def test_edit_and_delete(client: Any, tokens: dict[str, str]) -> None:
    await create(client, tokens["alice"], "proj")
    url = "/api/v1/repos/alice/proj"
    edited = await client.patch(url, json={"description": "Now described", "private": True,
                                           "default_branch": "trunk"}, headers=auth(tokens["alice"]))
    assert edited.status_code == 200, edited.text
    assert (edited.json()["description"], edited.json()["private"], edited.json()["default_branch"]) == (
        "Now described", True, "trunk")
    body = assert_problem(await client.patch(url, json={"default_branch": "a..b"}, headers=auth(tokens["alice"])),
                          422)
    assert "default_branch" in body["errors"]
    # Renaming is supported (tests/forge/test_gitea_compat.py); a bad name is refused.
    assert_problem(await client.patch(url, json={"name": "a..b"}, headers=auth(tokens["alice"])), 422)
    assert_problem(await client.patch(url, json={"description": "x"}), 401)  # a write needs a token, whatever the repo
    assert_problem(await client.patch(url, json={"description": "x"}, headers=auth(tokens["bob"])), 404)
    assert_problem(await client.patch(url, json={"description": "x"}, headers=auth(tokens["alice-ro"])), 403)
    assert (await client.get(url, headers=auth(tokens["alice"]))).json()["description"] == "Now described"

    # bob with read access sees it but may not change or delete it.
    put = await client.put(f"{url}/collaborators/bob", json={"permission": "read"}, headers=auth(tokens["alice"]))
    assert put.status_code == 204
    assert (await client.get(url, headers=auth(tokens["bob"]))).status_code == 200
    assert_problem(await client.patch(url, json={"description": "x"}, headers=auth(tokens["bob"])), 403)
    assert_problem(await client.delete(url, headers=auth(tokens["bob"])), 403)

    assert (await client.delete(url, headers=auth(tokens["alice"]))).status_code == 204
    assert_problem(await client.get(url, headers=auth(tokens["alice"])), 404)
    # Duplicate names on create: 409.
    await create(client, tokens["alice"], "again")
    dup = await client.post("/api/v1/user/repos", json={"name": "AGAIN"}, headers=auth(tokens["alice"]))
    assert dup.status_code == 409


async def test_collaborators(client: Any, tokens: dict[str, str]) -> None:
    await create(client, tokens["alice"], "team", private=True)
    base = "/api/v1/repos/alice/team/collaborators"
    assert_problem(await client.get("/api/v1/repos/alice/team", headers=auth(tokens["bob"])), 404)
    assert (await client.put(f"{base}/bob", headers=auth(tokens["alice"]))).status_code == 204  # default write
    bob = await client.get("/api/v1/repos/alice/team", headers=auth(tokens["bob"]))
    assert bob.json()["permissions"] == {"admin": False, "push": True, "pull": True}
    assert (await client.get(f"{base}/bob", headers=auth(tokens["alice"]))).status_code == 204
    assert_problem(await client.get(f"{base}/carol", headers=auth(tokens["alice"])), 404)

    assert (await client.put(f"{base}/bob", json={"permission": "admin"},
                             headers=auth(tokens["alice"]))).status_code == 204
    listed = await client.get(base, headers=auth(tokens["alice"]))
    assert [(c["login"], c["permissions"]["admin"]) for c in listed.json()] == [("bob", True)]
    # bob is an admin now: he may add carol.
    assert (await client.put(f"{base}/carol", json={"permission": "read"},
                             headers=auth(tokens["bob"]))).status_code == 204
    # carol (read) may not manage collaborators.
    assert_problem(await client.put(f"{base}/carol", json={"permission": "write"}, headers=auth(tokens["carol"])),
                   403)
    assert_problem(await client.put(f"{base}/ghost", json={"permission": "read"}, headers=auth(tokens["alice"])),
                   422)
    assert_problem(await client.put(f"{base}/carol", json={"permission": "owner"}, headers=auth(tokens["alice"])),
                   422)
    assert_problem(await client.put(f"{base}/alice", json={"permission": "read"}, headers=auth(tokens["alice"])),
                   422)
    assert_problem(await client.put(f"{base}/carol", json={"permission": "read"}), 401)  # a write needs a token

    assert (await client.delete(f"{base}/carol", headers=auth(tokens["alice"]))).status_code == 204
    assert_problem(await client.delete(f"{base}/carol", headers=auth(tokens["alice"])), 404)
    assert_problem(await client.get("/api/v1/repos/alice/team", headers=auth(tokens["carol"])), 404)


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "GIT_AUTHOR_NAME": "Ann", "GIT_AUTHOR_EMAIL": "ann@example.org", "GIT_COMMITTER_NAME": "Ann",
           "GIT_COMMITTER_EMAIL": "ann@example.org", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


async def test_branches_and_tags(client: Any, tokens: dict[str, str], settings: Settings,
                                 db_session: AsyncSession, tmp_path: Path) -> None:
    from forge.runtime import runtime_for
    from forge.services import RepoService

    await create(client, tokens["alice"], "code")
    service = RepoService(db_session, runtime_for(settings).store)
    repo = await service.get_by_owner_and_name("alice", "code")
    assert repo is not None
    work = tmp_path / "w"
    _git("init", "-q", "-b", "main", str(work))
    (work / "a.txt").write_text("a\n")
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "Add a", cwd=work)
    _git("tag", "-a", "v1.0", "-m", "release", cwd=work)
    _git("checkout", "-q", "-b", "release/1", cwd=work)
    (work / "b.txt").write_text("b\n")
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "Add b", cwd=work)
    _git("push", "-q", str(service.store.locate(repo.id)), "main", "release/1", "v1.0", cwd=work)
    await service.sync_refs(repo.id)
    await db_session.commit()
    main_oid = _git("rev-parse", "main", cwd=work).strip()
    tag_oid = _git("rev-parse", "v1.0", cwd=work).strip()

    headers = auth(tokens["alice"])
    got = await client.get("/api/v1/repos/alice/code", headers=headers)
    assert got.status_code == 200 and got.json()["empty"] is False
    await service.protect_branch(repo, "release/*")
    await db_session.commit()

    branches = (await client.get("/api/v1/repos/alice/code/branches")).json()
    assert [b["name"] for b in branches] == ["main", "release/1"]
    main = branches[0]
    assert main["commit"]["id"] == main_oid and main["commit"]["message"].startswith("Add a")
    assert main["commit"]["author"]["name"] == "Ann" and main["commit"]["timestamp"]
    assert main["protected"] is False and branches[1]["protected"] is True
    assert branches[1]["effective_branch_protection_name"] == "release/*"

    tags = (await client.get("/api/v1/repos/alice/code/tags")).json()
    assert len(tags) == 1
    assert tags[0]["name"] == "v1.0" and tags[0]["id"] == tag_oid and tags[0]["commit"]["sha"] == main_oid
    assert tags[0]["id"] != tags[0]["commit"]["sha"]  # annotated: the tag object, peeled to the commit

    await create(client, tokens["alice"], "shh", private=True)
    assert_problem(await client.get("/api/v1/repos/alice/shh/branches"), 404)
    assert_problem(await client.get("/api/v1/repos/alice/shh/tags", headers=auth(tokens["bob"])), 404)
    assert (await client.get("/api/v1/repos/alice/shh/branches", headers=headers)).json() == []


async def test_paging_like_gitea(client: Any, tokens: dict[str, str], settings: Settings,
                                 db_session: AsyncSession, tmp_path: Path) -> None:
    from forge.runtime import runtime_for
    from forge.services import RepoService

    await create(client, tokens["alice"], "many")
    service = RepoService(db_session, runtime_for(settings).store)
    repo = await service.get_by_owner_and_name("alice", "many")
    assert repo is not None
    work = tmp_path / "many"
    _git("init", "-q", "-b", "main", str(work))
    _git("commit", "-q", "--allow-empty", "-m", "root", cwd=work)
    for n in range(35):
        _git("tag", f"t{n:02d}", cwd=work)
    _git("push", "-q", str(service.store.locate(repo.id)), "main", "--tags", cwd=work)
    await service.sync_refs(repo.id)
    await db_session.commit()

    first = await client.get("/api/v1/repos/alice/many/tags")
    assert first.headers["x-total-count"] == "35" and len(first.json()) == 30
    second = await client.get("/api/v1/repos/alice/many/tags", params={"page": 2})
    assert [t["name"] for t in second.json()] == [f"t{n:02d}" for n in range(4, -1, -1)]
    assert (await client.get("/api/v1/repos/alice/many/tags", params={"page": 3})).json() == []
    capped = await client.get("/api/v1/repos/alice/many/tags", params={"limit": 1000})
    assert len(capped.json()) == 35  # limit is capped at 50
    small = await client.get("/api/v1/repos/alice/many/branches", params={"limit": 1})
    assert [b["name"] for b in small.json()] == ["main"] and small.headers["x-total-count"] == "1"
