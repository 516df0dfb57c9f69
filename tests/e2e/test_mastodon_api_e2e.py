"""The Mastodon client API over real HTTP, driven by Mastodon.py (unmodified, with its default
version check): register an app, consent through the real HTML page with ``oob``, then post,
page the home timeline by its ``Link`` header, favourite, reblog, delete, and read the
notifications a second member produced. Bad paths answer with Mastodon's error shape."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from functools import partialmethod
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from mastodon import Mastodon, MastodonNotFoundError, MastodonUnauthorizedError

from tests.helpers.server import AppServer, app_server

pytestmark = pytest.mark.e2e

OOB = "urn:ietf:wg:oauth:2.0:oob"
SCOPES = ["read", "write", "follow", "push"]
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@pytest.fixture
def server(tmp_path: Path, server_database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppServer]:
    # On a loaded machine (2 shared cores) the start can outlast the helper's 30 s health wait.
    monkeypatch.setattr(AppServer, "start", partialmethod(AppServer.start, timeout=180.0))
    with app_server(tmp_path, database_url=server_database_url) as running:
        running.create_user("alice", PASSWORD)
        running.create_user("bob", PASSWORD)
        yield running


def consent_code(server: AppServer, username: str, authorize_url: str, decision: str = "allow") -> httpx.Response:
    """Sign in through the login form, open the app's authorize URL and answer the consent page."""
    with httpx.Client(base_url=server.base_url, timeout=20) as browser:
        page = browser.get("/account/login")
        token = CSRF.search(page.text)
        assert token
        signed_in = browser.post("/account/login", data={"login": username, "password": PASSWORD,
                                                         "_csrf_token": token.group(1)})
        assert signed_in.status_code == 303, signed_in.text[:300]
        consent = browser.get(authorize_url)
        assert consent.status_code == 200, consent.text[:500]
        assert "Allow <strong>rose-test</strong>" in consent.text
        if "follow" in parse_qs(urlsplit(authorize_url).query)["scope"][0].split():
            assert 'data-scope="follow"' in consent.text  # the legacy scope is accepted, and explained
        form = [(k, html.unescape(v)) for k, v in HIDDEN.findall(consent.text)]
        csrf = CSRF.search(consent.text)
        assert csrf
        body = urlencode([*form, ("_csrf_token", csrf.group(1)), ("decision", decision)])
        return browser.post("/oauth/authorize", content=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})


def sign_in(server: AppServer, username: str, scopes: list[str] = SCOPES, **options: Any) -> Mastodon:
    client_id, client_secret = Mastodon.create_app("rose-test", scopes=scopes, redirect_uris=OOB,
                                                   website="https://example.org", api_base_url=server.base_url)
    app = Mastodon(client_id=client_id, client_secret=client_secret, api_base_url=server.base_url, **options)
    url = app.auth_request_url(redirect_uris=OOB, scopes=scopes, allow_http=True)
    answer = consent_code(server, username, url)
    assert answer.status_code == 200, answer.text[:500]
    code = re.search(r'id="oauth-code">([^<]+)<', answer.text)
    assert code, answer.text[:500]
    app.log_in(code=code.group(1), redirect_uri=OOB, scopes=scopes, allow_http=True)
    return app


