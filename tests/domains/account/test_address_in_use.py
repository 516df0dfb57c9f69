"""No enumeration of members by email address: signing up with, or changing one's address to, an
address another account uses gets the answer a free address gets, and that address's owner is
mailed a notice (within the per-address mail limit). Usernames are public and still reported.
Through HTTP, against the real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select

from app.settings import Settings
from domains.account.models import User
from tests.conftest import on_store
from tests.domains.account._mail_helpers import Inbox, link_path, parts, run_jobs
from tests.helpers.smtp import SMTPServer
from tests.helpers.web import post_form, signup

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
NOTICE = "Someone tried to use your email address"


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server


@pytest.fixture
def inbox(smtp: SMTPServer) -> Inbox:
    return Inbox(smtp)


@pytest.fixture
def settings(settings: Settings, store_kind: str, smtp: SMTPServer) -> Settings:
    settings = smtp.settings(on_store(settings, store_kind))
    return msgspec.structs.replace(settings, mail_from="Rose Ash <noreply@coop.test>")


async def users(db_session: Any) -> list[str]:
    db_session.expire_all()
    return sorted((await db_session.execute(select(User.username))).scalars())


def answer(response: Any) -> tuple[int, str | None, bool, bytes]:
    """What a client sees of a sign-up's answer: status, Location, whether a session cookie came, body."""
    return (response.status_code, response.headers.get("location"),
            "rose_ash_session=" in response.headers.get("set-cookie", ""), response.content)


async def test_signup_with_a_taken_address_says_so_and_tells_its_owner(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "grace")
    await post_form(client, "/account/logout", {}, page="/account")
    await run_jobs(engine, settings)
    inbox.clear()

    client.cookies.clear()
    fresh = await signup(client, "heidi", "heidi@example.org")
    assert answer(fresh)[:3] == (303, "/account", True)
    client.cookies.clear()
    taken = await signup(client, "ivan", " GRACE@Example.org ")
    assert taken.status_code == 409 and "An account already uses this address" in taken.text
    assert "reset your password" in taken.text
    assert await users(db_session) == ["grace", "heidi"]  # no account for ivan, grace's unchanged

    await run_jobs(engine, settings)
    [notice] = inbox.to("grace@example.org")
    assert notice["Subject"] == NOTICE and str(notice["To"]) == "grace <grace@example.org>"
    text, html = parts(notice)
    assert "sign up" in text and "@grace" in text and "no new account was made" in html
    assert link_path(notice, "/account/password/forgot") == "/account/password/forgot"
    assert "ivan" not in text  # what the stranger typed does not reach the owner's mail
    [verify] = inbox.to("heidi@example.org")
    assert verify["Subject"] == "Confirm your email address"

    # The username is public: a taken one is reported, and the address is not mentioned.
    client.cookies.clear()
    again = await signup(client, "grace", "someone@example.org")
    assert again.status_code == 409 and "That username is taken" in again.text and "already exists" not in again.text
    # Both taken: the username is what is said.
    both = await signup(client, "grace", "grace@example.org")
    assert both.status_code == 409 and "That username is taken" in both.text and "already exists" not in both.text

    # Bad input is still refused as before (nothing about the address's owner).
    bad = await signup(client, "judy", "grace@example.org", "short")
    assert bad.status_code == 422 and "at least 10" in bad.text
    await run_jobs(engine, settings)
    assert len(inbox.to("grace@example.org")) == 1  # refused input told nobody anything


async def test_notices_keep_to_the_address_mail_limit(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "kim")  # the verification mail counts: 1 of 5 an hour for kim@example.org
    await run_jobs(engine, settings)
    inbox.clear()
    for n in range(6):
        client.cookies.clear()
        response = await signup(client, f"probe{n}", "kim@example.org")
        assert response.status_code == 409
    await run_jobs(engine, settings)
    assert [m["Subject"] for m in inbox.to("kim@example.org")] == [NOTICE] * 4  # 5 an hour, one spent
    assert await users(db_session) == ["kim"]


async def test_changing_to_a_taken_address_answers_as_a_free_one_and_tells_its_owner(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "bob")
    await post_form(client, "/account/logout", {}, page="/account")
    await signup(client, "alice")
    await run_jobs(engine, settings)
    inbox.clear()
    page = "/account/settings/email"

    free = await post_form(client, page, {"email": "alice.new@example.org", "password": PASSWORD}, page=page)
    free_flash = (await client.get(page)).text
    taken = await post_form(client, page, {"email": "BOB@example.org", "password": PASSWORD}, page=page)
    taken_flash = (await client.get(page)).text
    assert (free.status_code, free.headers["location"]) == (taken.status_code, taken.headers["location"]) == (303, page)
    assert "We sent a link to alice.new@example.org" in free_flash
    assert "We sent a link to bob@example.org" in taken_flash and "Another account" not in taken_flash

    await run_jobs(engine, settings)
    # Alice's own mailbox gets the same notice for both; only the free address gets a link.
    assert [m["Subject"] for m in inbox.to("alice@example.org")] == ["Your email address is about to change"] * 2
    assert [m["Subject"] for m in inbox.to("alice.new@example.org")] == ["Confirm your new email address"]
    [notice] = inbox.to("bob@example.org")
    assert notice["Subject"] == NOTICE
    text, html = parts(notice)
    assert "change its email address" in text and "@bob" in text and "nothing was changed" in html
    assert "/account/password/forgot" in text
    db_session.expire_all()
    emails = dict((await db_session.execute(select(User.username, User.email))).all())
    assert emails == {"alice": "alice@example.org", "bob": "bob@example.org"}
    assert await db_session.scalar(select(func.count()).select_from(User)) == 2
