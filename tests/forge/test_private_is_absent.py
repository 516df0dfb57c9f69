# ruff: noqa: F811  (the ``forge`` fixture is imported from forge_fixtures)
"""Private and absent look the same to whoever may not see them (issue 11 item 3).

Against a real server: for anonymous callers, another member (session and token) and tokens
without access, a private repository and an absent one get the same whole answer (status, every
header but the per-request ones, body) on the web pages, the Gitea API and every git smart HTTP
endpoint; stock ``git`` prompts (401) for both and then reports "not found" for both. Site
administrators' use of private repositories is written to the audit log.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.forge.forge_fixtures import PASSWORD, Forge, forge  # noqa: F401

# Same length, so Content-Length matches once the name is masked in the body.
PRIVATE, ABSENT = "vault", "ghost"
VARYING = {"date", "x-request-id", "server"}
CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')
NO_SCOPE = "alice's own token without repo:read"


def shape(response: httpx.Response, name: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """The response with the repository name masked: what a caller could tell apart."""
    headers = []
    for key, value in response.headers.multi_items():
        key = key.lower()
        if key in VARYING:
            continue
        if key == "set-cookie":
            value = value.split("=", 1)[0]  # which cookie, not its random value
        headers.append((key, value.replace(name, "<repo>")))
    return response.status_code, sorted(headers), response.content.replace(name.encode(), b"<repo>")


def same_answer(forge: Forge, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """``path`` (with ``{repo}``) asked about the private and the absent repository: one answer."""
    given: httpx.Client | None = kwargs.pop("client", None)
    answers = []
    for name in (PRIVATE, ABSENT):
        # A fresh client per question unless signed in, so cookies from the first never reach the second.
        client = given or httpx.Client(base_url=forge.base, timeout=30)
        response = client.request(method, path.format(repo=name), **kwargs)
        answers.append((response, shape(response, name)))
    (private, private_shape), (_absent, absent_shape) = answers
    assert private_shape == absent_shape, f"{method} {path}: {private_shape} != {absent_shape}"
    return private


def signed_in(forge: Forge, username: str) -> httpx.Client:
    """A browser-like client with a session for ``username`` (cookie + CSRF token from the form)."""
    client = httpx.Client(base_url=forge.base, timeout=30)
    page = client.get("/account/login")
    token = CSRF_FIELD.search(page.text)
    assert token
    done = client.post("/account/login", data={"login": username, "password": PASSWORD,
                                                "_csrf_token": token.group(1)})
    assert done.status_code == 303, done.text[:300]
    return client


def token_for(forge: Forge, username: str, scopes: list[str]) -> str:
    async def make(session: Any) -> str:
        from domains.account.services import AccountService, TokenService

        user = await AccountService(session).by_username(username)
        assert user is not None
        _row, secret = await TokenService(session).issue(user, f"{username}-{'-'.join(scopes)}", scopes)
        return secret

    return forge.db(make)


@pytest.fixture(scope="module")
def hidden(forge: Forge) -> Forge:
    """alice's private repository with one commit; ``ghost`` does not exist."""
    forge.create_repo("alice", PRIVATE, private=True)
    work = forge.tmp("vault")
    forge.git("clone", "-q", forge.url("alice", PRIVATE, "alice"), str(work))
    forge.commit(work, "classified")
    forge.git("push", "-q", "origin", "main", cwd=work)
    forge.tokens["alice-api-only"] = token_for(forge, "alice", ["api"])  # alice's, but no repo scope
    return forge


def callers(forge: Forge) -> dict[str, dict[str, Any]]:
    """Everyone who may not see alice's private repository, as request options."""
    return {
        "anonymous": {},
        "bob's token": {"auth": ("x", forge.tokens["bob"])},
        NO_SCOPE: {"auth": ("x", forge.tokens["alice-api-only"])},
        "bearer token of bob": {"headers": {"Authorization": f"Bearer {forge.tokens['bob']}"}},
    }


WEB_GETS = ["/forge/alice/{repo}", "/forge/alice/{repo}.git", "/forge/alice/{repo}/settings"]
API_CALLS = [
    ("GET", "/api/v1/repos/alice/{repo}", None), ("GET", "/api/v1/repos/alice/{repo}/branches", None),
    ("GET", "/api/v1/repos/alice/{repo}/tags", None), ("GET", "/api/v1/repos/alice/{repo}/collaborators", None),
    ("GET", "/api/v1/repos/alice/{repo}/collaborators/bob", None),
    ("GET", "/api/v1/repos/alice/{repo}/push_mirrors", None),
    ("PATCH", "/api/v1/repos/alice/{repo}", {"description": "pwned"}),
    ("DELETE", "/api/v1/repos/alice/{repo}", None),
    ("PUT", "/api/v1/repos/alice/{repo}/collaborators/bob", {"permission": "admin"}),
    ("POST", "/api/v1/repos/alice/{repo}/mirror-sync", None),
]
GIT = "/forge/alice/{repo}.git"