def test_mastodon_py_signs_in_posts_pages_and_is_notified(server: AppServer) -> None:
    # Mastodon.py 2.3's default is version_check_mode="none"; "created" (its 1.x default) checks every
    # call against the version the server reports, which is what the version rule is for.
    alice = sign_in(server, "alice", version_check_mode="created")
    assert alice.version_check_mode == "created"
    assert alice.mastodon_major == 4 and alice.mastodon_minor == 3  # "4.3.0 (compatible; Rose Ash …)" parsed
    me = alice.account_verify_credentials()
    assert me.acct == "alice" and me.username == "alice" and isinstance(me.id, str)
    assert me.source.privacy == "public"

    # Posts, then the home timeline page by page through the Link header.
    posted = [alice.status_post(f"note number {i}") for i in range(25)]
    assert posted[0].content == "<p>note number 0</p>" and posted[0].visibility == "public"
    first = alice.timeline_home(limit=20)
    assert [s.id for s in first] == [s.id for s in reversed(posted)][:20]
    second = alice.fetch_next(first)
    assert second is not None
    assert [s.id for s in second] == [s.id for s in reversed(posted)][20:]
    newer = alice.fetch_previous(second)
    assert newer is not None and [s.id for s in newer][-1] == first[-1].id

    # A reply, a content warning, an idempotent retry.
    reply = alice.status_post("replying to myself", in_reply_to_id=posted[0].id, spoiler_text="cw")
    assert reply.in_reply_to_id == posted[0].id and reply.in_reply_to_account_id == me.id
    assert reply.spoiler_text == "cw" and reply.sensitive
    once = alice.status_post("only once", idempotency_key="abc-123")
    again = alice.status_post("only once", idempotency_key="abc-123")
    assert once.id == again.id
    context = alice.status_context(reply.id)
    assert [s.id for s in context.ancestors] == [posted[0].id]
    assert [s.id for s in alice.status_context(posted[0].id).descendants] == [reply.id]

    # A second member: follow, favourite, reblog, mention -> four notifications for alice.
    bob = sign_in(server, "bob")
    rel = bob.account_follow(me.id)
    assert rel.following and rel.id == me.id
    assert bob.account_relationships([me.id])[0].following
    liked = bob.status_favourite(posted[24].id)
    assert liked.favourited and liked.favourites_count == 1
    boosted = bob.status_reblog(posted[24].id)
    assert boosted.reblog.id == posted[24].id and boosted.reblog.reblogged and boosted.content == ""
    bob.status_post("hello @alice")
    kinds = sorted(n.type for n in alice.notifications())
    assert kinds == ["favourite", "follow", "mention", "reblog"]
    favourite = next(n for n in alice.notifications(types=["favourite"]))
    assert favourite.account.acct == "bob" and favourite.status.id == posted[24].id
    # Alice sees the boost counted and bob's boost in bob's home timeline.
    assert alice.status(posted[24].id).reblogs_count == 1
    assert any(s.reblog and s.reblog.id == posted[24].id for s in bob.timeline_home())
    assert bob.status_unreblog(posted[24].id).reblogged is False
    assert bob.status_unfavourite(posted[24].id).favourited is False
    assert not bob.account_unfollow(me.id).following

    # Delete and redraft: the answer carries the text; afterwards the status is gone (404).
    deleted = alice.status_delete(posted[1].id)
    assert deleted.text == "note number 1"
    with pytest.raises(MastodonNotFoundError):
        alice.status(posted[1].id)
    # Bob may not delete alice's post: it is 404 to him, and it stays.
    with pytest.raises(MastodonNotFoundError):
        bob.status_delete(posted[2].id)
    assert alice.status(posted[2].id).id == posted[2].id

    # The app is one of alice's authorised applications on the website.
    assert alice.account_lookup("bob").acct == "bob"
    assert alice.preferences()["posting:default:visibility"] == "public"
    assert alice.custom_emojis() == [] and alice.lists() == [] and alice.filters() == []

    alice.revoke_access_token(allow_http=True)
    with pytest.raises(MastodonUnauthorizedError):
        alice.account_verify_credentials()


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:500]
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


def test_bad_paths_answer_with_mastodons_error_shape(server: AppServer) -> None:
    alice = sign_in(server, "alice")
    reader = sign_in(server, "bob", scopes=["read"])
    base = server.base_url
    token = {"Authorization": f"Bearer {alice.access_token}"}
    read_only = {"Authorization": f"Bearer {reader.access_token}"}
    with httpx.Client(base_url=base, timeout=20) as http:
        _error(http.get("/api/v1/accounts/verify_credentials"), 401)
        _error(http.get("/api/v1/timelines/home", headers={"Authorization": "Bearer ra_at_unknown"}), 401)
        assert "scope" in _error(http.post("/api/v1/statuses", headers=read_only, data={"status": "hi"}), 403)
        assert http.get("/api/v1/timelines/home", headers=read_only).status_code == 200
        _error(http.post("/api/v1/statuses", headers=token, data={"status": "x" * 5001}), 422)
        _error(http.post("/api/v1/statuses", headers=token, data={"status": "hi", "visibility": "loud"}), 422)
        _error(http.get("/api/v1/timelines/home", headers=token, params={"max_id": "not-an-id"}), 400)
        _error(http.get("/api/v1/statuses/00000000-0000-0000-0000-000000000000", headers=token), 404)
        _error(http.post("/api/v1/statuses", headers={**token, "Content-Type": "application/json"},
                         content=b'{"status": '), 400)
        # A direct note to nobody else: invisible to bob, exactly like a missing one, and no reply to it.
        secret = http.post("/api/v1/statuses", headers=token, json={"status": "diary", "visibility": "direct"})
        assert secret.status_code == 200, secret.text
        sid = secret.json()["id"]
        _error(http.get(f"/api/v1/statuses/{sid}", headers=read_only), 404)
        bob_write = sign_in(server, "bob")
        _error(http.post("/api/v1/statuses", headers={"Authorization": f"Bearer {bob_write.access_token}"},
                         data={"status": "sneaky", "in_reply_to_id": sid}), 404)
        assert bob_write.timeline_home() == []  # nothing half-written
        # CORS on the API and the token endpoint, exposing Link.
        pre = http.options("/api/v1/timelines/home", headers={"Origin": "https://phanpy.example",
                                                              "Access-Control-Request-Method": "GET"})
        assert pre.headers["access-control-allow-origin"] == "*"
        assert "Authorization" in pre.headers["access-control-allow-headers"]
        home = http.get("/api/v1/timelines/home", headers=token)
        assert home.headers["access-control-allow-origin"] == "*"
        assert "Link" in home.headers["access-control-expose-headers"]
        assert http.post("/oauth/revoke", data={}).headers["access-control-allow-origin"] == "*"
        meta = http.get("/.well-known/oauth-authorization-server").json()
        assert meta["code_challenge_methods_supported"] == ["S256"] and "follow" in meta["scopes_supported"]
        # No password grant (RFC 9700 §2.4).
        denied = http.post("/oauth/token", json={"grant_type": "password", "username": "alice", "password": PASSWORD,
                                                 "client_id": alice.client_id, "client_secret": alice.client_secret})
        assert denied.status_code == 400 and denied.json()["error"] == "unsupported_grant_type"
