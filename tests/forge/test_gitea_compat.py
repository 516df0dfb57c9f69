"""The Gitea-compatible API (issue 19 item 2) against a real server on 127.0.0.1, on SQLite and
PostgreSQL: integer ids, Gitea's shapes, paging headers, errors, contents writes as real commits
(409 on a stale sha, nothing written), git data, statuses (item 4), archives, topics, auto_init,
archived repositories and rename redirects for the API, the web and ``git clone``."""

from __future__ import annotations

import base64
import io
import tarfile
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.forge.forge_fixtures import DB_KINDS, Forge, _make_forge

ALLOW_LOOPBACK = {"ROSE_ASH_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true"}


@pytest.fixture(scope="module", params=DB_KINDS)
def forge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    yield from _make_forge(tmp_path_factory.mktemp("gitea"), str(request.param), ALLOW_LOOPBACK)


def api(forge: Forge, method: str, path: str, user: str | None = "alice", **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"token {forge.tokens[user]}"} if user else {}
    headers.update(kwargs.pop("headers", {}))
    follow = kwargs.pop("follow_redirects", False)
    return httpx.request(method, f"{forge.base}/api/v1{path}", headers=headers, timeout=60,
                         follow_redirects=follow, **kwargs)


def gitea_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["message"], str) and body["message"] and "url" in body
    return str(body["message"])


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_server_user_and_search(forge: Forge) -> None:
    assert api(forge, "GET", "/version", None).json() == {"version": "1.22.0+rose-ash"}
    settings = api(forge, "GET", "/settings/api", None).json()
    assert settings["max_response_items"] == 50 and settings["default_paging_num"] == 30

    alice = api(forge, "GET", "/users/alice", None).json()
    assert isinstance(alice["id"], int) and alice["login"] == "alice" and alice["username"] == "alice"
    assert alice["email"].endswith("@noreply.127.0.0.1")  # only its owner sees the address
    assert api(forge, "GET", "/users/alice").json()["email"] == "alice@example.org"
    assert api(forge, "GET", "/users/alice").json()["id"] == alice["id"]  # stable
    bob = api(forge, "GET", "/users/bob", None).json()
    assert bob["id"] != alice["id"]
    gitea_error(api(forge, "GET", "/users/nobody-here", None), 404)

    for n in range(3):
        api(forge, "POST", "/user/repos", json={"name": f"search-{n}", "description": "findme"})
    api(forge, "POST", "/user/repos", json={"name": "search-secret", "private": True})
    repo = api(forge, "GET", "/repos/alice/search-0").json()
    assert isinstance(repo["id"], int) and isinstance(repo["owner"]["id"], int)
    assert repo["owner"]["id"] == alice["id"]
    for key in ("mirror", "mirror_interval", "original_url", "archived", "fork", "size", "url", "html_url",
                "clone_url", "ssh_url", "has_issues", "permissions", "default_branch", "created_at", "updated_at"):
        assert key in repo, key
    assert repo["created_at"].endswith("Z") and len(repo["created_at"]) == 20  # RFC 3339, whole seconds

    found = api(forge, "GET", "/repos/search", None, params={"q": "search-", "limit": 2})
    assert found.status_code == 200 and found.json()["ok"] is True
    assert [r["name"] for r in found.json()["data"]] == ["search-0", "search-1"]
    assert found.headers["X-Total-Count"] == "3"  # the private one is not there for anonymous
    assert 'rel="next"' in found.headers["Link"] and "page=2" in found.headers["Link"]
    mine = api(forge, "GET", "/repos/search", params={"q": "search-", "uid": alice["id"]})
    assert mine.headers["X-Total-Count"] == "4"
    assert api(forge, "GET", "/repos/search", "bob", params={"q": "secret"}).json()["data"] == []

    listed = api(forge, "GET", "/users/alice/repos", None, params={"limit": 50})
    assert "search-secret" not in {r["name"] for r in listed.json()}
    assert {"search-0", "search-1", "search-2"} <= {r["name"] for r in listed.json()}

    # Token in the query string (Gitea's discouraged ?token= / ?access_token=).
    priv = f"{forge.base}/api/v1/repos/alice/search-secret"
    assert httpx.get(priv).status_code == 404
    assert httpx.get(priv, params={"token": forge.tokens["alice"]}).status_code == 200
    assert httpx.get(priv, params={"access_token": forge.tokens["alice"]}).status_code == 200
    assert httpx.get(priv, params={"token": "rat_wrong"}).status_code == 401

    # What Gitea has and we do not serve: Gitea's 404 shape.
    gitea_error(api(forge, "GET", "/repos/alice/search-0/issues"), 404)
    gitea_error(api(forge, "GET", "/orgs/someorg"), 404)


