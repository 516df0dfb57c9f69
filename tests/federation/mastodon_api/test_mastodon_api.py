"""The Mastodon client API in process: app registration (JSON and form), sign-in with PKCE and a
JSON token request (as Elk and Phanpy do), the entity shapes against the design note's field
lists (../shared/design/mastodon-api.md §3 and §4), scopes, paging and errors."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.helpers.web import signup

pytestmark = pytest.mark.anyio

CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
REDIRECT = "https://app.example/callback"

# The design note's lists: the fields clients dereference without guarding.
ACCOUNT = {"id", "username", "acct", "url", "uri", "display_name", "note", "avatar", "avatar_static", "header",
           "header_static", "locked", "bot", "group", "discoverable", "created_at", "last_status_at",
           "statuses_count", "followers_count", "following_count", "fields", "emojis"}
SOURCE = {"privacy", "sensitive", "language", "note", "fields", "follow_requests_count"}
STATUS = {"id", "uri", "url", "created_at", "account", "content", "visibility", "sensitive", "spoiler_text",
          "media_attachments", "mentions", "tags", "emojis", "reblogs_count", "favourites_count", "replies_count",
          "in_reply_to_id", "in_reply_to_account_id", "reblog", "poll", "card", "language", "edited_at",
          "favourited", "reblogged", "muted", "bookmarked", "pinned"}
NOTIFICATION = {"id", "type", "created_at", "account", "status"}
RELATIONSHIP = {"id", "following", "showing_reblogs", "notifying", "followed_by", "blocking", "blocked_by",
                "muting", "muting_notifications", "requested", "requested_by", "domain_blocking", "endorsed",
                "note", "languages"}
INSTANCE_V2 = {"domain", "title", "version", "source_url", "description", "usage", "thumbnail", "languages",
               "configuration", "registrations", "contact", "rules", "api_versions"}
INSTANCE_V1 = {"uri", "title", "description", "short_description", "email", "version", "urls", "stats",
               "thumbnail", "languages", "registrations", "configuration", "contact_account", "rules"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def register_app(client: Any, scopes: str = "read write follow push", *, as_form: bool = False) -> dict[str, Any]:
    body = {"client_name": "Elkish", "redirect_uris": REDIRECT, "scopes": scopes, "website": "https://app.example"}
    answer = await (client.post("/api/v1/apps", data=body) if as_form else client.post("/api/v1/apps", json=body))
    assert answer.status_code == 200, answer.text
    app: dict[str, Any] = answer.json()
    return app


async def sign_in(client: Any, username: str, scopes: str = "read write follow push") -> str:
    """Sign up ``username`` in the client's cookie jar, then authorise an app with PKCE and
    exchange the code with a JSON body (Elk's way); the access token."""
    client.cookies.clear()
    assert (await signup(client, username)).status_code == 303
    app = await register_app(client, scopes)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"client_id": app["client_id"], "redirect_uri": REDIRECT, "response_type": "code",
                       "scope": scopes, "code_challenge": challenge, "code_challenge_method": "S256",
                       "force_login": "false", "lang": "en"})
    consent = await client.get(f"/oauth/authorize?{query}")
    assert consent.status_code == 200, consent.text[:300]
    form = [(k, html.unescape(v)) for k, v in HIDDEN.findall(consent.text)]
    csrf = CSRF.search(consent.text)
    assert csrf
    answer = await client.post("/oauth/authorize", content=urlencode(
        [*form, ("_csrf_token", csrf.group(1)), ("decision", "allow")]),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 303, answer.text[:300]
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    token = await client.post("/oauth/token", json={
        "grant_type": "authorization_code", "code": code, "client_id": app["client_id"],
        "client_secret": app["client_secret"], "redirect_uri": REDIRECT, "code_verifier": verifier, "scope": scopes})
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "Bearer" and body["scope"] == scopes and isinstance(body["created_at"], int)
    client.cookies.clear()  # the API never honours the cookie anyway
    access: str = body["access_token"]
    return access


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_account(account: dict[str, Any]) -> None:
    assert set(account) >= ACCOUNT, ACCOUNT - set(account)
    assert isinstance(account["id"], str) and account["avatar"].startswith("http")
    assert account["header"].startswith("http") and ISO.match(account["created_at"])
    assert isinstance(account["fields"], list) and isinstance(account["emojis"], list)


def assert_status(status: dict[str, Any]) -> None:
    assert set(status) >= STATUS, STATUS - set(status)
    assert isinstance(status["id"], str) and ISO.match(status["created_at"])
    assert_account(status["account"])
    for name in ("media_attachments", "mentions", "tags", "emojis"):
        assert isinstance(status[name], list)


async def test_instance_and_discovery_shapes(client: Any) -> None:
    v2 = (await client.get("/api/v2/instance")).json()
    assert set(v2) >= INSTANCE_V2
    assert v2["version"] == "4.3.0 (compatible; Rose Ash 0.1)"
    assert v2["domain"] == "127.0.0.1:8000" and v2["configuration"]["statuses"]["max_characters"] == 5000
    assert "streaming" not in v2["configuration"]["urls"]  # no streaming URL until streaming exists
    for key in ("max_characters", "max_media_attachments", "characters_reserved_per_url"):
        assert key in v2["configuration"]["statuses"]
    assert v2["configuration"]["translation"] == {"enabled": False}
    assert {"enabled", "approval_required", "message"} <= set(v2["registrations"])
    assert v2["usage"]["users"]["active_month"] == 0 and v2["api_versions"]["mastodon"] == 2
    v1 = (await client.get("/api/v1/instance")).json()
    assert set(v1) >= INSTANCE_V1 and v1["version"] == v2["version"] and "streaming_api" not in v1["urls"]
    assert re.fullmatch(r"[^<>\s]+@[^<>\s]+", v1["email"]) and v2["contact"]["email"] == v1["email"]  # bare
    nodeinfo = (await client.get("/nodeinfo/2.0")).json()
    assert nodeinfo["software"]["name"] == "rose-ash"  # unchanged: Phanpy reads it as not-Mastodon
    meta = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"read", "write", "follow", "push", "read:statuses"} <= set(meta["scopes_supported"])


