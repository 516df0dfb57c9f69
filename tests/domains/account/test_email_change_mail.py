"""Changing the email address: confirmed through a link mailed to the NEW address, a notice to the
OLD one, and the address changes only when the link is followed (and its button pressed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import select, update

from app.settings import Settings
from domains.account.models import MailToken, User
from tests.conftest import on_store
from tests.domains.account._mail_helpers import Inbox, link_path, parts, run_jobs
from tests.helpers.smtp import SMTPServer
from tests.helpers.web import csrf_token, login, post_form, signup

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
PAGE = "/account/settings/email"


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    """A real SMTP server on loopback (aiosmtpd), plain: no TLS, no AUTH."""
    with SMTPServer() as server:
        yield server


@pytest.fixture
def inbox(smtp: SMTPServer) -> Inbox:
    return Inbox(smtp)


@pytest.fixture
def settings(settings: Settings, store_kind: str, smtp: SMTPServer) -> Settings:
    settings = smtp.settings(on_store(settings, store_kind))
    return msgspec.structs.replace(settings, mail_from="Rose Ash <noreply@coop.test>")


async def email_of(db_session: Any, username: str) -> str:
    db_session.expire_all()
    return str((await db_session.execute(select(User.email).where(User.username == username))).scalar_one())


async def change(client: Any, email: str, password: str = PASSWORD) -> Any:
    return await post_form(client, PAGE, {"email": email, "password": password}, page=PAGE)


async def test_the_new_address_confirms_and_the_old_one_is_told(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "bob")  # bob@example.org is taken
    await post_form(client, "/account/logout", {}, page="/account")
    await signup(client, "alice")
    await run_jobs(engine, settings)
    inbox.clear()
    # A reset link asked for before the change went to the old address: it must stop working.
    await post_form(client, "/account/password/forgot", {"email": "alice@example.org"},
                    page="/account/password/forgot")
    await run_jobs(engine, settings)
    old_reset = link_path(inbox.messages[0], "/account/password/reset/")
    inbox.clear()

    page = await client.get(PAGE)
    assert page.status_code == 200 and "alice@example.org" in page.text and "not confirmed yet" in page.text
    for email, password, status, words in (
        ("alice.new@example.org", "not my password", 422, "your current password"),
        ("not an address", PASSWORD, 422, "look like an email address"),
        ("ALICE@example.org", PASSWORD, 422, "already your address"),
    ):
        refused = await change(client, email, password)
        assert refused.status_code == status and words in refused.text.replace("&#39;", "'"), (email, refused.text)
    await run_jobs(engine, settings)
    assert inbox.messages == []  # refused input sends nothing

    asked = await change(client, " Alice.New@Example.org ")
    assert asked.status_code == 303 and asked.headers["location"] == PAGE
    assert "We sent a link to alice.new@example.org" in (await client.get(PAGE)).text
    await run_jobs(engine, settings)
    assert await email_of(db_session, "alice") == "alice@example.org"  # not yet
    [confirm] = inbox.to("alice.new@example.org")
    [notice] = inbox.to("alice@example.org")
    assert confirm["Subject"] == "Confirm your new email address"
    assert notice["Subject"] == "Your email address is about to change"
    notice_text, notice_html = parts(notice)
    assert "alice.new@example.org" in notice_text and "alice.new@example.org" in notice_html
    assert "/account/password/forgot" in notice_text
    path = link_path(confirm, "/account/email/confirm/")

    # Opening the link (as a mail scanner would) changes nothing; the button does.
    client.cookies.clear()
    shown = await client.get(path)
    assert shown.status_code == 200 and "alice.new@example.org" in shown.text and "@alice" in shown.text
    assert await email_of(db_session, "alice") == "alice@example.org"
    token = await csrf_token(client, path)
    done = await client.post(path, data={"_csrf_token": token})
    assert done.status_code == 303
    assert await email_of(db_session, "alice") == "alice.new@example.org"
    db_session.expire_all()
    alice = (await db_session.execute(select(User).where(User.username == "alice"))).scalar_one()
    assert alice.email_verified_at is not None

    again = await client.post(path, data={"_csrf_token": token})
    assert again.status_code == 410 and "Nothing was changed" in again.text
    assert (await client.get(old_reset)).status_code == 410  # mailed to the old address: retired
    assert (await login(client, "alice.new@example.org")).status_code == 303
    await post_form(client, "/account/logout", {}, page="/account")
    assert (await login(client, "alice@example.org")).status_code == 401


async def test_an_expired_or_overtaken_change_changes_nothing(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "carol")
    await run_jobs(engine, settings)
    inbox.clear()
    await change(client, "carol2@example.org")
    await run_jobs(engine, settings)
    path = link_path(inbox.to("carol2@example.org")[0], "/account/email/confirm/")

    # Somebody else signs up with that address before carol confirms: 409, nothing changes.
    carol = client.cookies.get("rose_ash_session")
    client.cookies.clear()
    assert (await signup(client, "dan", "carol2@example.org")).status_code == 303
    client.cookies.clear()
    client.cookies.set("rose_ash_session", carol)
    token = await csrf_token(client, path)
    taken = await client.post(path, data={"_csrf_token": token})
    assert taken.status_code == 409 and "Another account uses that address now" in taken.text
    assert await email_of(db_session, "carol") == "carol@example.org"

    await change(client, "carol3@example.org")
    await run_jobs(engine, settings)
    path = link_path(inbox.to("carol3@example.org")[0], "/account/email/confirm/")
    await db_session.execute(update(MailToken).values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    await db_session.commit()
    assert (await client.get(path)).status_code == 410
    token = await csrf_token(client, PAGE)
    expired = await client.post(path, data={"_csrf_token": token})
    assert expired.status_code == 410 and "expired" in expired.text
    assert await email_of(db_session, "carol") == "carol@example.org"