def test_web_pages_answer_404_for_both(hidden: Forge) -> None:
    forge = hidden
    for who, options in callers(forge).items():
        for path in WEB_GETS:
            response = same_answer(forge, "GET", path, **options)
            if path.endswith("/settings"):  # a members' page: sign in first (a token is no session there)
                assert response.status_code == 303, (who, path)
            elif path.endswith(".git"):
                assert response.status_code == 301, (who, path)  # browsers are sent to the page, which is 404
            else:
                assert response.status_code == 404, (who, path, response.text[:200])
    bob = signed_in(forge, "bob")
    for path in WEB_GETS:
        response = same_answer(forge, "GET", path, client=bob)
        assert response.status_code == (301 if path.endswith(".git") else 404), path
    page = bob.get("/forge/alice/vault/settings")
    token = CSRF_FIELD.search(bob.get("/forge/new").text)
    assert token
    for sub in ("", "/collaborators", "/delete"):
        response = same_answer(forge, "POST", "/forge/alice/{repo}/settings" + sub, client=bob,
                               data={"_csrf_token": token.group(1), "username": "bob", "confirm": "vault"})
        assert response.status_code == 404, (sub, response.text[:200])
    assert page.status_code == 404
    # Still there and unchanged for alice.
    alice = signed_in(forge, "alice")
    assert alice.get("/forge/alice/vault").status_code == 200


def test_api_answers_404_for_both(hidden: Forge) -> None:
    forge = hidden
    for who, options in callers(forge).items():
        for method, path, body in API_CALLS:
            response = same_answer(forge, method, path, json=body, **options) if body is not None else \
                same_answer(forge, method, path, **options)
            # Before the repository is looked up, the route's declaration (app/access.py) may refuse the
            # caller: a token-only route asks anonymous callers for a token (401), a scopeless token is
            # refused (403). Either way it is one answer for both.
            if who == NO_SCOPE:
                want = 403
            elif who == "anonymous":
                want = 404 if method == "GET" and path.rsplit("/", 1)[-1] in ("{repo}", "branches", "tags", "bob") \
                    else 401
            else:
                want = 404
            assert response.status_code == want, (who, method, path, response.text[:200])
            assert response.headers["content-type"] == "application/problem+json"
    alice = {"Authorization": f"token {forge.tokens['alice']}"}
    repo = httpx.get(f"{forge.base}/api/v1/repos/alice/vault", headers=alice)
    assert repo.status_code == 200 and repo.json()["description"] == ""


def test_git_http_challenges_then_404_for_both(hidden: Forge) -> None:
    forge = hidden
    requests = [
        ("GET", GIT + "/info/refs", {"params": {"service": "git-upload-pack"}}),
        ("GET", GIT + "/info/refs", {"params": {"service": "git-receive-pack"}}),
        ("GET", "/forge/alice/{repo}/info/refs", {"params": {"service": "git-upload-pack"}}),
        ("GET", GIT + "/info/refs", {"params": {"service": "git-upload-pack"},
                                     "headers": {"Git-Protocol": "version=2"}}),
        ("POST", GIT + "/git-upload-pack", {"content": b"0000",
                                           "headers": {"Content-Type": "application/x-git-upload-pack-request"}}),
        ("POST", GIT + "/git-receive-pack", {"content": b"0000",
                                            "headers": {"Content-Type": "application/x-git-receive-pack-request"}}),
    ]
    for who, options in callers(forge).items():
        for method, path, extra in requests:
            merged = {**extra, **options}
            if "headers" in extra and "headers" in options:
                merged["headers"] = {**extra["headers"], **options["headers"]}
            response = same_answer(forge, method, path, **merged)
            if who == "anonymous":
                assert response.status_code == 401, (method, path)
                assert response.headers["www-authenticate"] == 'Basic realm="Rose Ash"'
            else:
                allowed = (403, 404) if who == NO_SCOPE else (404,)
                assert response.status_code in allowed, (who, method, path, response.status_code)
    # Wrong credentials: 401 for both, whatever the repository.
    for secret in ("rat_wrong", "roa_wrong", "not-a-token"):
        for method, path, extra in requests:
            response = same_answer(forge, method, path, auth=("x", secret), **extra)
            assert response.status_code == 401 and "basic" in response.headers["www-authenticate"].lower()
    # A session cookie is not an identity git can use: a signed-in browser is anonymous there or 404.
    bob = signed_in(forge, "bob")
    for method, path, extra in requests:
        assert same_answer(forge, method, path, client=bob, **extra).status_code in (401, 404)


