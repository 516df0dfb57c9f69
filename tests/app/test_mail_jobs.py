"""Mail as durable jobs and the admin's mail page, on SQLite and PostgreSQL, against a real SMTP
server on loopback: queued in the caller's transaction, sent once, retried with backoff while the
server is down or answers 4xx, a 5xx recorded in the mail log and not retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.jobs import DEAD, DONE, QUEUED, Job, Worker
from app.mail import (
    FAILED,
    KIND,
    SENT,
    FileTransport,
    MailLog,
    OutgoingMail,
    build_message,
    last_failure,
    mail_dir,
    send_mail,
)
from app.settings import Settings
from domains.account.models import User
from tests.helpers.smtp import SMTPServer, smtp_server_fixture  # noqa: F401  (the smtp_server fixture)
from tests.helpers.web import signup

pytestmark = pytest.mark.anyio

SessionMaker = async_sessionmaker[AsyncSession]


class Clock:
    """The worker's clock, moved by the test past a retry's backoff instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=5)  # past what the test queues next

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 2 * 3600) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def sm(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def welcome(to: str = "bob@example.org", **changes: object) -> OutgoingMail:
    return msgspec.convert({"to": to, "to_name": "Bob", "subject": "Welcome, Bob", "template": "test",
                            "context": {"transport": "the queue"}, **changes}, OutgoingMail)


async def queue(sm: SessionMaker, *mails: OutgoingMail, unique_key: str | None = None) -> None:
    async with sm() as session, session.begin():
        for m in mails:
            await send_mail(session, m, unique_key=unique_key)


async def log_rows(sm: SessionMaker) -> list[MailLog]:
    async with sm() as session:
        return list((await session.scalars(select(MailLog).order_by(MailLog.created_at))).all())


async def jobs(sm: SessionMaker) -> list[Job]:
    async with sm() as session:
        return list((await session.scalars(select(Job).where(Job.kind == KIND))).all())


async def test_a_queued_mail_is_sent_once_and_logged(sm: SessionMaker, settings: Settings,
                                                     smtp_server: SMTPServer) -> None:
    settings = smtp_server.settings(settings)
    await queue(sm, welcome())
    [row] = await log_rows(sm)
    assert (row.status, row.to_address, row.subject, row.tag) == ("queued", "bob@example.org", "Welcome, Bob",
                                                                   "transactional")
    assert await Worker(sm, settings=settings).run_once() == 1
    [received] = smtp_server.wait_for(1)
    assert received.rcpt_tos == ["bob@example.org"]
    [row] = await log_rows(sm)
    assert row.status == SENT and row.sent_at is not None and row.attempts == 1
    assert row.message_id == received.message["Message-ID"]
    assert row.message_id.endswith("@127.0.0.1>")
    assert [j.state for j in await jobs(sm)] == [DONE]
    assert await Worker(sm, settings=settings).run_once() == 0
    assert len(smtp_server.received) == 1


async def test_nothing_is_queued_when_the_caller_rolls_back_or_the_mail_is_bad(sm: SessionMaker) -> None:
    async with sm() as session, session.begin():
        await send_mail(session, welcome())
        await session.rollback()
    with pytest.raises(ValueError):
        await queue(sm, welcome(), welcome(subject="Hi\r\nBcc: eve@example.org"))  # the second one is refused
    with pytest.raises(ValueError):
        await queue(sm, welcome(to="not-an-address"))
    assert await jobs(sm) == [] and await log_rows(sm) == []


async def test_a_unique_key_queues_one_mail(sm: SessionMaker, settings: Settings, smtp_server: SMTPServer) -> None:
    await queue(sm, welcome(), unique_key="verify:bob")
    await queue(sm, welcome(), unique_key="verify:bob")
    assert len(await jobs(sm)) == 1 and len(await log_rows(sm)) == 1
    assert await Worker(sm, settings=smtp_server.settings(settings)).run_once() == 1
    assert len(smtp_server.wait_for(1)) == 1


async def test_server_down_is_retried_with_backoff_then_delivered_once(sm: SessionMaker, settings: Settings,
                                                                       smtp_server: SMTPServer) -> None:
    settings = smtp_server.settings(settings)
    clock = Clock()
    worker = Worker(sm, settings=settings, clock=clock)
    await queue(sm, welcome())
    smtp_server.stop()
    assert await worker.run_once() == 1
    [job] = await jobs(sm)
    assert job.state == QUEUED and job.attempts == 1 and job.next_run_at > clock.now - timedelta(seconds=1)
    [row] = await log_rows(sm)
    assert row.status == "queued" and row.smtp_code is None and "connect" in row.smtp_answer.lower()
    assert await worker.run_once() == 0  # not before its backoff has passed

    smtp_server.start()
    smtp_server.fail(451, count=1)  # back, but busy once more
    clock.advance()
    assert await worker.run_once() == 1
    [row] = await log_rows(sm)
    assert (row.status, row.smtp_code, row.attempts) == ("queued", 451, 2)
    assert smtp_server.received == []

    clock.advance()
    assert await worker.run_once() == 1
    [received] = smtp_server.wait_for(1)
    [row] = await log_rows(sm)
    assert (row.status, row.attempts, row.smtp_code, row.smtp_answer) == (SENT, 3, None, "")
    assert [j.state for j in await jobs(sm)] == [DONE]
    clock.advance()
    assert await worker.run_once() == 0
    assert len(smtp_server.received) == 1 and received.message["Message-ID"] == row.message_id


async def test_a_permanent_failure_is_recorded_and_not_retried(sm: SessionMaker, settings: Settings,
                                                               smtp_server: SMTPServer) -> None:
    settings = smtp_server.settings(settings)
    clock = Clock()
    worker = Worker(sm, settings=settings, clock=clock)
    smtp_server.reject("gone@example.org")
    await queue(sm, welcome("gone@example.org"), welcome("bob@example.org"))
    assert await worker.run_once() == 2
    clock.advance()
    assert await worker.run_once() == 0
    rows = {r.to_address: r for r in await log_rows(sm)}
    assert rows["bob@example.org"].status == SENT
    gone = rows["gone@example.org"]
    assert (gone.status, gone.smtp_code, gone.attempts) == (FAILED, 550, 1)
    assert "rejected for the test" in gone.smtp_answer
    assert {j.state for j in await jobs(sm)} == {DONE}
    assert [r.rcpt_tos for r in smtp_server.received] == [["bob@example.org"]]
    async with sm() as session:
        failure = await last_failure(session, "GONE@Example.org ")
        assert failure is not None and failure.id == gone.id
        assert await last_failure(session, "bob@example.org") is None


async def test_the_last_temporary_failure_marks_the_mail_failed(sm: SessionMaker, settings: Settings,
                                                                smtp_server: SMTPServer) -> None:
    settings = smtp_server.settings(settings)
    clock = Clock()
    worker = Worker(sm, settings=settings, clock=clock)
    await queue(sm, welcome())
    async with sm() as session, session.begin():
        await session.execute(update(Job).values(max_attempts=2))
    smtp_server.fail(451)
    assert await worker.run_once() == 1
    clock.advance()
    assert await worker.run_once() == 1
    [row] = await log_rows(sm)
    assert (row.status, row.smtp_code, row.attempts) == (FAILED, 451, 2)
    assert [j.state for j in await jobs(sm)] == [DEAD]


async def test_without_smtp_the_job_writes_an_eml_file(sm: SessionMaker, settings: Settings) -> None:
    assert settings.smtp_url == ""
    await queue(sm, welcome())
    assert await Worker(sm, settings=settings).run_once() == 1
    [path] = mail_dir(settings).glob("*.eml")
    assert b"Subject: Welcome, Bob" in path.read_bytes()
    [row] = await log_rows(sm)
    assert row.status == SENT


# The admin page -------------------------------------------------------------------------------


async def make_admin(db_session: AsyncSession, username: str) -> None:
    await db_session.execute(update(User).where(User.username == username).values(is_admin=True))
    await db_session.commit()


def write_eml(settings: Settings, **changes: object) -> Path:
    mail = welcome(**changes)
    return FileTransport(mail_dir(settings)).write(build_message(mail, settings))


async def test_admin_reads_the_eml_files_and_the_log(client, db_session: AsyncSession,  # type: ignore[no-untyped-def]
                                                     settings: Settings) -> None:
    older = write_eml(settings, subject="Older mail")
    newer = write_eml(settings, subject="Newer <b>mail</b>", to="ann@example.org", tag="newsletter",
                      context={"transport": "<script>alert(1)</script>"})
    (mail_dir(settings) / "notes.txt").write_text("not a mail")
    await send_mail(db_session, welcome("logged@example.org", subject="In the log"))
    await db_session.commit()

    assert (await client.get("/account/admin/mail")).status_code == 303  # anonymous: to sign-in
    assert (await client.get(f"/account/admin/mail/{newer.name}")).status_code == 303
    await signup(client, "bob")
    assert (await client.get("/account/admin/mail")).status_code == 404  # a member: absent
    assert (await client.get(f"/account/admin/mail/{newer.name}")).status_code == 404
    client.cookies.clear()
    await signup(client, "ada")
    await make_admin(db_session, "ada")

    assert 'href="/account/admin/mail"' in (await client.get("/admin")).text
    page = await client.get("/account/admin/mail")
    assert page.status_code == 200 and "no-store" in page.headers["cache-control"]
    html = page.text
    assert html.index("Newer &lt;b&gt;mail&lt;/b&gt;") < html.index("Older mail")  # newest first, escaped
    assert f'href="/account/admin/mail/{newer.name}"' in html and f'href="/account/admin/mail/{older.name}"' in html
    assert "ann@example.org" in html and "newsletter" in html and "notes.txt" not in html
    assert "logged@example.org" in html and "In the log" in html and "queued" in html

    message = await client.get(f"/account/admin/mail/{newer.name}")
    assert message.status_code == 200
    body = message.text
    assert "Message-ID" in body and "X-Rose-Ash-Tag" in body
    assert "<script>alert(1)</script>" not in body  # neither the text part nor the srcdoc runs it
    assert "through &lt;script&gt;alert(1)&lt;/script&gt;." in body
    assert '<iframe sandbox=""' in body and 'srcdoc="&lt;!DOCTYPE html&gt;' in body

    for bad in ("notes.txt", "..%2Fsecret_key", "20261207T000000.000000Z-00000000.eml", "x.eml"):
        assert (await client.get(f"/account/admin/mail/{bad}")).status_code == 404, bad
    assert (await client.get("/account/admin/mail?page=2")).status_code == 404


async def test_admin_page_without_mail(client, db_session: AsyncSession) -> None:  # type: ignore[no-untyped-def]
    await signup(client, "ada")
    await make_admin(db_session, "ada")
    page = await client.get("/account/admin/mail")
    assert page.status_code == 200
    assert "No mail has been written." in page.text and "Nothing has been sent yet." in page.text
    assert await db_session.scalar(select(func.count()).select_from(MailLog)) == 0
