"""OAuth access tokens work for git over HTTP, as personal access tokens do, within their scopes."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.conftest import require_tool
from tests.federation.oauth.test_e2e_interop import create_client, signed_in_browser
from tests.helpers.server import AppServer, app_server

pytestmark = pytest.mark.e2e


def oauth_token(server: AppServer, browser: httpx.Client, rp: dict[str, Any], redirect_uri: str,
                scope: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": rp["client_id"], "redirect_uri": redirect_uri,
                       "scope": scope, "state": "s", "code_challenge": challenge, "code_challenge_method": "S256"})
    answer = browser.get(f"/oauth/authorize?{query}")
    assert answer.status_code == 302, answer.text[:300]
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    tokens = httpx.post(f"{server.base_url}/oauth/token", auth=(rp["client_id"], rp["client_secret"]), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    token: str = tokens.json()["access_token"]
    return token


def git(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ROSE_ASH_"))}
    env.update({"HOME": str(work), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
                "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.org",
                "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.org"})
    result = subprocess.run(["git", *args], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_git_clone_and_push_with_oauth_tokens(tmp_path: Path, server_database_url: str | None) -> None:
    require_tool("git")
    with app_server(tmp_path, database_url=server_database_url) as server:
        browser = signed_in_browser(server, "alice")
        redirect_uri = "http://127.0.0.1:9/cb"
        rp = create_client(server, "--name", "Git helper", "--redirect-uri", redirect_uri, "--first-party",
                           "--scope", "openid api repo:read repo:write")
        writer = oauth_token(server, browser, rp, redirect_uri, "api repo:write")
        reader = oauth_token(server, browser, rp, redirect_uri, "repo:read")
        created = httpx.post(f"{server.base_url}/api/v1/user/repos", json={"name": "demo", "private": True},
                             headers={"Authorization": f"Bearer {writer}"})
        assert created.status_code == 201, created.text
        host = server.base_url.removeprefix("http://")

        work = tmp_path / "work"
        work.mkdir()
        git(work, "init", "-q", "-b", "main", "repo")
        (work / "repo" / "README").write_text("hello\n")
        git(work / "repo", "add", "README")
        git(work / "repo", "commit", "-qm", "first")
        git(work / "repo", "push", "-q", f"http://alice:{writer}@{host}/forge/alice/demo.git", "main")

        git(work, "clone", "-q", f"http://alice:{reader}@{host}/forge/alice/demo.git", "copy")
        assert (work / "copy" / "README").read_text() == "hello\n"
        (work / "copy" / "MORE").write_text("more\n")
        git(work / "copy", "add", "MORE")
        git(work / "copy", "commit", "-qm", "second")
        refused = git(work / "copy", "push", "-q", "origin", "main", check=False)
        assert refused.returncode != 0  # repo:read cannot push
        bad = git(work, "clone", "-q", f"http://alice:roa_not-a-token@{host}/forge/alice/demo.git", "nope",
                  check=False)
        assert bad.returncode != 0
        browser.close()
