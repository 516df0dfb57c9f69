"""Address verification on sign-up, the banner and its "send again", and the administrator's resend:
end to end over HTTP with the mails read back from a real SMTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from sqlalchemy import select, update

from app.audit import AuditEntry
from app.settings import Settings
from domains.account.models import MailToken, User
from domains.account.tokens import digest
from tests.conftest import on_store
from tests.domains.account._mail_helpers import Inbox, link_path, parts, run_jobs, to_address
from tests.helpers.smtp import SMTPServer
from tests.helpers.web import post_form, signup

pytestmark = pytest.mark.anyio

BANNER = "Please confirm your email address"


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


async def user_row(db_session: Any, username: str) -> User:
    db_session.expire_all()
    return (await db_session.execute(select(User).where(User.username == username))).scalar_one()


async def test_signup_mails_a_link_that_confirms_the_address(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    assert (await signup(client, "alice")).status_code == 303
    assert (await user_row(db_session, "alice")).email_verified_at is None
    dashboard = await client.get("/account")
    assert dashboard.status_code == 200  # unverified members sign in and use the site
    assert BANNER in dashboard.text and 'action="/account/settings/email/resend"' in dashboard.text
    assert BANNER in (await client.get("/account/settings/profile")).text
    # Never on a public page, which is the same for everybody (and cached).
    for public in ("/", "/@alice"):
        page = await client.get(public)
        assert page.status_code == 200 and BANNER not in page.text, public

    await run_jobs(engine, settings)
    [mail] = inbox.messages
    assert to_address(mail) == "alice@example.org" and mail["Subject"] == "Confirm your email address"
    text, html = parts(mail)
    assert "3 days" in text and "Confirm my address" in html
    path = link_path(mail, "/account/verify/")

    client.cookies.clear()  # the link works from any browser, signed in or not
    confirmed = await client.get(path)
    assert confirmed.status_code == 200 and "alice@example.org" in confirmed.text and "is confirmed" in confirmed.text
    assert confirmed.headers["referrer-policy"] == "no-referrer"
    assert (await user_row(db_session, "alice")).email_verified_at is not None
    again = await client.get(path)
    assert again.status_code == 410 and "already been used" in again.text
    altered = await client.get(path[:-2] + ("xy" if not path.endswith("xy") else "zz"))
    assert altered.status_code == 404 and "not a link we sent" in altered.text


async def test_send_again_supersedes_the_old_link_and_is_rate_limited(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "bob")
    await run_jobs(engine, settings)
    first = link_path(inbox.messages[0], "/account/verify/")
    answers = []
    for _ in range(5):
        answer = await post_form(client, "/account/settings/email/resend", {}, page="/account")
        assert answer.status_code == 303 and answer.headers["location"] == "/account"
        answers.append((await client.get("/account")).text)
    # Five account mails per address an hour: the sign-up's and four more; the fifth "again" is refused.
    assert all("We sent a new link to bob@example.org" in page for page in answers[:4])
    assert "Too many links" in answers[4]
    await run_jobs(engine, settings)
    assert len(inbox.to("bob@example.org")) == 5
    # The newest link is the one still unused (the mails may arrive in any order: concurrent sends).
    db_session.expire_all()
    live = set((await db_session.execute(select(MailToken.token_hash).where(
        MailToken.purpose == "verify", MailToken.used_at.is_(None)))).scalars())
    await db_session.commit()
    [newest] = [path for path in (link_path(m, "/account/verify/") for m in inbox.messages)
                if digest(path.rsplit("/", 1)[1]) in live]
    assert (await client.get(first)).status_code == 410  # only the newest link works
    assert (await client.get(newest)).status_code == 200
    page = await client.get("/account")
    assert BANNER not in page.text
    # Confirmed: "send again" sends nothing.
    await post_form(client, "/account/settings/email/resend", {}, page="/account")
    assert "already confirmed" in (await client.get("/account")).text
    await run_jobs(engine, settings)
    assert len(inbox.messages) == 5


async def test_an_administrator_resends_the_confirmation(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "carol")
    await post_form(client, "/account/logout", {}, page="/account")
    await signup(client, "ada")
    await db_session.execute(update(User).where(User.username == "ada").values(is_admin=True))
    await db_session.commit()
    await run_jobs(engine, settings)
    inbox.clear()
    carol = await user_row(db_session, "carol")

    listing = await client.get("/account/admin/users")
    assert listing.status_code == 200 and "not confirmed" in listing.text
    action = f"/account/admin/users/{carol.id}/verification"
    assert f'action="{action}"' in listing.text
    sent = await post_form(client, action, {}, page="/account/admin/users")
    assert sent.status_code == 303 and sent.headers["location"] == "/account/admin/users"
    assert "Sent a confirmation link to @carol" in (await client.get("/account/admin/users")).text
    await run_jobs(engine, settings)
    [mail] = inbox.messages
    assert to_address(mail) == "carol@example.org"
    entry = (await db_session.execute(select(AuditEntry).where(AuditEntry.action == "account.verification-resent"))
             ).scalar_one()
    assert entry.actor_name == "ada" and entry.target == "@carol"

    # A member who is not an administrator cannot (the admin routes answer them 403).
    client.cookies.clear()
    await signup(client, "dave")
    refused = await post_form(client, action, {}, page="/account")
    assert refused.status_code == 403
    await run_jobs(engine, settings)
    assert [to_address(m) for m in inbox.messages] == ["carol@example.org", "dave@example.org"]
