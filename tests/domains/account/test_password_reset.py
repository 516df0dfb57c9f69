""""Forgot password" and reset, end to end over HTTP: the form, the job, the mail through a real SMTP
server on loopback (parsed back with email.parser), the link followed, on every configured database
and store. Also no account enumeration, the rate limits, and expired, used and altered links."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import select, update

from app.jobs import Job
from app.settings import Settings
from domains.account.models import MailToken, User
from tests.conftest import on_store
from tests.domains.account._mail_helpers import Inbox, link_path, parts, run_jobs, to_address
from tests.helpers.smtp import SMTPServer
from tests.helpers.web import csrf_token, login, post_form, signup

pytestmark = pytest.mark.anyio

OLD = "correct horse battery staple"
NEW = "a brand new passphrase here"


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    """A real SMTP server on loopback (aiosmtpd), plain: no TLS, no AUTH."""
    with SMTPServer() as server:
        yield server


@pytest.fixture
def inbox(smtp: SMTPServer) -> Inbox:
    return Inbox(smtp)


@pytest.fixture
def auth_rate_limit() -> int:
    return 1000  # the suite's; test_per_client_limit lowers it


@pytest.fixture
def settings(settings: Settings, store_kind: str, smtp: SMTPServer, auth_rate_limit: int) -> Settings:
    settings = smtp.settings(on_store(settings, store_kind))
    return msgspec.structs.replace(settings, mail_from="Rose Ash <noreply@coop.test>", auth_rate_limit=auth_rate_limit)


async def forgot(client: Any, email: str) -> Any:
    return await post_form(client, "/account/password/forgot", {"email": email}, page="/account/password/forgot")


async def member(client: Any, engine: Any, settings: Settings, inbox: Inbox, name: str = "alice") -> None:
    """A member who signed up, signed out again; the sign-up's verification mail is delivered and dropped."""
    assert (await signup(client, name)).status_code == 303
    await post_form(client, "/account/logout", {}, page="/account")
    await run_jobs(engine, settings)
    inbox.clear()


def use_session(client: Any, session_id: str | None) -> None:
    """Be another browser: only that session's cookie (None: a browser with no session)."""
    client.cookies.clear()
    if session_id:
        client.cookies.set("rose_ash_session", session_id)


