"""Local actors' key ids follow the origin the instance serves now (BASE_URL), not the one it had
when the member was created; key ids published before stay resolvable (SQLite and PostgreSQL)."""

from __future__ import annotations

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app import create_app
from app.db import make_sessionmaker
from app.settings import Settings
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from federation.activitypub.core import Federation
from federation.activitypub.signatures import ResolvedKey, SignedMessage, sign_cavage, sign_rfc9421, verify_request
from federation.keys import KeyPair, KeyRegistry

pytestmark = pytest.mark.anyio

OLD = "http://127.0.0.1:8000"
NEW = "http://127.0.0.1:9000"
AS2 = "application/activity+json"


async def _member_on(engine: AsyncEngine, settings: Settings) -> None:
    async with make_sessionmaker(engine, settings)() as session:
        await AccountService(session).signup(SignupInput(username="alice", email="alice@example.org",
                                                         password="correct horse battery staple"))
        await session.commit()


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
async def test_key_ids_follow_the_current_origin(engine: AsyncEngine, settings: Settings, spec: str) -> None:
    old = msgspec.structs.replace(settings, base_url=OLD)
    new = msgspec.structs.replace(settings, base_url=NEW)
    await _member_on(engine, old)
    async with make_sessionmaker(engine, old)() as session:
        stored = (await session.scalars(select(KeyPair.key_id).where(KeyPair.owner_type == "user"))).all()
    assert stored == ["/@alice#main-key"]  # no origin is stored with the key

    async with AsyncTestClient(app=create_app(new), base_url=NEW) as client:
        doc = (await client.get("/@alice", headers={"Accept": AS2})).json()
        assert doc["id"] == f"{NEW}/@alice"
        assert doc["publicKey"] == {"id": f"{NEW}/@alice#main-key", "owner": f"{NEW}/@alice",
                                    "publicKeyPem": doc["publicKey"]["publicKeyPem"]}
        instance = (await client.get("/ap/actors/instance", headers={"Accept": AS2})).json()
        assert instance["publicKey"]["id"] == f"{NEW}/ap/actors/instance#main-key"

        async def peer_resolves(key_id: str, refresh: bool) -> ResolvedKey | None:
            """What a peer does: fetch the key id's document and take the key it publishes."""
            actor = (await client.get(httpx.URL(key_id).path, headers={"Accept": AS2})).json()
            key = actor["publicKey"]
            return ResolvedKey(key["id"], actor["id"], key["publicKeyPem"]) if key["id"] == key_id else None

        async with make_sessionmaker(engine, new)() as session:
            fed = Federation(session, new)
            key_id, key = await fed.signing_key(f"{NEW}/@alice")
            assert key_id == f"{NEW}/@alice#main-key"
            request = httpx.Request("POST", "https://peer.example/inbox", content=b"{}",
                                    headers={"Content-Type": AS2})
            (sign_cavage if spec == "cavage" else sign_rfc9421)(request, key_id, key)
            msg = SignedMessage.build("POST", str(request.url), request.headers.items(), b"{}")
            # A peer verifies it through our actor document, and so do we through our registry.
            assert (await verify_request(msg, peer_resolves)).owner == f"{NEW}/@alice"
            assert (await verify_request(msg, fed.resolve_key)).owner == f"{NEW}/@alice"


async def test_key_ids_published_before_stay_resolvable(engine: AsyncEngine, settings: Settings) -> None:
    """A key stored with an absolute id on an earlier origin (as earlier versions stored them) is
    published under the id derived from the current origin, and still found by its old id."""
    new = msgspec.structs.replace(settings, base_url=NEW)
    old_id = f"{OLD}/ap/actors/blog#main-key"
    async with make_sessionmaker(engine, new)() as session:
        legacy = await KeyRegistry(session, new.secret_key).ensure("actor", "blog", "rsa-2048", old_id)
        fed = Federation(session, new)
        actor = await fed.provision_service("blog")
        doc = await fed.actor_document(actor)
        assert doc["publicKey"]["id"] == f"{NEW}/ap/actors/blog#main-key"
        assert doc["publicKey"]["publicKeyPem"] == legacy.public_pem
        await session.commit()
        for key_id in (f"{NEW}/ap/actors/blog#main-key", old_id):
            found = await fed.resolve_key(key_id, False)
            assert found is not None and found.public_pem == legacy.public_pem
        assert await fed.resolve_key(f"{NEW}/ap/actors/blog#other-key", False) is None
        key_id, _key = await fed.signing_key(f"{NEW}/ap/actors/blog")
        assert key_id == f"{NEW}/ap/actors/blog#main-key"
