# ruff: noqa: F811  (the ``forge`` fixture is imported from forge_fixtures)
"""The lean path for git fetches (forge/smart_http.py GitFastPath) against a real server.

``rose-ash run`` serves through app/asgi.py, which puts the lean path in front of the app: these
tests check that it answers what it should (stock git clone/fetch, the access log line says so),
that its answer is the full path's answer byte for byte, and that everything it must not decide
(a foreign Host, a private repository, a token without the scope, a push and its policy) is
decided exactly as before.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from tests.forge.forge_fixtures import Forge, forge  # noqa: F401

VARYING = {"date", "x-request-id", "server"}
V2 = {"Git-Protocol": "version=2"}


def access_lines(forge: Forge, path: str) -> list[dict[str, Any]]:
    """The server's access log entries for ``path`` (JSON lines on its stderr)."""
    found = []
    for line in forge.server.log_path.read_text(errors="replace").splitlines():
        if '"rose_ash.access"' not in line or path not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("path") == path:
            found.append(entry)
    return found


def whole(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k.lower(), v) for k, v in response.headers.multi_items() if k.lower() not in VARYING)
    return response.status_code, headers, response.content


def test_clone_and_fetch_take_the_lean_path_and_are_logged(forge: Forge) -> None:
    forge.create_repo("alice", "lean-public")
    work = forge.new_clone("alice", "lean-public", "alice")
    first = forge.commit(work, "first")
    forge.git("push", "-q", "origin", "main", cwd=work)
    clone = forge.new_clone("alice", "lean-public")  # anonymous
    assert forge.rev(clone, "HEAD") == first
    second = forge.commit(work, "second")
    forge.git("push", "-q", "origin", "main", cwd=work)
    forge.git("fetch", "-q", "origin", cwd=clone)
    assert forge.rev(clone, "origin/main") == second

    refs = access_lines(forge, "/forge/alice/lean-public.git/info/refs")
    posts = access_lines(forge, "/forge/alice/lean-public.git/git-upload-pack")
    # the anonymous clone and fetch went the lean way, with the usual fields and a request id
    lean_refs = [e for e in refs if e.get("lean")]
    assert len(lean_refs) >= 2 and all(e["status"] == 200 and e["method"] == "GET" for e in lean_refs)
    assert [e for e in posts if e.get("lean")] and all(e["request_id"] for e in lean_refs)
    # the pusher's token fetches (receive-pack's advertisement) and pushes still go the full way
    assert not [e for e in access_lines(forge, "/forge/alice/lean-public.git/git-receive-pack") if e.get("lean")]
    # they skip the HTTP middleware's per-route series, so /metrics counts them on their own
    metrics = httpx.get(forge.server.base_url + "/metrics").text
    assert 'rose_ash_git_fast_path_requests_total{status="200",step="info/refs"}' in metrics
    assert 'rose_ash_git_fast_path_requests_total{status="200",step="git-upload-pack"}' in metrics


def test_the_lean_answer_is_the_full_answer(forge: Forge) -> None:
    """The same ref advertisement through the lean path and (with an extra query parameter the
    lean path does not take) through the whole application: same status, headers and body."""
    forge.create_repo("alice", "lean-same")
    work = forge.new_clone("alice", "lean-same", "alice")
    forge.commit(work, "one")
    forge.git("push", "-q", "origin", "main", cwd=work)
    path = "/forge/alice/lean-same.git/info/refs"
    with httpx.Client(base_url=forge.base, timeout=30) as client:
        for headers in ({}, V2):
            lean = client.get(path, params={"service": "git-upload-pack"}, headers=headers)
            full = client.get(path, params={"service": "git-upload-pack", "x": "1"}, headers=headers)
            assert lean.status_code == 200
            assert whole(lean) == whole(full)
            assert "content-security-policy" in lean.headers and lean.headers["x-request-id"]
        # the POST too: ls-refs under v2
        body = b"0014command=ls-refs\n0000"
        post_headers = {**V2, "Content-Type": "application/x-git-upload-pack-request"}
        lean = client.post("/forge/alice/lean-same.git/git-upload-pack", content=body, headers=post_headers)
        full = client.post("/forge/alice/lean-same.git/git-upload-pack?x=1", content=body, headers=post_headers)
        assert lean.status_code == 200 and whole(lean) == whole(full)
    entries = access_lines(forge, path)
    assert [e for e in entries if e.get("lean")] and [e for e in entries if not e.get("lean")]