def test_auto_init_contents_and_git_data(forge: Forge) -> None:
    made = api(forge, "POST", "/user/repos", json={"name": "files", "auto_init": True, "license": "MIT",
                                                    "gitignores": "Python,Node", "description": "Some files"})
    assert made.status_code == 201, made.text
    assert made.json()["empty"] is False
    assert api(forge, "POST", "/user/repos", json={"name": "files-bad", "auto_init": True,
                                                   "license": "WTFPL"}).status_code == 422
    assert api(forge, "GET", "/repos/alice/files-bad").status_code == 404  # nothing created

    root = api(forge, "GET", "/repos/alice/files/contents").json()
    assert sorted(e["name"] for e in root) == [".gitignore", "LICENSE", "README.md"]
    assert all(e["type"] == "file" and e["content"] is None for e in root)
    licence = api(forge, "GET", "/repos/alice/files/contents/LICENSE").json()
    assert base64.b64decode(licence["content"]).startswith(b"MIT License")
    assert licence["encoding"] == "base64" and len(licence["last_commit_sha"]) == 40
    ignore = base64.b64decode(api(forge, "GET", "/repos/alice/files/contents/.gitignore").json()["content"])
    assert b"__pycache__/" in ignore and b"node_modules/" in ignore

    main_before = api(forge, "GET", "/repos/alice/files/branches/main").json()["commit"]["id"]
    created = api(forge, "POST", "/repos/alice/files/contents/src/app.py",
                  json={"content": b64("print('hi')\n"), "message": "Add app"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["content"]["path"] == "src/app.py" and body["commit"]["parents"][0]["sha"] == main_before
    blob_sha = body["content"]["sha"]
    # The same path again: 422; a stale sha: 409 and the branch does not move.
    assert api(forge, "POST", "/repos/alice/files/contents/src/app.py",
               json={"content": b64("x")}).status_code == 422
    head = api(forge, "GET", "/repos/alice/files/branches/main").json()["commit"]["id"]
    assert head == body["commit"]["sha"]
    stale = api(forge, "PUT", "/repos/alice/files/contents/src/app.py",
                json={"content": b64("new\n"), "sha": "0" * 40, "message": "Stale"})
    assert "sha does not match" in gitea_error(stale, 409)
    assert api(forge, "GET", "/repos/alice/files/branches/main").json()["commit"]["id"] == head
    updated = api(forge, "PUT", "/repos/alice/files/contents/src/app.py",
                  json={"content": b64("print('bye')\n"), "sha": blob_sha, "message": "Update app"})
    assert updated.status_code == 200, updated.text
    raw = api(forge, "GET", "/repos/alice/files/raw/src/app.py")
    assert raw.text == "print('bye')\n" and raw.headers["x-content-type-options"] == "nosniff"
    assert api(forge, "GET", "/repos/alice/files/media/src/app.py").text == "print('bye')\n"
    old_raw = api(forge, "GET", "/repos/alice/files/raw/src/app.py", params={"ref": head})
    assert old_raw.text == "print('hi')\n"
    # Directory listings (read through the cat-file pool) carry each entry's last commit and size.
    listed = {e["name"]: e for e in api(forge, "GET", "/repos/alice/files/contents").json()}
    assert listed["src"]["type"] == "dir" and listed["src"]["last_commit_sha"] == updated.json()["commit"]["sha"]
    assert listed["README.md"]["last_commit_sha"] == main_before and listed["README.md"]["size"] > 0
    in_src = api(forge, "GET", "/repos/alice/files/contents/src").json()
    assert [(e["path"], e["size"], e["last_commit_sha"]) for e in in_src] == [
        ("src/app.py", len("print('bye')\n"), updated.json()["commit"]["sha"])]
    old_listing = api(forge, "GET", "/repos/alice/files/contents/src", params={"ref": head}).json()
    assert old_listing[0]["sha"] == blob_sha and old_listing[0]["last_commit_sha"] == head
    # Bad paths and refs: clear errors, nothing written.
    for bad in (".git/config", "x" * 300, "a/%2E%2E/b", "src/app.py/under-a-file"):
        gitea_error(api(forge, "POST", f"/repos/alice/files/contents/{bad}", json={"content": b64("x")}), 422)
    gitea_error(api(forge, "POST", "/repos/alice/files/contents/a%00b", json={"content": b64("x")}), 400)
    gitea_error(api(forge, "GET", "/repos/alice/files/contents/README.md", params={"ref": "nope"}), 404)
    gitea_error(api(forge, "GET", "/repos/alice/files/contents/missing.txt"), 404)
    gitea_error(api(forge, "POST", "/repos/alice/files/contents/n.txt", json={"content": "%%%"}), 422)
    gitea_error(api(forge, "PUT", "/repos/alice/files/contents/src/app.py", "bob",
                    json={"content": b64("x"), "sha": blob_sha}), 403)
    gitea_error(api(forge, "PUT", "/repos/alice/files/contents/src/app.py", None,
                    json={"content": b64("x"), "sha": blob_sha}), 401)
    new_sha = api(forge, "GET", "/repos/alice/files/contents/src/app.py").json()["sha"]
    removed = api(forge, "DELETE", "/repos/alice/files/contents/src/app.py",
                  json={"sha": new_sha, "message": "Remove app"})
    assert removed.status_code == 200 and removed.json()["content"] is None
    gitea_error(api(forge, "GET", "/repos/alice/files/raw/src/app.py"), 404)
    # Each write was a real commit on main, visible to git (a clone sees the history).
    clone = forge.new_clone("alice", "files", "alice")
    log = forge.git("log", "--format=%s", cwd=clone).stdout.split("\n")
    assert log[:4] == ["Remove app", "Update app", "Add app", "Initial commit"]
    assert forge.git("fsck", "--strict", cwd=clone).returncode == 0

    # Commits, paged like Gitea.
    page = api(forge, "GET", "/repos/alice/files/commits", params={"limit": 2})
    assert page.headers["X-Total-Count"] == "4" and [c["commit"]["message"] for c in page.json()] == [
        "Remove app\n", "Update app\n"]
    assert 'rel="next"' in page.headers["Link"] and 'rel="last"' in page.headers["Link"]
    last = api(forge, "GET", "/repos/alice/files/commits", params={"limit": 2, "page": 2})
    assert 'rel="prev"' in last.headers["Link"] and 'rel="next"' not in last.headers["Link"]
    only_app = api(forge, "GET", "/repos/alice/files/commits", params={"path": "src/app.py"})
    assert only_app.headers["X-Total-Count"] == "3"
    first = page.json()[0]
    commit = api(forge, "GET", f"/repos/alice/files/git/commits/{first['sha']}").json()
    assert commit["sha"] == first["sha"] and commit["files"] == [{"filename": "src/app.py", "status": "removed"}]
    assert commit["commit"]["tree"]["sha"] and commit["created"].endswith("Z")
    gitea_error(api(forge, "GET", "/repos/alice/files/git/commits/" + "f" * 40), 404)

    tree = api(forge, "GET", f"/repos/alice/files/git/trees/{first['sha']}", params={"recursive": "true"}).json()
    assert sorted(e["path"] for e in tree["tree"]) == [".gitignore", "LICENSE", "README.md"]
    assert tree["truncated"] is False and tree["total_count"] == 3
    refs = api(forge, "GET", "/repos/alice/files/git/refs").json()
    assert [r["ref"] for r in refs] == ["refs/heads/main"] and refs[0]["object"]["type"] == "commit"
    assert api(forge, "GET", "/repos/alice/files/git/refs/heads").json() == refs
    gitea_error(api(forge, "GET", "/repos/alice/files/git/refs/tags"), 404)

    # Branch protections in Gitea's shape (an empty list until a rule exists).
    assert api(forge, "GET", "/repos/alice/files/branch_protections").json() == []
    gitea_error(api(forge, "GET", "/repos/alice/files/branches/nope"), 404)

    # Archives, streamed from git archive.
    zipped = api(forge, "GET", "/repos/alice/files/archive/main.zip")
    assert zipped.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    assert "files/README.md" in names
    tarred = api(forge, "GET", "/repos/alice/files/archive/main.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(tarred.content), mode="r:gz") as tar:
        assert "files/LICENSE" in tar.getnames()
    gitea_error(api(forge, "GET", "/repos/alice/files/archive/nope.zip"), 404)
    gitea_error(api(forge, "GET", "/repos/alice/files/archive/main.rar"), 404)

    # Topics.
    assert api(forge, "PUT", "/repos/alice/files/topics", json={"topics": ["Python", "co-op"]}).status_code == 204
    assert api(forge, "GET", "/repos/alice/files/topics", None).json() == {"topics": ["python", "co-op"]}
    assert api(forge, "PUT", "/repos/alice/files/topics", json={"topics": ["no spaces!"]}).status_code == 422
    assert api(forge, "GET", "/repos/alice/files").json()["topics"] == ["python", "co-op"]


def test_private_repositories_are_absent(forge: Forge) -> None:
    api(forge, "POST", "/user/repos", json={"name": "hidden", "private": True, "auto_init": True})
    for path in ("/contents/README.md", "/raw/README.md", "/archive/main.zip", "/commits", "/git/refs",
                 "/commits/main/status", "/topics", "/branches/main"):
        assert api(forge, "GET", f"/repos/alice/hidden{path}", None).status_code == 404, path
        assert api(forge, "GET", f"/repos/alice/hidden{path}", "bob").status_code == 404, path
        assert api(forge, "GET", f"/repos/alice/hidden{path}", "alice").status_code == 200, path
    assert api(forge, "GET", "/repos/alice/hidden/hooks", "bob").status_code == 404


def test_commit_statuses(forge: Forge) -> None:
    api(forge, "POST", "/user/repos", json={"name": "ci", "auto_init": True})
    sha = api(forge, "GET", "/repos/alice/ci/branches/main").json()["commit"]["id"]
    combined = api(forge, "GET", f"/repos/alice/ci/commits/{sha}/status").json()
    assert combined["state"] == "" and combined["total_count"] == 0

    bad = api(forge, "POST", f"/repos/alice/ci/statuses/{sha}", json={"state": "exploded", "context": "ci"})
    assert "must be one of" in gitea_error(bad, 422)
    assert api(forge, "GET", f"/repos/alice/ci/statuses/{sha}").json() == []  # nothing written
    gitea_error(api(forge, "POST", f"/repos/alice/ci/statuses/{'e' * 40}", json={"state": "success"}), 404)
    gitea_error(api(forge, "POST", f"/repos/alice/ci/statuses/{sha}", json={"state": "success",
                                                                          "target_url": "javascript:x"}), 422)
    gitea_error(api(forge, "POST", f"/repos/alice/ci/statuses/{sha}", None, json={"state": "success"}), 401)
    gitea_error(api(forge, "POST", f"/repos/alice/ci/statuses/{sha}", "bob", json={"state": "success"}), 403)

    def post(state: str, context: str) -> dict[str, Any]:
        response = api(forge, "POST", f"/repos/alice/ci/statuses/{sha}", json={
            "state": state, "context": context, "description": f"{context} is {state}",
            "target_url": f"https://ci.example.org/{context}"})
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    first = post("pending", "build")
    assert isinstance(first["id"], int) and first["status"] == "pending" and first["creator"]["login"] == "alice"
    assert api(forge, "GET", "/repos/alice/ci/commits/main/status").json()["state"] == "pending"
    post("success", "build")
    post("success", "lint")
    state = api(forge, "GET", "/repos/alice/ci/commits/main/status").json()
    assert state["state"] == "success" and state["total_count"] == 2 and state["sha"] == sha
    assert {s["context"]: s["status"] for s in state["statuses"]} == {"build": "success", "lint": "success"}
    post("warning", "docs")
    assert api(forge, "GET", "/repos/alice/ci/commits/main/status").json()["state"] == "warning"
    post("failure", "lint")
    assert api(forge, "GET", "/repos/alice/ci/commits/main/status").json()["state"] == "failure"
    post("error", "deploy")
    assert api(forge, "GET", f"/repos/alice/ci/commits/{sha}/status").json()["state"] == "error"
    every = api(forge, "GET", "/repos/alice/ci/commits/main/statuses")
    assert every.headers["X-Total-Count"] == "6" and every.json()[0]["context"] == "deploy"
    assert api(forge, "GET", f"/repos/alice/ci/statuses/{sha}", None).headers["X-Total-Count"] == "6"
    gitea_error(api(forge, "GET", "/repos/alice/ci/commits/nope/status"), 404)


def test_statuses_show_on_pages(forge: Forge) -> None:
    """A status posted through the API shows on the commit, tree, commits, branches and repository
    pages with the combined state, and their validators change (no page keeps the old answer)."""
    api(forge, "POST", "/user/repos", json={"name": "shown", "auto_init": True})
    sha = api(forge, "GET", "/repos/alice/shown/branches/main").json()["commit"]["id"]
    base = f"{forge.base}/forge/alice/shown"
    pages = [f"{base}/commit/{sha}", f"{base}/src/commit/{sha}", f"{base}/src/branch/main",
             f"{base}/commits/branch/main", f"{base}/commits/commit/{sha}", f"{base}/branches", base]

    def get(url: str, etag: str | None = None) -> httpx.Response:
        return httpx.get(url, headers={"If-None-Match": etag} if etag else {}, timeout=60)

    before = {}
    for url in pages:
        page = get(url)
        assert page.status_code == 200, url
        assert "commit-statuses" not in page.text, url
        assert "immutable" not in page.headers["Cache-Control"], url  # statuses may still come
        before[url] = page.headers["ETag"]
        assert get(url, before[url]).status_code == 304, url
    # The raw file and the .diff show no statuses: they stay immutable.
    assert "immutable" in get(f"{base}/raw/commit/{sha}/README.md").headers["Cache-Control"]
    assert "immutable" in get(f"{base}/commit/{sha}.diff").headers["Cache-Control"]

    for state, context in (("success", "build"), ("pending", "deploy")):
        posted = api(forge, "POST", f"/repos/alice/shown/statuses/{sha}", json={
            "state": state, "context": context, "description": f"<i>{context}</i>",
            "target_url": f"https://ci.example.org/{context}"})
        assert posted.status_code == 201, posted.text
    for url in pages:
        page = get(url, before[url])
        assert page.status_code == 200, url  # the old validator no longer matches
        assert page.headers["ETag"] != before[url], url
        assert 'data-state="pending"' in page.text and "Some checks are pending" in page.text, url
        assert "&lt;i&gt;build&lt;/i&gt;" in page.text and 'href="https://ci.example.org/deploy"' in page.text, url
        assert get(url, page.headers["ETag"]).status_code == 304, url
    api(forge, "POST", f"/repos/alice/shown/statuses/{sha}", json={"state": "success", "context": "deploy"})
    page = get(f"{base}/commit/{sha}")
    assert 'data-state="success"' in page.text and "All checks passed" in page.text and "2 of 2" in page.text
    assert 'data-state="success"' in get(base).text


def test_page_statuses_reads_latest_per_context_in_one_query(forge: Forge) -> None:
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import AsyncSession

    from forge.models import ForgeRepo
    from forge.statuses import page_statuses

    api(forge, "POST", "/user/repos", json={"name": "many", "auto_init": True})
    work = forge.new_clone("alice", "many", "alice")
    shas = [forge.commit(work, f"c{n}", {f"f{n}": str(n)}) for n in range(3)]
    forge.git("push", "origin", "HEAD:main", cwd=work)
    for n, sha in enumerate(shas):
        for state in ("pending", "failure" if n == 1 else "success"):
            api(forge, "POST", f"/repos/alice/many/statuses/{sha}", json={"state": state, "context": "ci"})

    async def read(session: AsyncSession) -> tuple[dict[str, Any], int]:
        from sqlalchemy import select
        repo = (await session.execute(select(ForgeRepo).where(ForgeRepo.name == "many"))).scalar_one()
        statements: list[str] = []
        engine = session.bind.sync_engine  # type: ignore[union-attr]
        listener = lambda *a: statements.append(a[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            found = await page_statuses(session, repo.id, [*shas, "0" * 40])
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return found, len(statements)

    found, queries = forge.db(read)
    assert queries == 1
    assert set(found) == set(shas)
    assert [found[s].state for s in shas] == ["success", "failure", "success"]
    assert all(len(found[s].statuses) == 1 for s in shas)  # the newest per context only


def test_statuses_partial_renders() -> None:
    from jinja2 import Environment, FileSystemLoader

    from app.templating import TEMPLATES_DIR
    from forge.statuses import StatusRead, combined_state

    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    statuses = [StatusRead(id=1, status="failure", target_url="https://ci.example.org/1",
                           description="<b>2 failed</b>", url="", context="tests", creator=None,
                           created_at="2024-01-01T00:00:00Z", updated_at="2024-01-01T00:00:00Z"),
                StatusRead(id=2, status="success", target_url="", description="", url="", context="lint",
                           creator=None, created_at="2024-01-01T00:00:00Z", updated_at="2024-01-01T00:00:00Z")]
    html = env.get_template("forge/_statuses.html").render(
        statuses=statuses, combined=combined_state([s.status for s in statuses]))
    assert 'data-state="failure"' in html and "Some checks failed" in html and "1 of 2 successful" in html
    assert "&lt;b&gt;2 failed&lt;/b&gt;" in html and 'href="https://ci.example.org/1"' in html
    assert env.get_template("forge/_statuses.html").render(statuses=[], combined="").strip() == ""
    assert combined_state(["success", "pending"]) == "pending"
    assert combined_state(["warning", "pending", "success"]) == "warning"
    assert combined_state(["failure", "error"]) == "error"
    assert combined_state([]) == ""


def test_archived_and_rename(forge: Forge) -> None:
    api(forge, "POST", "/user/repos", json={"name": "oldname", "auto_init": True})
    work = forge.new_clone("alice", "oldname", "alice")
    forge.commit(work, "More")
    forge.git("push", "-q", "origin", "main", cwd=work)

    # Tags carry their annotation (Gitea Tag.message).
    forge.git("tag", "-a", "v1.0", "-m", "Release notes\n\nwith a body", cwd=work)
    forge.git("push", "-q", "origin", "v1.0", cwd=work)
    tags = api(forge, "GET", "/repos/alice/oldname/tags").json()
    assert tags[0]["name"] == "v1.0" and tags[0]["message"].startswith("Release notes\n\nwith a body")
    assert tags[0]["commit"]["created"].endswith("Z")

    # Archived: readable, every write refused with a clear message.
    assert api(forge, "PATCH", "/repos/alice/oldname", json={"archived": True}).json()["archived"] is True
    forge.commit(work, "Refused")
    refused = forge.git("push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0 and "archived" in refused.stderr
    sha = api(forge, "GET", "/repos/alice/oldname/contents/README.md").json()["sha"]
    gitea_error(api(forge, "PUT", "/repos/alice/oldname/contents/README.md",
                    json={"content": b64("x"), "sha": sha}), 423)
    head = api(forge, "GET", "/repos/alice/oldname/branches/main").json()["commit"]["id"]
    assert "archived" in gitea_error(api(forge, "POST", f"/repos/alice/oldname/statuses/{head}",
                                         json={"state": "success", "context": "ci"}), 423)
    assert api(forge, "GET", f"/repos/alice/oldname/statuses/{head}").json() == []
    assert api(forge, "PATCH", "/repos/alice/oldname", json={"archived": False}).json()["archived"] is False
    forge.git("push", "-q", "origin", "main", cwd=work)

    renamed = api(forge, "PATCH", "/repos/alice/oldname", json={"name": "newname"})
    assert renamed.status_code == 200 and renamed.json()["full_name"] == "alice/newname"
    moved = api(forge, "GET", "/repos/alice/oldname/contents/README.md", params={"ref": "main"})
    assert moved.status_code == 301
    assert moved.headers["location"] == "/api/v1/repos/alice/newname/contents/README.md?ref=main"
    assert api(forge, "GET", "/repos/alice/oldname", follow_redirects=True).json()["name"] == "newname"
    web = httpx.get(f"{forge.base}/forge/alice/oldname", follow_redirects=False)
    assert web.status_code == 301 and web.headers["location"] == "/forge/alice/newname"
    # git follows the redirect of the ref advertisement and then talks to the new URL.
    old_clone = forge.tmp("old-url-clone")
    forge.git("clone", "-q", forge.url("alice", "oldname"), str(old_clone))
    assert forge.rev(old_clone, "HEAD") == forge.rev(work, "HEAD")
    # Private and absent stay alike: bob may not learn where a private repository went.
    api(forge, "POST", "/user/repos", json={"name": "shy", "private": True})
    api(forge, "PATCH", "/repos/alice/shy", json={"name": "shy2"})
    assert api(forge, "GET", "/repos/alice/shy", "bob").status_code == 404
    assert httpx.get(f"{forge.base}/forge/alice/shy").status_code == 404
    # Taking the old name back ends the redirect.
    api(forge, "POST", "/user/repos", json={"name": "oldname"})
    assert api(forge, "GET", "/repos/alice/oldname").json()["empty"] is True
    assert api(forge, "PATCH", "/repos/alice/newname", json={"name": "oldname"}).status_code == 409