async def test_apps_register_from_json_and_forms(client: Any) -> None:
    from_json = await register_app(client)
    assert set(from_json) >= {"id", "name", "website", "redirect_uri", "redirect_uris", "client_id",
                              "client_secret", "scopes"}
    assert from_json["scopes"] == ["read", "write", "follow", "push"] and from_json["redirect_uris"] == [REDIRECT]
    from_form = await register_app(client, "read", as_form=True)
    assert from_form["scopes"] == ["read"] and from_form["client_id"] != from_json["client_id"]
    bad = await client.post("/api/v1/apps", json={"client_name": "x", "redirect_uris": "javascript:alert(1)"})
    assert bad.status_code == 422 and set(bad.json()) == {"error"}
    unknown = await client.post("/api/v1/apps", json={"client_name": "x", "redirect_uris": REDIRECT,
                                                      "scopes": "read admin:write"})
    assert unknown.status_code == 422 and "admin:write" in unknown.json()["error"]
    native = await client.post("/api/v1/apps", data={"client_name": "Tusky",
                                                     "redirect_uris": "oauth2redirect://com.keylesspalace.tusky/"})
    assert native.status_code == 200, native.text


async def test_app_registration_refuses_os_handlers_and_follows_the_admins_switch(
        client: Any, db_session: Any) -> None:
    # A bare OS handler scheme (no ``://``) would hand the code to a local program, not an app.
    for uri in ("search-ms:query=x", "ms-msdt:/id PCWDiagnostic", "intent:#Intent;end", "chrome://settings"):
        refused = await client.post("/api/v1/apps", json={"client_name": "x", "redirect_uris": uri})
        assert refused.status_code == 422 and set(refused.json()) == {"error"}, uri
    from federation.oauth.store import OAuthStore

    await OAuthStore(db_session).set_setting("dynamic_registration", "off")
    await db_session.commit()
    closed = await client.post("/api/v1/apps", json={"client_name": "Elkish", "redirect_uris": REDIRECT})
    assert closed.status_code == 403 and closed.json() == {"error": "This server does not accept new applications."}


