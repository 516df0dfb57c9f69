"""Against a real server process (`rose-ash run`): an independent strict RP (oauth4webapi under Node)
and authlib's Python client complete discovery, code + PKCE, ID-token validation, refresh rotation,
introspection and revocation; OAuth access tokens work on /api/v1/user with scope ``api`` only."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx
import pytest

from tests.conftest import IN_CI, require_tool
from tests.federation.oauth.helpers import consent_form
from tests.helpers.server import AppServer, app_server

pytestmark = pytest.mark.e2e
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
INTEROP_DIR = Path(__file__).resolve().parents[2] / "interop" / "oauth"
PASSWORD = "correct horse battery staple"


def signed_in_browser(server: AppServer, username: str) -> httpx.Client:
    server.create_user(username, PASSWORD)
    browser = httpx.Client(base_url=server.base_url, timeout=15)
    page = browser.get("/account/login")
    match = CSRF.search(page.text)
    assert match
    signed_in = browser.post("/account/login", data={"login": username, "password": PASSWORD,
                                                     "_csrf_token": match.group(1)})
    assert signed_in.status_code == 303, signed_in.text[:300]
    return browser


def create_client(server: AppServer, *args: str) -> dict[str, Any]:
    result = server.cli("oauth", "create-client", *args)
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["client_id"]
    return data


def test_oauth4webapi_strict_client(tmp_path: Path, server_database_url: str | None) -> None:
    node = require_tool("node")
    if not (INTEROP_DIR / "node_modules" / "oauth4webapi").exists():
        message = f"oauth4webapi is not installed: cd {INTEROP_DIR} && npm install --no-package-lock"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with app_server(tmp_path, database_url=server_database_url) as server:
        browser = signed_in_browser(server, "alice")
        redirect_uri = "http://127.0.0.1:9/callback"
        rp = create_client(server, "--name", "Node RP", "--redirect-uri", redirect_uri, "--first-party",
                           "--scope", "openid profile email api")
        assert rp["client_secret"].startswith("ros_")
        cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar)
        config = {"issuer": server.base_url, "client_id": rp["client_id"], "client_secret": rp["client_secret"],
                  "redirect_uri": redirect_uri, "cookie": cookie}
        run = subprocess.run([node, "rp.mjs", json.dumps(config)], cwd=INTEROP_DIR, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{server.log_tail()}"
        report = json.loads(run.stdout.strip().splitlines()[-1])
        assert report["discovery"] == server.base_url
        assert report["authorize"]["iss"] == server.base_url
        assert report["id_token"]["aud"] == rp["client_id"] and report["id_token"]["nonce_ok"]
        assert report["userinfo"] == {"preferred_username": "alice", "email": "alice@example.org"}
        assert report["refresh"]["rotated"] and report["reuse"] == "invalid_grant"
        assert report["introspection"] == {"active": True, "username": "alice", "client_id": rp["client_id"]}
        assert report["revocation"] == {"active_after": False}
        api = httpx.get(f"{server.base_url}/api/v1/user",
                        headers={"Authorization": f"Bearer {report['access_token']}"})
        assert api.status_code == 401  # revoked with its refresh token
        browser.close()


def test_authlib_client_and_api_scopes(tmp_path: Path, server_database_url: str | None) -> None:
    from authlib.integrations.httpx_client import OAuth2Client
    from authlib.oauth2.rfc7636 import create_s256_code_challenge  # noqa: F401  (authlib computes it)
    from joserfc import jwt
    from joserfc.jwk import KeySet

    with app_server(tmp_path, database_url=server_database_url) as server:
        browser = signed_in_browser(server, "bob")
        redirect_uri = "http://127.0.0.1:9/cb"
        rp = create_client(server, "--name", "Python RP", "--redirect-uri", redirect_uri,
                           "--scope", "openid profile email api repo:read")
        meta = httpx.get(f"{server.base_url}/.well-known/openid-configuration").json()
        client = OAuth2Client(rp["client_id"], rp["client_secret"], scope="openid profile api",
                              redirect_uri=redirect_uri, code_challenge_method="S256",
                              token_endpoint_auth_method="client_secret_basic")
        verifier = "v" * 20 + "-authlib-python-client-verifier-0123456789"
        url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                                     nonce="python-nonce")
        consent = browser.get(url)
        assert consent.status_code == 200 and "Python RP" in consent.text
        assert "Use the JSON API as you" in consent.text
        form = consent_form(consent)
        assert form is not None and form.method == "post"
        # Exactly what the browser sends on Allow: the form's own fields (CSRF included), its action.
        approved = browser.post(urljoin(str(consent.url), form.action),
                                content=urlencode(form.submission(("decision", "allow"))),
                                headers={"content-type": "application/x-www-form-urlencoded"})
        assert approved.status_code == 303
        callback = approved.headers["location"]
        assert callback.startswith(redirect_uri) and f"state={state}" in callback
        token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
        assert token["token_type"] == "Bearer" and token["refresh_token"]
        keys = KeySet.import_key_set(httpx.get(meta["jwks_uri"]).json())
        claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
        assert claims["iss"] == server.base_url and claims["aud"] == rp["client_id"]
        assert claims["nonce"] == "python-nonce" and claims["preferred_username"] == "bob"

        # The access token works where personal access tokens do, within its scopes.
        api = httpx.get(f"{server.base_url}/api/v1/user", headers={"Authorization": f"Bearer {token['access_token']}"})
        assert api.status_code == 200 and api.json()["username"] == "bob"

        refreshed = client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
        assert refreshed["refresh_token"] != token["refresh_token"]
        narrowed = client.refresh_token(meta["token_endpoint"], refresh_token=refreshed["refresh_token"],
                                        scope="openid profile")
        no_api = httpx.get(f"{server.base_url}/api/v1/user",
                           headers={"Authorization": f"Bearer {narrowed['access_token']}"})
        assert no_api.status_code == 403

        introspected = httpx.post(meta["introspection_endpoint"], data={"token": narrowed["access_token"]},
                                  auth=(rp["client_id"], rp["client_secret"])).json()
        assert introspected["active"] is True and introspected["scope"] == "openid profile"
        revoked = client.revoke_token(meta["revocation_endpoint"], token=narrowed["access_token"],
                                      token_type_hint="access_token")
        assert revoked.status_code == 200
        gone = httpx.post(meta["introspection_endpoint"], data={"token": narrowed["access_token"]},
                          auth=(rp["client_id"], rp["client_secret"])).json()
        assert gone == {"active": False}

        # The account page lists the app; revoking it kills the remaining refresh token.
        apps = browser.get("/account/settings/applications")
        assert apps.status_code == 200 and "Python RP" in apps.text
        action = re.search(r'action="(/account/settings/applications/[^"]+/revoke)"', apps.text)
        assert action
        # Revoking asks first: without JavaScript the button opens a confirmation page whose form posts.
        confirm = browser.get(action.group(1))
        assert confirm.status_code == 200 and "Cancel</a>" in confirm.text
        csrf = CSRF.search(confirm.text)
        assert csrf
        assert browser.post(action.group(1), data={"_csrf_token": csrf.group(1)}).status_code == 303
        dead = httpx.post(meta["token_endpoint"], auth=(rp["client_id"], rp["client_secret"]), data={
            "grant_type": "refresh_token", "refresh_token": narrowed["refresh_token"]})
        assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
        browser.close()
