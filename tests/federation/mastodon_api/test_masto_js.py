"""masto.js (npm ``masto``, pinned in tests/interop/masto), unmodified, against a real server
process (`rose-ash run`) on both databases: instance, verify credentials, statuses posted with a
JSON body, a favourite, the home timeline through its Link-header paginator, relationships, and
the account side (follow, mute, followers, mutes, update_credentials as multipart)."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.conftest import IN_CI, require_tool
from tests.federation.oauth.test_e2e_interop import signed_in_browser
from tests.helpers.server import AppServer, app_server

pytestmark = pytest.mark.e2e
INTEROP_DIR = Path(__file__).resolve().parents[2] / "interop" / "masto"
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
REDIRECT = "http://127.0.0.1:9/callback"
SCOPES = "read write follow"


def mastodon_token(server: AppServer, username: str) -> str:
    """Register an app and sign ``username`` in through the real consent page (code flow)."""
    browser = signed_in_browser(server, username)
    app = browser.post("/api/v1/apps", json={"client_name": "masto.js", "redirect_uris": REDIRECT,
                                             "scopes": SCOPES}).json()
    query = urlencode({"client_id": app["client_id"], "redirect_uri": REDIRECT, "response_type": "code",
                       "scope": SCOPES})
    consent = browser.get(f"/oauth/authorize?{query}")
    assert consent.status_code == 200, consent.text[:300]
    csrf = CSRF.search(consent.text)
    assert csrf
    form = [(k, html.unescape(v)) for k, v in HIDDEN.findall(consent.text)]
    answer = browser.post("/oauth/authorize", content=urlencode(
        [*form, ("_csrf_token", csrf.group(1)), ("decision", "allow")]),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 303, answer.text[:300]
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    token = httpx.post(f"{server.base_url}/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "client_id": app["client_id"],
        "client_secret": app["client_secret"], "redirect_uri": REDIRECT})
    assert token.status_code == 200, token.text
    browser.close()
    access: str = token.json()["access_token"]
    return access


def test_masto_js_drives_the_api(tmp_path: Path, server_database_url: str | None) -> None:
    node = require_tool("node")
    if not (INTEROP_DIR / "node_modules" / "masto").exists():
        message = f"masto is not installed: cd {INTEROP_DIR} && npm install --no-package-lock"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with app_server(tmp_path, database_url=server_database_url) as server:
        alice = mastodon_token(server, "alice")
        bob = mastodon_token(server, "bob")
        bob_id = httpx.get(f"{server.base_url}/api/v1/accounts/verify_credentials",
                           headers={"Authorization": f"Bearer {bob}"}).json()["id"]
        config = {"url": server.base_url, "token": alice, "other": bob_id}
        run = subprocess.run([node, "client.mjs", json.dumps(config)], cwd=INTEROP_DIR, capture_output=True,
                             text=True, timeout=180)
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{server.log_tail()}"
        report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["instance"]["version"] == "4.3.0 (compatible; Rose Ash 0.1)"
    assert report["instance"]["domain"] == report["instance"]["uri"] == server.base_url.split("://", 1)[1]
    assert report["instance"]["maxCharacters"] == 5000
    assert report["me"]["acct"] == "alice"
    assert {"privacy", "sensitive", "note", "fields"} <= set(report["me"]["source"])
    posted = report["posted"]
    assert [p["content"] for p in posted] == [f"<p>from masto.js {i}</p>" for i in range(5)]
    assert {p["visibility"] for p in posted} == {"public"}
    assert report["favourite"] == {"id": posted[0]["id"], "favourited": True, "favouritesCount": 1}
    # Five statuses, two a page: the paginator walked the Link header to the end, newest first. The
    # short last page carries no rel="next" (federation.mastodon.params.link_header, as Mastodon),
    # so masto.js stops there instead of asking once more for an empty page.
    assert report["homePages"] == [[posted[4]["id"], posted[3]["id"]], [posted[2]["id"], posted[1]["id"]],
                                   [posted[0]["id"]]]
    (rel,) = report["relationships"]
    assert rel["id"] == bob_id and rel["following"] is False and rel["muting"] is False
    assert {"blockedBy", "followedBy", "mutingNotifications", "requested", "requestedBy", "showingReblogs",
            "domainBlocking", "endorsed", "notifying", "note"} <= set(rel["fields"])
    assert report["follow"] == {"following": True, "muting": True, "mutingNotifications": False}
    assert report["followersOfOther"] == ["alice"]
    assert report["mutes"] == [bob_id]
    assert report["updated"] == {"displayName": "Masto Alice", "note": "via masto.js"}
    assert report["missing"]["status"] == 404 and report["missing"]["message"] == "Record not found"