async def test_entities_match_the_design_note(client: Any) -> None:
    alice = await sign_in(client, "alice")
    bob = await sign_in(client, "bob")
    me = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(alice))).json()
    assert_account(me)
    assert set(me["source"]) >= SOURCE and me["acct"] == "alice" and me["last_status_at"] is None
    posted = await client.post("/api/v1/statuses", headers=bearer(alice), json={"status": "hello world"})
    assert posted.status_code == 200, posted.text
    status = posted.json()
    assert_status(status)
    assert status["content"] == "<p>hello world</p>" and status["reblog"] is None and status["in_reply_to_id"] is None
    assert status["account"]["statuses_count"] == 1
    bob_me = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(bob))).json()
    relationship = (await client.post(f"/api/v1/accounts/{me['id']}/follow", headers=bearer(bob))).json()
    assert set(relationship) >= RELATIONSHIP and relationship["following"] is True
    mention = await client.post("/api/v1/statuses", headers=bearer(bob), data={"status": "hi @alice"})
    assert mention.status_code == 200 and mention.json()["mentions"][0]["acct"] == "alice"
    notes = (await client.get("/api/v1/notifications", headers=bearer(alice))).json()
    assert [n["type"] for n in notes] == ["mention", "follow"]
    for n in notes:
        assert set(n) >= NOTIFICATION and ISO.match(n["created_at"])
        assert n["account"]["id"] == bob_me["id"]
    assert_status(notes[0]["status"])
    assert notes[1]["status"] is None
    rels = (await client.get(f"/api/v1/accounts/relationships?id[]={bob_me['id']}", headers=bearer(alice))).json()
    assert len(rels) == 1 and rels[0]["followed_by"] is True and rels[0]["following"] is False
    looked = (await client.get("/api/v1/accounts/lookup", params={"acct": "alice"}, headers=bearer(bob))).json()
    assert looked["id"] == me["id"]
    by_id = (await client.get(f"/api/v1/accounts/{me['id']}/statuses", headers=bearer(bob))).json()
    assert [s["id"] for s in by_id] == [status["id"]]
    # The web hub shows the same act: bob's mention is on alice's notifications page there too.
    stubs = {"/api/v1/custom_emojis": [], "/api/v1/lists": [], "/api/v2/filters": [], "/api/v1/filters": [],
             "/api/v1/followed_tags": [], "/api/v1/announcements": [], "/api/v1/bookmarks": [],
             "/api/v1/favourites": [], "/api/v1/trends/tags": [], "/api/v1/markers": {},
             "/api/v2/search?q=x": {"accounts": [], "statuses": [], "hashtags": []}}
    for path, empty in stubs.items():
        answer = await client.get(path, headers=bearer(alice))
        assert answer.status_code == 200 and answer.json() == empty, path


async def test_home_timeline_pages_by_link_header(client: Any) -> None:
    alice = await sign_in(client, "alice")
    ids = []
    for i in range(7):
        answer = await client.post("/api/v1/statuses", headers=bearer(alice), json={"status": f"n{i}"})
        ids.append(answer.json()["id"])
    newest = ids[::-1]
    first = await client.get("/api/v1/timelines/home", params={"limit": 3}, headers=bearer(alice))
    assert [s["id"] for s in first.json()] == newest[:3]
    link = first.headers["link"]
    nxt = re.search(r'<([^>]+)>; rel="next"', link)
    prev = re.search(r'<([^>]+)>; rel="prev"', link)
    assert nxt and prev and "limit=3" in nxt.group(1) and f"max_id={newest[2]}" in nxt.group(1)
    second = await client.get(nxt.group(1).removeprefix("http://127.0.0.1:8000"), headers=bearer(alice))
    assert [s["id"] for s in second.json()] == newest[3:6]
    # min_id: the statuses right after one, shown newest first; since_id: the newest after one.
    after = await client.get("/api/v1/timelines/home", params={"min_id": ids[1], "limit": 2}, headers=bearer(alice))
    assert [s["id"] for s in after.json()] == [ids[3], ids[2]]
    since = await client.get("/api/v1/timelines/home", params={"since_id": ids[1], "limit": 2},
                             headers=bearer(alice))
    assert [s["id"] for s in since.json()] == [ids[6], ids[5]]
    capped = await client.get("/api/v1/timelines/home", params={"limit": 1000}, headers=bearer(alice))
    assert len(capped.json()) == 7
    empty = await client.get("/api/v1/timelines/home", params={"max_id": ids[0]}, headers=bearer(alice))
    assert empty.json() == [] and "link" not in empty.headers
    assert (await client.get("/api/v1/timelines/home", params={"limit": "many"},
                             headers=bearer(alice))).status_code == 400


async def test_scopes_bound_what_a_token_reaches(client: Any) -> None:
    reader = await sign_in(client, "alice", "read")
    assert (await client.get("/api/v1/timelines/home", headers=bearer(reader))).status_code == 200
    refused = await client.post("/api/v1/statuses", headers=bearer(reader), json={"status": "hi"})
    assert refused.status_code == 403 and set(refused.json()) == {"error"}
    follower = await sign_in(client, "bob", "follow")  # the legacy scope: follows, blocks and mutes only
    alice_id = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(reader))).json()["id"]
    assert (await client.post(f"/api/v1/accounts/{alice_id}/follow", headers=bearer(follower))).status_code == 200
    assert (await client.get("/api/v1/timelines/home", headers=bearer(follower))).status_code == 403
    assert (await client.get("/social/", headers=bearer(follower))).status_code == 303  # never the website
    # Revocation (RFC 7009) with the app's own credentials, JSON body as Elk sends it.
    missing = await client.get("/api/v1/accounts/verify_credentials")
    assert missing.status_code == 401 and set(missing.json()) == {"error"}


async def test_app_appears_in_the_members_authorised_applications(client: Any) -> None:
    await sign_in(client, "alice")
    client.cookies.clear()
    from tests.helpers.web import login

    assert (await login(client, "alice")).status_code == 303
    page = await client.get("/account/settings/applications")
    assert page.status_code == 200 and "Elkish" in page.text