async def test_forgot_password_mails_a_single_use_link_that_ends_other_sessions(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await member(client, engine, settings, inbox)
    # Another browser, signed in as alice the whole time.
    assert (await login(client, "alice")).status_code == 303
    other = client.cookies.get("rose_ash_session")
    assert (await client.get("/account")).status_code == 200
    use_session(client, None)

    page = await client.get("/account/password/forgot")
    assert page.status_code == 200 and 'name="email"' in page.text
    asked = await forgot(client, "ALICE@example.org ")
    assert asked.status_code == 303 and asked.headers["location"] == "/account/password/forgot/sent"
    assert "If an account uses the address" in (await client.get(asked.headers["location"])).text
    assert inbox.messages == []  # nothing is sent in the request: the job does it
    await run_jobs(engine, settings)

    [mail] = inbox.messages
    assert to_address(mail) == "alice@example.org"
    assert mail["Subject"] == "Reset your password"
    assert mail["Message-ID"] and mail["Date"]
    text, html = parts(mail)
    assert "@alice" in text and "1 hour" in text and "<strong>@alice</strong>" in html
    path = link_path(mail, "/account/password/reset/")
    secret = path.rsplit("/", 1)[1]

    # Stored hashed: the secret is in the mail only.
    row = (await db_session.execute(select(MailToken).where(MailToken.purpose == "reset"))).scalar_one()
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest() and secret not in row.token_hash
    await db_session.commit()

    form = await client.get(path)
    assert form.status_code == 200 and "Choose a new password" in form.text
    assert form.headers["referrer-policy"] == "no-referrer"
    token = await csrf_token(client, path)
    differ = await client.post(path, data={"password": NEW, "confirm_password": NEW + "x", "_csrf_token": token})
    assert differ.status_code == 422 and "The two passwords differ" in differ.text
    weak = await client.post(path, data={"password": "short", "confirm_password": "short", "_csrf_token": token})
    assert weak.status_code == 422 and "at least 10" in weak.text
    # Neither spent the link.
    assert (await client.get(path)).status_code == 200

    done = await client.post(path, data={"password": NEW, "confirm_password": NEW, "_csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == "/account"
    assert "rose_ash_session" in done.headers.get("set-cookie", "")
    assert (await client.get("/account")).status_code == 200  # signed in on this browser
    this = client.cookies.get("rose_ash_session")
    use_session(client, other)
    assert (await client.get("/account")).status_code == 303  # the other session has ended
    use_session(client, this)

    # Used: a clear page, and nothing changes.
    again = await client.get(path)
    assert again.status_code == 410 and "already been used" in again.text
    token = await csrf_token(client, "/account/password/forgot")
    replay = await client.post(path, data={"password": "yet another passphrase",
                                           "confirm_password": "yet another passphrase", "_csrf_token": token})
    assert replay.status_code == 410 and "Nothing was changed" in replay.text
    await post_form(client, "/account/logout", {}, page="/account")
    assert (await login(client, "alice", OLD)).status_code == 401
    assert (await login(client, "alice", "yet another passphrase")).status_code == 401
    assert (await login(client, "alice", NEW)).status_code == 303
    # Following the mailed link proved the address.
    db_session.expire_all()
    user = (await db_session.execute(select(User).where(User.username == "alice"))).scalar_one()
    assert user.email_verified_at is not None


async def test_known_and_unknown_addresses_get_the_same_answer(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await member(client, engine, settings, inbox)
    known = await forgot(client, "alice@example.org")
    unknown = await forgot(client, "nobody@example.org")
    for answer in (known, unknown):
        assert answer.status_code == 303
    assert known.headers["location"] == unknown.headers["location"]
    assert known.content == unknown.content
    assert ("set-cookie" in known.headers) == ("set-cookie" in unknown.headers)
    # The same work in the request: one queued job each, whoever the address belongs to.
    kinds = (await db_session.execute(select(Job.kind).where(Job.kind == "account.forgot-password"))).scalars().all()
    assert len(kinds) == 2
    await run_jobs(engine, settings)
    assert [to_address(m) for m in inbox.messages] == ["alice@example.org"]  # nothing for the unknown one
    # A malformed address is an input error, worded for a person, whatever the accounts.
    bad = await forgot(client, "not an address")
    assert bad.status_code == 422 and "look like an email address" in bad.text and 'id="e-email"' in bad.text


async def test_per_address_limit_counts_known_and_unknown_alike(
        client, engine, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await member(client, engine, settings, inbox)
    # Five account mails per address an hour; alice's sign-up mail was one of hers.
    for address, left in (("alice@example.org", 4), ("nobody@example.org", 5)):
        answers = [(await forgot(client, address)).status_code for _ in range(left + 1)]
        assert answers == [303] * left + [429], (address, answers)
    refused = await forgot(client, "Alice@Example.org")
    assert refused.status_code == 429 and "Too many links" in refused.text
    assert int(refused.headers["retry-after"]) > 0
    await run_jobs(engine, settings)
    assert len(inbox.to("alice@example.org")) == 4  # the refused one was never queued
    assert (await forgot(client, "carol@example.org")).status_code == 303  # another address has its own budget


@pytest.mark.parametrize("auth_rate_limit", [3])
async def test_per_client_limit(client, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    # The sign-in/sign-up budget per client address (ROSE_ASH_AUTH_RATE_LIMIT) counts these too.
    answers = [(await forgot(client, f"person{i}@example.org")).status_code for i in range(4)]
    assert answers == [303, 303, 303, 429]


async def test_expired_altered_and_superseded_links_change_nothing(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await member(client, engine, settings, inbox)
    await forgot(client, "alice@example.org")
    await forgot(client, "alice@example.org")
    await run_jobs(engine, settings)
    links = [link_path(m, "/account/password/reset/") for m in inbox.messages]
    pages = {path: await client.get(path) for path in links}
    # Only the newest works (the two jobs may have run side by side: still only one survives).
    [first] = [path for path, page in pages.items() if page.status_code == 410]
    [second] = [path for path, page in pages.items() if page.status_code == 200]
    assert "newer link" in pages[first].text

    altered = second[:-1] + ("A" if second[-1] != "A" else "B")
    for path in (altered, second + "x", "/account/password/reset/short"):
        page = await client.get(path)
        assert page.status_code == 404 and "not a link we sent" in page.text, path
        token = await csrf_token(client, "/account/password/forgot")
        post = await client.post(path, data={"password": NEW, "confirm_password": NEW, "_csrf_token": token})
        assert post.status_code == 404

    await db_session.execute(update(MailToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    await db_session.commit()
    expired = await client.get(second)
    assert expired.status_code == 410 and "expired" in expired.text
    token = await csrf_token(client, "/account/password/forgot")
    post = await client.post(second, data={"password": NEW, "confirm_password": NEW, "_csrf_token": token})
    assert post.status_code == 410 and "Ask for a new link" in post.text
    assert (await login(client, "alice", NEW)).status_code == 401
    assert (await login(client, "alice", OLD)).status_code == 303


async def test_a_link_is_spent_by_exactly_one_of_two_racing_posts(
        client, engine, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    """Two tabs posting the same link at once: the conditional UPDATE lets one through, the other gets 410."""
    import anyio

    await member(client, engine, settings, inbox)
    await forgot(client, "alice@example.org")
    await run_jobs(engine, settings)
    path = link_path(inbox.messages[0], "/account/password/reset/")
    token = await csrf_token(client, path)  # both forms open before either is sent
    answers: list[int] = []

    async def post(password: str) -> None:
        answer = await client.post(path, data={"password": password, "confirm_password": password,
                                               "_csrf_token": token})
        answers.append(answer.status_code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(post, "first racing passphrase")
        tg.start_soon(post, "second racing passphrase")
    assert sorted(answers) == [303, 410]
    client.cookies.clear()
    wins = [(await login(client, "alice", p)).status_code for p in ("first racing passphrase",
                                                                     "second racing passphrase")]
    assert sorted(wins) == [303, 401]


async def test_a_suspended_member_gets_no_mail_and_their_link_opens_nothing(
        client, engine, db_session, settings, inbox) -> None:  # type: ignore[no-untyped-def]
    await member(client, engine, settings, inbox)
    await forgot(client, "alice@example.org")
    await run_jobs(engine, settings)
    path = link_path(inbox.messages[0], "/account/password/reset/")
    await db_session.execute(update(User).values(is_active=False))
    await db_session.commit()
    assert (await client.get(path)).status_code == 404
    assert (await forgot(client, "alice@example.org")).status_code == 303
    await run_jobs(engine, settings)
    assert len(inbox.messages) == 1
