"""A profile edit goes to the member's followers as Update(Person) (federation/activitypub/outbox.py
``Outbox.update_actor``), through the delivery jobs: from ``update_credentials`` and from the web
profile form, one Update per edit carrying the final document (name, bio, avatar, locked), none
when nothing others see changed, none recorded for a member nobody follows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import Activity, Actor, Delivery, Follow
from tests.federation.mastodon_api.test_accounts import me_of, png_with_exif
from tests.federation.mastodon_api.test_mastodon_api import bearer, sign_in
from tests.helpers.web import login, post_form

pytestmark = pytest.mark.anyio

RITA = "https://remote.example/users/rita"


async def updates(session: AsyncSession, actor: str) -> list[Activity]:
    session.expire_all()
    return list((await session.scalars(select(Activity).where(
        Activity.direction == "out", Activity.type == "Update", Activity.actor_uri == actor,
        Activity.object_id == actor).order_by(Activity.created_at))).all())


async def test_profile_edits_reach_followers_as_one_update_each(client: Any, db_session: AsyncSession) -> None:
    alice = await sign_in(client, "alice")
    me = await me_of(client, alice)
    # Nobody follows alice yet: an edit records no Update at all.
    assert (await client.patch("/api/v1/accounts/update_credentials", headers=bearer(alice),
                               data={"display_name": "Alone"})).status_code == 200
    assert await updates(db_session, me["uri"]) == []
    db_session.add(Actor(uri=RITA, local=False, type="Person", username="rita", domain="remote.example", name="Rita",
                         inbox=f"{RITA}/inbox", shared_inbox="https://remote.example/inbox",
                         fetched_at=datetime.now(UTC)))
    db_session.add(Follow(follower=RITA, followee=me["uri"], state="accepted",
                          activity_id="https://remote.example/follows/1"))
    await db_session.commit()

    # Name, bio and avatar in one request: one Update, with all three (the avatar is set after
    # the account hook recorded the Update for the name, so the queued one was refreshed).
    answer = await client.patch("/api/v1/accounts/update_credentials", headers=bearer(alice), data={
        "display_name": "Alice Liddell", "note": "Down the hole"},
        files={"avatar": ("me.png", png_with_exif(), "image/png")})
    assert answer.status_code == 200, answer.text
    (update,) = await updates(db_session, me["uri"])
    person = update.raw["object"]
    assert update.raw["actor"] == me["uri"] and update.raw["cc"] == [f"{me['uri']}/followers"]
    assert person["id"] == me["uri"] and person["type"] == "Person"
    assert person["name"] == "Alice Liddell" and person["summary"] == "<p>Down the hole</p>"
    assert person["icon"] == {"type": "Image", "url": answer.json()["avatar"]}
    assert person["publicKey"]["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    (delivery,) = (await db_session.scalars(select(Delivery).where(Delivery.activity_id == update.id))).all()
    assert delivery.inbox == "https://remote.example/inbox" and delivery.signer == me["uri"]

    # The same values again: nothing others see changed, nothing sent.
    again = await client.patch("/api/v1/accounts/update_credentials", headers=bearer(alice),
                               data={"display_name": "Alice Liddell", "note": "Down the hole"})
    assert again.status_code == 200 and len(await updates(db_session, me["uri"])) == 1
    # Locked alone is an edit too (followers' servers show the padlock).
    assert (await client.patch("/api/v1/accounts/update_credentials", headers=bearer(alice),
                               data={"locked": "true"})).status_code == 200
    latest = (await updates(db_session, me["uri"]))[-1]
    assert latest.raw["object"]["manuallyApprovesFollowers"] is True
    # A refused edit (a header image) sends nothing and changes nothing.
    refused = await client.patch("/api/v1/accounts/update_credentials", headers=bearer(alice),
                                 data={"display_name": "Never"},
                                 files={"header": ("h.png", png_with_exif(), "image/png")})
    assert refused.status_code == 422 and len(await updates(db_session, me["uri"])) == 2

    # The web profile form: the same Update.
    client.cookies.clear()
    assert (await login(client, "alice")).status_code == 303
    saved = await post_form(client, "/account/settings/profile", {"display_name": "Alice on the web",
                                                                   "bio": "Written in a browser"},
                            page="/account/settings/profile")
    assert saved.status_code == 303, saved.text[:300]
    web = (await updates(db_session, me["uri"]))[-1]
    assert len(await updates(db_session, me["uri"])) == 3
    assert web.raw["object"]["name"] == "Alice on the web"
    assert web.raw["object"]["summary"] == "<p>Written in a browser</p>"
    assert web.raw["object"]["icon"]["url"] == answer.json()["avatar"]  # the avatar stays
