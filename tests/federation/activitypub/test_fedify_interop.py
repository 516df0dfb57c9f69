"""Fedify's signature module (npm, pinned in tests/interop/fedify/package.json) as an oracle:
Fedify verifies our signatures and we verify Fedify's, for draft-cavage and RFC 9421.

Install: ``cd tests/interop/fedify && npm install --no-package-lock`` (node_modules is ignored).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from federation.activitypub.signatures import (
    ResolvedKey,
    SignatureError,
    SignedMessage,
    dump_private_key,
    sign_cavage,
    sign_rfc9421,
    verify_request,
)
from tests.conftest import IN_CI, require_tool

pytestmark = pytest.mark.anyio

ORACLE = Path(__file__).resolve().parents[2] / "interop" / "fedify"
ACTOR = "https://a.example/@alice"
KEY_ID = f"{ACTOR}#main-key"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
BODY = json.dumps({"id": "https://a.example/activities/1", "type": "Follow", "actor": ACTOR,
                   "object": "https://b.example/@bob"})
SPECS = {"cavage": "draft-cavage-http-signatures-12", "rfc9421": "rfc9421"}


def _node(script: str, payload: dict[str, Any]) -> dict[str, Any]:
    node = require_tool("node")
    if not (ORACLE / "node_modules" / "@fedify" / "fedify").exists():
        if IN_CI:
            pytest.fail("run `npm install --no-package-lock` in tests/interop/fedify")
        pytest.skip("Fedify is not installed (npm install --no-package-lock in tests/interop/fedify)")
    done = subprocess.run([node, script], input=json.dumps(payload), capture_output=True, text=True, cwd=ORACLE,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _actor_doc() -> dict[str, Any]:
    return {"@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
            "id": ACTOR, "type": "Person", "preferredUsername": "alice", "inbox": f"{ACTOR}/inbox",
            "publicKey": {"id": KEY_ID, "owner": ACTOR, "publicKeyPem": PUBLIC_PEM}}


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_fedify_verifies_our_signatures(spec: str, method: str) -> None:
    url = "https://b.example/@bob/inbox" if method == "POST" else "https://b.example/@bob/outbox"
    req = httpx.Request(method, url, content=BODY.encode() if method == "POST" else None,
                        headers={"Content-Type": "application/activity+json", "Accept": "application/activity+json"})
    (sign_cavage if spec == "cavage" else sign_rfc9421)(req, KEY_ID, KEY)
    headers = {k: v for k, v in req.headers.items() if k.lower() != "content-length"}
    result = _node("verify.mjs", {"method": method, "url": url, "headers": headers,
                                  "body": BODY if method == "POST" else None, "documents": {ACTOR: _actor_doc()}})
    assert result["keyId"] == KEY_ID
    # and a tampered body is refused by Fedify too
    if method == "POST":
        result = _node("verify.mjs", {"method": method, "url": url, "headers": headers, "body": BODY + " ",
                                      "documents": {ACTOR: _actor_doc()}})
        assert result["keyId"] is None


def test_fedify_cavage_ignores_the_query_so_the_double_knock_takes_over() -> None:
    """Fedify 2.3.6 verifies a cavage ``(request-target)`` as the path alone; we sign it with the
    query (the draft, Mastodon). So a signed GET with a query is refused by Fedify under cavage
    — and accepted under RFC 9421, which is what our 401 retry sends next."""
    url = "https://b.example/@bob/outbox?page=1"
    results = {}
    for spec, signer in (("cavage", sign_cavage), ("rfc9421", sign_rfc9421)):
        req = httpx.Request("GET", url, headers={"Accept": "application/activity+json"})
        signer(req, KEY_ID, KEY)
        results[spec] = _node("verify.mjs", {"method": "GET", "url": url, "headers": dict(req.headers.items()),
                                             "body": None, "documents": {ACTOR: _actor_doc()}})["keyId"]
    assert results == {"cavage": None, "rfc9421": KEY_ID}


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_we_verify_fedify_signatures(spec: str, method: str) -> None:
    url = "https://b.example/@bob/inbox?x=1" if method == "POST" else "https://b.example/@bob/outbox?page=1"
    signed = _node("sign.mjs", {
        "method": method, "url": url, "body": BODY if method == "POST" else None,
        "headers": {"Content-Type": "application/activity+json", "Accept": "application/activity+json"},
        "privateKeyPem": dump_private_key(KEY).decode(), "keyType": "rsa", "keyId": KEY_ID, "spec": SPECS[spec]})
    headers = signed["headers"]
    assert ("signature-input" in headers) == (spec == "rfc9421")

    async def resolve(key_id: str, refresh: bool) -> ResolvedKey | None:
        return ResolvedKey(KEY_ID, ACTOR, PUBLIC_PEM) if key_id == KEY_ID else None

    headers.setdefault("host", "b.example")
    body = BODY.encode() if method == "POST" else b""
    result = await verify_request(SignedMessage.build(method, url, headers, body), resolve)
    assert result.spec == spec and result.owner == ACTOR
    if method == "POST":
        with pytest.raises(SignatureError):
            await verify_request(SignedMessage.build(method, url, headers, body + b" "), resolve)