def test_a_foreign_host_is_refused_like_everywhere_else(forge: Forge) -> None:
    forge.create_repo("alice", "lean-host")
    url = "/forge/alice/lean-host.git/info/refs?service=git-upload-pack"
    with httpx.Client(base_url=forge.base, timeout=30) as client:
        git = client.get(url, headers={"Host": "evil.example"})
        page = client.get("/", headers={"Host": "evil.example"})
    assert git.status_code == 400 and whole(git)[1:] == whole(page)[1:]
    assert not [e for e in access_lines(forge, "/forge/alice/lean-host.git/info/refs") if e.get("lean")]


def test_two_host_lines_are_refused(forge: Forge) -> None:
    """RFC 9112 section 3.2: SingleHostMiddleware's 400, which the lean path must not bypass."""
    forge.create_repo("alice", "lean-hosts")
    host = forge.base.removeprefix("http://")
    name, port = host.rsplit(":", 1)
    request = (f"GET /forge/alice/lean-hosts.git/info/refs?service=git-upload-pack HTTP/1.1\r\n"
               f"Host: {host}\r\nHost: evil.example\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((name, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b'{"message":"invalid host header"}')


def test_private_looks_absent_on_the_lean_path(forge: Forge) -> None:
    """Anonymous: 401 with the challenge for both; a token that may not see it: 404 for both."""
    forge.create_repo("bob", "lean-vault", private=True)
    with httpx.Client(base_url=forge.base, timeout=30) as client:
        for auth in (None, ("alice", forge.tokens["alice"]), ("alice", forge.tokens["alice-ro"])):
            answers = []
            for name in ("lean-vault", "lean-ghost"):
                refs = client.get(f"/forge/bob/{name}.git/info/refs", params={"service": "git-upload-pack"},
                                  auth=auth)
                post = client.post(f"/forge/bob/{name}.git/git-upload-pack", content=b"0000", auth=auth,
                                   headers={**V2, "Content-Type": "application/x-git-upload-pack-request"})
                answers.append([whole(r) for r in (refs, post)])
            assert answers[0] == answers[1]
            assert answers[0][0][0] == (401 if auth is None else 404)
    # ... and git itself says "not found" / prompts for both
    clone = forge.git("clone", "-q", forge.url("bob", "lean-vault", "alice"), str(forge.tmp("x") / "c"), check=False)
    assert clone.returncode != 0 and "not found" in clone.stderr.lower()


def test_a_token_without_the_repo_scope_is_refused(forge: Forge) -> None:
    """A token lacking ``repo:read`` may not fetch even a public repository (403), and its
    owner's private repository is absent to it (the same 404 as one that does not exist)."""
    from domains.account.services import AccountService, TokenService

    async def issue(session: Any) -> str:
        user = await AccountService(session).by_username("alice")
        assert user is not None
        _token, secret = await TokenService(session).issue(user, "lean-api-only", ["api"])
        return secret

    secret = forge.db(issue)
    forge.create_repo("alice", "lean-scoped")
    forge.create_repo("alice", "lean-scoped-private", private=True)
    with httpx.Client(base_url=forge.base, timeout=30, auth=("alice", secret)) as client:
        public = client.get("/forge/alice/lean-scoped.git/info/refs", params={"service": "git-upload-pack"})
        assert public.status_code == 403 and b"repo:read" in public.content
        private = client.get("/forge/alice/lean-scoped-private.git/info/refs", params={"service": "git-upload-pack"})
        absent = client.get("/forge/alice/lean-scoped-absent.git/info/refs", params={"service": "git-upload-pack"})
        assert private.status_code == 404
        assert whole(private)[0] == whole(absent)[0] and whole(private)[2] == whole(absent)[2]
        # a wrong token: the auth middleware's 401 with its challenge, not a lean answer
        wrong = client.get("/forge/alice/lean-scoped.git/info/refs", params={"service": "git-upload-pack"},
                           auth=("alice", "rat_not_a_token"))
        assert wrong.status_code == 401 and "basic" in wrong.headers["www-authenticate"].lower()


def test_a_token_with_the_scope_clones_its_private_repository_lean(forge: Forge) -> None:
    forge.create_repo("alice", "lean-mine", private=True)
    work = forge.new_clone("alice", "lean-mine", "alice")
    head = forge.commit(work, "secret")
    forge.git("push", "-q", "origin", "main", cwd=work)
    clone = forge.new_clone("alice", "lean-mine", "alice-ro")
    assert forge.rev(clone, "HEAD") == head
    lean = [e for e in access_lines(forge, "/forge/alice/lean-mine.git/git-upload-pack") if e.get("lean")]
    assert lean and {e["user"] for e in lean} == {"alice"}


def test_a_push_refused_by_policy_changes_no_ref(forge: Forge) -> None:
    """Pushes never take the lean path: a moved tag (immutable by policy) is refused by the
    pre-receive hook and neither the tag nor the branch pushed with it moves."""
    forge.create_repo("alice", "lean-policy")
    work = forge.new_clone("alice", "lean-policy", "alice")
    first = forge.commit(work, "first")
    forge.git("tag", "v1", cwd=work)
    forge.git("push", "-q", "origin", "main", "v1", cwd=work)
    second = forge.commit(work, "second")
    forge.git("tag", "-f", "v1", cwd=work)
    refused = forge.git("push", "--atomic", "-f", "origin", "main", "v1", cwd=work, check=False)
    assert refused.returncode != 0
    remote = forge.git("ls-remote", forge.url("alice", "lean-policy"), cwd=work).stdout
    refs = dict(reversed(line.split("\t")) for line in remote.splitlines())
    assert refs["refs/tags/v1"] == first and refs["refs/heads/main"] == first != second
    with pytest.raises(AssertionError):  # and a read-only token may not push at all
        forge.git("push", "-q", forge.url("alice", "lean-policy", "alice-ro"), "main", cwd=work)
    assert forge.git("ls-remote", forge.url("alice", "lean-policy"), "main", cwd=work).stdout.startswith(first)


def test_corrupt_gzip_body_on_the_lean_path(forge: Forge) -> None:
    forge.create_repo("alice", "lean-gzip")
    headers = {**V2, "Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"}
    with httpx.Client(base_url=forge.base, timeout=30) as client:
        bad = client.post("/forge/alice/lean-gzip.git/git-upload-pack", content=b"\x1f\x8bnot gzip", headers=headers)
        full = client.post("/forge/alice/lean-gzip.git/git-upload-pack?x=1", content=b"\x1f\x8bnot gzip",
                           headers=headers)
    assert bad.status_code == 400 and bad.content.startswith(b"Corrupt gzip body")
    assert whole(bad) == whole(full)


@pytest.mark.parametrize("query", ["", "?x=1"])  # the lean path, the full path
def test_a_declared_body_past_the_limit_is_413_at_once(forge: Forge, query: str) -> None:
    """A Content-Length past the fetch body limit can never pass: refused before any byte is
    read, not after the client has held the connection for the whole body deadline (408)."""
    repo = f"lean-declared{'-full' if query else ''}"
    forge.create_repo("alice", repo)
    host = forge.base.removeprefix("http://")
    name, port = host.rsplit(":", 1)
    request = (f"POST /forge/alice/{repo}.git/git-upload-pack{query} HTTP/1.1\r\nHost: {host}\r\n"
               "Content-Type: application/x-git-upload-pack-request\r\nContent-Length: 1000000000000\r\n"
               "Connection: close\r\n\r\n0000").encode()
    with socket.create_connection((name, int(port)), timeout=30) as sock:
        sock.sendall(request)
        sock.settimeout(20)  # far below the 60 s body deadline: a 408 would not arrive in time
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert answer.endswith(b"Request body exceeds 10485760 bytes.\n")