def askpass(forge: Forge, name: str, secret: str) -> tuple[dict[str, str], Path]:
    """A GIT_ASKPASS helper that logs each prompt and answers ``secret`` (or any username)."""
    log = forge.tmp(f"askpass-{name}") / "prompts.log"
    script = log.parent / "askpass.sh"
    script.write_text(f'#!/bin/sh\necho "$1" >> "{log}"\ncase "$1" in Username*) echo x ;; *) echo "{secret}" ;; '
                      f"esac\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"GIT_ASKPASS": str(script), "GIT_TERMINAL_PROMPT": "1"}, log


def test_real_git_prompts_for_both_and_then_says_not_found(hidden: Forge) -> None:
    forge = hidden
    host = forge.base.removeprefix("http://")
    outcomes = {}
    for name in (PRIVATE, ABSENT):
        url = f"http://{host}/forge/alice/{name}.git"
        # Without a terminal git cannot prompt: the same failure for both.
        quiet = forge.git("clone", url, str(forge.tmp(f"anon-{name}") / "x"), check=False)
        assert quiet.returncode != 0 and "could not read Username" in quiet.stderr, quiet.stderr
        # git prompts for both (a 401 challenge); a wrong token is refused for both.
        env, log = askpass(forge, f"wrong-{name}", "rat_wrong")
        wrong = forge.git("clone", url, str(forge.tmp(f"wrong-{name}") / "x"), check=False, env=env)
        assert wrong.returncode != 0 and "Authentication failed" in wrong.stderr, wrong.stderr
        prompts = log.read_text().splitlines()
        assert any(p.startswith("Username") for p in prompts) and any(p.startswith("Password") for p in prompts)
        # bob answers the prompt with a good token: then "not found" for both.
        env, log = askpass(forge, f"bob-{name}", forge.tokens["bob"])
        bob = forge.git("clone", url, str(forge.tmp(f"bob-{name}") / "x"), check=False, env=env)
        assert bob.returncode != 0 and "not found" in bob.stderr, bob.stderr
        assert log.read_text().strip()
        # Pushing anonymously into either prompts too.
        env, log = askpass(forge, f"push-{name}", forge.tokens["bob"])
        work = forge.tmp(f"push-{name}")
        forge.git("init", "-q", str(work))
        forge.commit(work, "intruder")
        push = forge.git("push", url, "HEAD:refs/heads/main", cwd=work, check=False, env=env)
        assert push.returncode != 0 and "not found" in push.stderr, push.stderr
        assert log.read_text().strip()
        outcomes[name] = [line.replace(name, "<repo>") for line in (quiet.stderr + wrong.stderr + bob.stderr
                                                                    + push.stderr).splitlines()
                          if "Cloning into" not in line]
    assert outcomes[PRIVATE] == outcomes[ABSENT]
    # alice, who may see it, clones as before.
    clone = forge.new_clone("alice", PRIVATE, "alice")
    assert (clone / "classified.txt").exists()


def test_admin_use_of_private_repositories_is_audited(hidden: Forge) -> None:
    forge = hidden

    async def make_admin(session: Any) -> None:
        from sqlalchemy import update

        from domains.account.models import User

        await session.execute(update(User).where(User.username == "carol").values(is_admin=True))

    forge.db(make_admin)
    clone = forge.new_clone("alice", PRIVATE, "carol")
    assert (clone / "classified.txt").exists()
    carol = {"Authorization": f"token {forge.tokens['carol']}"}
    assert httpx.get(f"{forge.base}/api/v1/repos/alice/vault", headers=carol).status_code == 200
    edited = httpx.patch(f"{forge.base}/api/v1/repos/alice/vault", json={"description": "seen by staff"},
                         headers=carol)
    assert edited.status_code == 200
    assert signed_in(forge, "carol").get("/forge/alice/vault").status_code == 200
    # alice's own use and public reads are not admin actions.
    forge.new_clone("alice", PRIVATE, "alice")

    async def entries(session: Any) -> list[tuple[str, str, str, str]]:
        from sqlalchemy import select

        from app.audit import AuditEntry
        from domains.account.services import AccountService

        alice = await AccountService(session).by_username("alice")
        assert alice is not None
        rows = (await session.execute(select(AuditEntry).order_by(AuditEntry.created_at))).scalars().all()
        assert all(r.subject_id == alice.id for r in rows if r.action.startswith("forge."))
        return [(r.actor_name, r.action, r.target, r.detail) for r in rows if r.action.startswith("forge.")]

    logged = forge.db(entries)
    assert logged == [
        ("carol", "forge.repo.read", "alice/vault", "git fetch"),
        ("carol", "forge.repo.read", "alice/vault", "GET /api/v1/repos/alice/vault"),
        ("carol", "forge.repo.admin", "alice/vault", "PATCH /api/v1/repos/alice/vault"),
        ("carol", "forge.repo.read", "alice/vault", "GET /forge/alice/vault"),
    ], logged
    # The audit page shows them to administrators.
    page = signed_in(forge, "carol").get("/account/admin/audit")
    assert page.status_code == 200 and "forge.repo.admin" in page.text and "alice/vault" in page.text
