"""Newsletters end to end over HTTP, delivered to a real SMTP server (aiosmtpd on loopback) by the
real job worker, on both databases: double opt-in, RFC 8058 one-click unsubscribe, RFC 2919
List-Id, both parts, a 500-recipient campaign surviving an SMTP outage with exactly one copy each,
CSV import and export, member pages, sign-up lists, Ghost members, header injection, forgetting
a member."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.jobs import Job, Worker
from app.mail import KIND as MAIL_KIND
from app.settings import Settings
from domains.account import tokens
from domains.account.mailflows import verify_address
from domains.account.models import User
from domains.account.newsletters.models import Campaign, NewsletterList, Recipient, Subscription
from domains.account.newsletters.services import forget_member, read_unsubscribe_token, unsubscribe_token
from domains.account.tokens import Purpose
from tests.helpers.smtp import SMTPServer, smtp_server  # noqa: F401  (the fixture)
from tests.helpers.web import CSRF_FIELD, post_form, signup

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ghost"


@pytest.fixture
def settings(settings: Settings, smtp_server: SMTPServer) -> Settings:  # noqa: F811
    # No pacing in tests (the rate only spaces the batch jobs' start times and the sends inside one).
    return msgspec.structs.replace(smtp_server.settings(settings), mail_rate=1_000_000)


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def worker(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, days: int = 0) -> Worker:
    """The real worker; ``days`` moves its clock on, past any backoff (no wall-clock waiting)."""
    later: Callable[[], datetime] = lambda: datetime.now(UTC) + timedelta(days=days, minutes=1)  # noqa: E731
    return Worker(sessionmaker, settings=settings, clock=later, concurrency=4)


async def make_user(client: Any, sessionmaker: async_sessionmaker[AsyncSession], username: str, *,
                    admin: bool = False, author: bool = False, verify: bool = True, email: str | None = None) -> None:
    client.cookies.clear()
    assert (await signup(client, username, email=email)).status_code == 303
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.username == username).values(is_admin=admin, is_author=author))
        if verify:  # follow the verification link, as the member would
            user = await session.scalar(select(User).where(User.username == username))
            assert user is not None
            assert await verify_address(session, await tokens.issue(session, user, Purpose.VERIFY)) == user
        # The sign-up's own mail (address verification) is not what these tests count.
        await session.execute(delete(Job).where(Job.kind == MAIL_KIND))


async def make_list(client: Any, slug: str = "news", **extra: str) -> UUID:
    response = await post_form(client, "/account/admin/newsletters/", {
        "name": extra.pop("name", "Co-op News"), "slug": slug, "description": "What the co-op did",
        "sender_name": "The Co-op", "visibility": "public", **extra}, page="/account/admin/newsletters")
    assert response.status_code == 303, response.text[:800]
    return UUID(response.headers["location"].rsplit("/", 1)[1])


async def import_rows(client: Any, list_id: UUID, text: str) -> Any:
    return await post_form(client, f"/account/admin/newsletters/{list_id}/subscribers/import", {"csv": text},
                           page=f"/account/admin/newsletters/{list_id}/subscribers")


async def new_issue(client: Any, list_id: UUID, subject: str = "Issue one", markdown: str = "Hello *co-op*.",
                    post_id: str = "") -> str:
    response = await post_form(client, "/account/newsletters/campaigns/", {
        "list_id": str(list_id), "subject": subject, "markdown": markdown, "post_id": post_id},
        page="/account/newsletters/campaigns/new")
    assert response.status_code == 303, response.text[:800]
    return str(response.headers["location"])


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def unsubscribe_url(message: EmailMessage) -> str:
    header = str(message["List-Unsubscribe"])
    # Only the https URL: no mailto, since nothing reads mail sent to one (README "Mail").
    match = re.match(r"<(https?://[^>]+)>$", header)
    assert match, header
    return match.group(1)


async def test_double_opt_in_from_the_public_page(client: Any, sessionmaker: Any, settings: Settings,
                                                  smtp_server: SMTPServer) -> None:  # noqa: F811
    await make_user(client, sessionmaker, "ada", admin=True)
    list_id = await make_list(client)
    client.cookies.clear()

    page = await client.get("/newsletters/news")
    assert page.status_code == 200 and "Co-op News" in page.text
    assert "set-cookie" not in page.headers and "_csrf_token" not in page.text  # cacheable: no session, no token
    assert page.headers["cache-control"].startswith("public") and "newsletter:news" in page.headers["surrogate-key"]
    assert 'href="/newsletters/news/subscribe"' in page.text

    form = "/newsletters/news/subscribe"
    # Bad input: a clear error and nothing written.
    for bad in ({"email": "not-an-address"}, {"email": "eve@example.org", "name": "Eve\r\nBcc: all@example.org"}):
        response = await post_form(client, form, bad, page=form)
        assert response.status_code == 422, response.text[:300]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Subscription)) == 0

    response = await post_form(client, form, {"email": "Reader@Example.org", "name": "Rea Der"}, page=form)
    assert response.status_code == 303
    assert await worker(sessionmaker, settings).run_once() >= 1
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["reader@example.org"]
    text, html = parts(mail.message)
    link = re.search(r"http://127\.0\.0\.1:8000(/newsletters/confirm/[A-Za-z0-9_-]+)", text)
    assert link and link.group(0) in html
    async with sessionmaker() as session:
        sub = await session.scalar(select(Subscription))
        assert sub is not None and sub.status == "pending" and sub.token_hash
        assert link.group(1)[-20:] not in sub.token_hash  # only a digest of the token is kept

    # Asking again at once mails nothing more (one confirmation per address per 10 minutes).
    assert (await post_form(client, form, {"email": "reader@example.org"}, page=form)).status_code == 303
    await worker(sessionmaker, settings).run_once()
    assert len(smtp_server.received) == 1

    # A link older than CONFIRM_WITHIN (7 days) no longer works.
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Subscription).values(updated_at=datetime.now(UTC) - timedelta(days=8)))
    assert (await client.get(link.group(1))).status_code == 404
    async with sessionmaker() as session, session.begin():
        assert await session.scalar(select(Subscription.status)) == "pending"
        await session.execute(update(Subscription).values(updated_at=datetime.now(UTC)))
    confirmed = await client.get(link.group(1))
    assert confirmed.status_code == 200 and "You are subscribed to Co-op News" in confirmed.text
    assert (await client.get(link.group(1))).status_code == 404  # spent: the digest is gone
    assert (await client.get("/newsletters/confirm/forged-token")).status_code == 404
    async with sessionmaker() as session:
        sub = await session.scalar(select(Subscription))
        assert sub is not None and sub.status == "confirmed" and sub.confirmed_at is not None
        assert sub.token_hash is None

    # Subscribing again: the same answer, and nothing is mailed (no enumeration, no spam).
    again = await post_form(client, form, {"email": "reader@example.org"}, page=form)
    assert again.status_code == 303 and again.headers["location"] == response.headers["location"]
    await worker(sessionmaker, settings).run_once()
    assert len(smtp_server.received) == 1
    # A members-only list has no public page.
    client.cookies.clear()
    await make_user(client, sessionmaker, "bob", admin=True)
    await make_list(client, "inner", name="Inner circle", visibility="members")
    client.cookies.clear()
    assert (await client.get("/newsletters/inner")).status_code == 404
    assert (await client.get("/newsletters/inner/subscribe")).status_code == 404
    assert list_id


async def test_issue_headers_parts_and_one_click_unsubscribe(client: Any, sessionmaker: Any, settings: Settings,
                                                            smtp_server: SMTPServer) -> None:  # noqa: F811
    await make_user(client, sessionmaker, "ada", admin=True)
    list_id = await make_list(client)
    report = await import_rows(client, list_id, "email,name\nann@example.org,Ann\nbea@example.org,Béa Ünicode\n")
    assert report.status_code == 200 and "2 added" in report.text
    here = await new_issue(client, list_id, subject="Spring news — café", markdown="# Hello\n\nWe *grew* a lot.")

    page = await client.get(here)
    assert page.status_code == 200 and f'src="{here}/preview"' in page.text and "sandbox" in page.text
    preview = await client.get(f"{here}/preview")
    assert preview.status_code == 200 and "<em>grew</em>" in preview.text and "Unsubscribe" in preview.text
    assert "sandbox" in preview.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in preview.headers["content-security-policy"]

    test = await post_form(client, f"{here}/test", {}, page=here)
    assert test.status_code == 303
    await worker(sessionmaker, settings).run_once()
    [trial] = smtp_server.wait_for(1)
    assert trial.rcpt_tos == ["ada@example.org"] and str(trial.message["Subject"]).startswith("[Test] ")
    smtp_server.clear()

    sent = await post_form(client, f"{here}/send", {}, page=here)
    assert sent.status_code == 303
    assert (await post_form(client, f"{here}/send", {}, page=here)).status_code == 303  # twice: no second run
    await worker(sessionmaker, settings).run_once()
    received = smtp_server.wait_for(2)
    assert sorted(r.rcpt_tos[0] for r in received) == ["ann@example.org", "bea@example.org"]
    bea = next(r.message for r in received if r.rcpt_tos == ["bea@example.org"])
    assert str(bea["Subject"]) == "Spring news — café" and str(bea["To"]) == "Béa Ünicode <bea@example.org>"
    assert str(bea["From"]).startswith("The Co-op <")
    # RFC 8058 §3.1: the http(s) URL alone (no mailto nobody reads); RFC 2919 List-Id.
    assert str(bea["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert str(bea["List-Id"]) == "<news.127.0.0.1>"
    url = unsubscribe_url(bea)
    assert url.startswith(f"{BASE}/newsletters/unsubscribe/")
    text, html = parts(bea)
    assert url in text and f'href="{url}"' in html and "We grew a lot." in text and "<em>grew</em>" in html
    assert ann_url_differs(received, url)

    page = await client.get(here)
    assert "Status: sent" in page.text and "2 of 2 sent" in page.text

    # One-click: a bare POST, no cookie, no CSRF token, as a mail provider sends it; idempotent.
    client.cookies.clear()
    bare = client
    path = url.removeprefix(BASE)
    shown = await bare.get(path)
    assert shown.status_code == 200 and "Unsubscribe from Co-op News?" in shown.text
    assert "_csrf_token" not in shown.text and "set-cookie" not in shown.headers
    for _ in range(2):
        answer = await bare.post(path, content=b"List-Unsubscribe=One-Click",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200 and "unsubscribed" in answer.text
        assert not bare.cookies and "set-cookie" not in answer.headers
    assert (await bare.post(path)).status_code == 200  # not even a body
    # An altered token changes nothing and says so.
    assert (await bare.post(path[:-2] + ("AA" if not path.endswith("AA") else "BB"))).status_code == 404
    async with sessionmaker() as session:
        statuses = dict((await session.execute(select(Subscription.email, Subscription.status))).all())
    assert statuses == {"ann@example.org": "confirmed", "bea@example.org": "unsubscribed"}


def ann_url_differs(received: list[Any], bea_url: str) -> bool:
    ann = next(r.message for r in received if r.rcpt_tos == ["ann@example.org"])
    return unsubscribe_url(ann) != bea_url


async def test_500_recipients_through_an_smtp_outage_get_one_copy_each(
        client: Any, sessionmaker: Any, settings: Settings, smtp_server: SMTPServer) -> None:  # noqa: F811
    await make_user(client, sessionmaker, "ada", admin=True)
    list_id = await make_list(client)
    rows = "\n".join(f"reader{n:03d}@example.org,Reader {n}" for n in range(500))
    # The same addresses again (any case) are duplicates: never mailed twice.
    report = await import_rows(client, list_id, f"{rows}\nREADER007@example.org,Again\n")
    assert "500 added" in report.text and "1 duplicate" in report.text
    here = await new_issue(client, list_id, subject="The big one")
    assert (await post_form(client, f"{here}/send", {}, page=here)).status_code == 303
    async with sessionmaker() as session:
        campaign = await session.scalar(select(Campaign))
        assert campaign is not None and campaign.batches == 5 and campaign.status == "sending"

    # The server answers 451 to everything after its 230th message, in the middle of the batches.
    deliver = smtp_server._deliver

    def then_fail(received: Any) -> None:
        deliver(received)
        if len(smtp_server.received) == 230:
            smtp_server.fail(451)

    smtp_server._deliver = then_fail  # type: ignore[method-assign]
    await worker(sessionmaker, settings).run_once()
    got = len(smtp_server.received)
    assert 230 <= got < 240  # a message already past RCPT on another connection still goes through
    # Then it is down altogether; the campaign page says so.
    smtp_server.stop()
    await worker(sessionmaker, settings, days=1).run_once()
    page = await client.get(here)
    assert "SMTP unavailable, retrying at" in page.text and f"{got} of 500 sent" in page.text
    progress = await client.get(f"{here}/progress", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 2s"' in progress.text and "<html" not in progress.text
    async with sessionmaker() as session:
        counts = dict((await session.execute(select(Recipient.status, func.count()).group_by(Recipient.status))).all())
    assert counts == {"sent": got, "queued": 500 - got}  # nothing left half-claimed, nothing lost

    smtp_server.recover()
    smtp_server.start()
    for day in range(2, 6):
        await worker(sessionmaker, settings, days=day).run_once()
    received = smtp_server.wait_for(500)
    copies = Counter(r.rcpt_tos[0] for r in received)
    assert len(copies) == 500 and set(copies.values()) == {1}, copies.most_common(3)
    ids = Counter(str(r.message["Message-ID"]) for r in received)
    assert set(ids.values()) == {1}
    async with sessionmaker() as session:
        campaign = await session.scalar(select(Campaign))
        assert campaign is not None and campaign.status == "sent" and campaign.retry_at is None
        sent = select(func.count()).select_from(Recipient).where(Recipient.status == "sent")
        assert await session.scalar(sent) == 500
    page = await client.get(here)
    assert "SMTP unavailable" not in page.text and "500 of 500 sent" in page.text


async def test_permanent_failures_are_recorded_and_batches_are_paced(
        client: Any, sessionmaker: Any, settings: Settings, smtp_server: SMTPServer) -> None:  # noqa: F811
    from app.jobs import Job

    await make_user(client, sessionmaker, "ada", admin=True)
    list_id = await make_list(client)
    await import_rows(client, list_id, "\n".join(f"p{n}@example.org" for n in range(250)))
    smtp_server.reject("p3@example.org", 550)
    here = await new_issue(client, list_id)
    client.app.state  # noqa: B018  (the app is built; its settings' rate is what the send uses)
    await post_form(client, f"{here}/send", {}, page=here)
    async with sessionmaker() as session:
        runs = sorted((await session.scalars(select(Job.next_run_at).where(Job.kind == "newsletter.send-batch"))).all())
    assert len(runs) == 3 and runs[0] < runs[1] < runs[2]  # batch n starts n·100/rate minutes later
    await worker(sessionmaker, settings).run_once()
    assert len(smtp_server.wait_for(249)) == 249
    async with sessionmaker() as session:
        failed = (await session.execute(select(Recipient.email, Recipient.error)
                                        .where(Recipient.status == "failed"))).all()
    assert [f.email for f in failed] == ["p3@example.org"] and failed[0].error.startswith("550")
    page = await client.get(here)
    assert "p3@example.org" in page.text and "rejected for the test" in page.text
    await worker(sessionmaker, settings, days=3).run_once()  # a 5xx is never retried
    assert len(smtp_server.received) == 249


async def test_csv_import_report_export_search_and_remove(client: Any, sessionmaker: Any) -> None:
    await make_user(client, sessionmaker, "ada", admin=True)
    list_id = await make_list(client)
    csv_text = ("email,name\n"
                "good@example.org,Good One\n"
                "not an address,Bad\n"
                "GOOD@example.org,Same again\n"
                "evil@example.org,\"Evil\r\nBcc: x@example.org\"\n"
                "\n"
                "=cmd@example.org,Formula\n"
                "second@example.org\n")
    report = await import_rows(client, list_id, csv_text)
    assert report.status_code == 200
    summary = re.search(r"<p>(\d+ added.*?)</p>", report.text, re.S)
    assert summary, report.text[-3000:]
    assert " ".join(summary.group(1).split()) == "3 added, 0 already on the list, 1 duplicate, 2 malformed."
    for line in ("<td>3</td><td>not an address</td><td>malformed", "<td>4</td><td>good@example.org</td><td>duplicate"):
        assert line in report.text
    again = await import_rows(client, list_id, "good@example.org\nthird@example.org\n")
    assert "1 added" in again.text and "1 already on the list" in again.text

    search = await client.get(f"/account/admin/newsletters/{list_id}/subscribers?q=SECOND")
    assert "second@example.org" in search.text and "good@example.org" not in search.text
    export = await client.get(f"/account/admin/newsletters/{list_id}/subscribers.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    lines = export.text.splitlines()
    assert lines[0].startswith("email,name,status") and len(lines) == 5
    assert any(line.startswith("good@example.org,Good One,confirmed") for line in lines)
    assert any(line.startswith("'=cmd@example.org,Formula,") for line in lines)  # no formula for spreadsheets

    async with sessionmaker() as session:
        sid = await session.scalar(select(Subscription.id).where(Subscription.email == "third@example.org"))
    removed = await post_form(client, f"/account/admin/newsletters/{list_id}/subscribers/{sid}/remove", {},
                              page=f"/account/admin/newsletters/{list_id}/subscribers")
    assert removed.status_code == 303
    assert (await client.get(f"/account/admin/newsletters/{list_id}/subscribers?page=2")).status_code == 404
    empty = await import_rows(client, list_id, "")
    assert empty.status_code == 422
    # A refused import shows the list as it still is, not an empty one.
    assert "good@example.org" in empty.text and "No subscribers" not in empty.text
    # Members may not reach any of it.
    await make_user(client, sessionmaker, "mallory")
    assert (await client.get(f"/account/admin/newsletters/{list_id}/subscribers.csv")).status_code == 403
    forged = await post_form(client, f"/account/admin/newsletters/{list_id}/subscribers/import",
                             {"csv": "x@example.org"}, page="/account")
    assert forged.status_code == 403


async def test_header_injection_is_refused_in_list_and_issue_fields(client: Any, sessionmaker: Any) -> None:
    await make_user(client, sessionmaker, "ada", admin=True)
    for field in ("name", "sender_name"):
        response = await post_form(client, "/account/admin/newsletters/", {
            "name": "News", "slug": "news", "sender_name": "Co-op", "visibility": "public",
            field: "News\nBcc: everyone@example.org"}, page="/account/admin/newsletters")
        assert response.status_code == 422 and "line breaks" in response.text
    list_id = await make_list(client)
    response = await post_form(client, "/account/newsletters/campaigns/", {
        "list_id": str(list_id), "subject": "Hi\r\nBcc: everyone@example.org", "markdown": "x"},
        page="/account/newsletters/campaigns/new")
    assert response.status_code == 422 and "line breaks" in response.text
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Campaign)) == 0
        assert await session.scalar(select(func.count()).select_from(NewsletterList)) == 1


async def test_member_pages_signup_lists_and_forgetting(client: Any, sessionmaker: Any, settings: Settings,
                                                       smtp_server: SMTPServer) -> None:  # noqa: F811
    await make_user(client, sessionmaker, "ada", admin=True)
    welcome = await make_list(client, "welcome", name="Welcome", subscribe_on_signup="on")
    other = await make_list(client, "other", name="Other news")
    await make_user(client, sessionmaker, "nina")
    page = await client.get("/account/newsletters")
    assert page.status_code == 200 and "You are on 1 list: Welcome." in page.text
    joined = await post_form(client, f"/account/newsletters/{other}/subscribe", {}, page="/account/newsletters")
    assert joined.status_code == 303
    page = await client.get("/account/newsletters")
    assert "You are on 2 lists" in page.text
    left = await post_form(client, f"/account/newsletters/{welcome}/unsubscribe", {}, page="/account/newsletters")
    assert left.status_code == 303
    assert "You are on 1 list: Other news." in (await client.get("/account/newsletters")).text

    # An author sends a published blog post to the list.
    await make_user(client, sessionmaker, "alice", author=True)
    editor = await client.get("/blog/admin/new")
    token = CSRF_FIELD.search(editor.text)
    assert token
    created = await client.post("/blog/admin/posts", data={"title": "Harvest report", "markdown": "We *picked* apples.",
                                                          "tags": "News", "action": "publish",
                                                          "_csrf_token": token.group(1)})
    assert created.status_code == 303
    post_id = created.headers["location"].rsplit("/", 1)[1]
    compose = await client.get(f"/account/newsletters/campaigns/new?post_id={post_id}")
    assert "Harvest report" in compose.text
    here = await new_issue(client, other, subject="Harvest report", markdown="", post_id=post_id)
    await post_form(client, f"{here}/send", {}, page=here)
    await worker(sessionmaker, settings).run_once()
    [mail] = [r for r in smtp_server.wait_for(1) if r.rcpt_tos == ["nina@example.org"]]
    text, html = parts(mail.message)
    assert "<em>picked</em>" in html and f"{BASE}/blog/harvest-report" in text
    # Another author does not see alice's issue; a member may not compose at all.
    await make_user(client, sessionmaker, "carl", author=True)
    assert (await client.get(here)).status_code == 404
    await make_user(client, sessionmaker, "nobody")
    assert (await client.get("/account/newsletters/campaigns/")).status_code == 403

    # Deleting an account (there is no deletion yet: this is what it will call) forgets the lists.
    async with sessionmaker() as session, session.begin():
        nina = await session.scalar(select(User.id).where(User.username == "nina"))
        assert nina is not None
        assert await forget_member(session, nina) == 2
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Subscription)
                                    .where(Subscription.email == "nina@example.org")) == 0
        assert await session.scalar(select(func.count()).select_from(Recipient)
                                    .where(Recipient.email == "nina@example.org")) == 0


async def test_ghost_import_brings_newsletters_and_members(client: Any, sessionmaker: Any) -> None:
    from domains.blog.importer import import_ghost

    export = msgspec.json.decode((FIXTURES / "ghost-6-export.json").read_bytes())
    data = export["db"][0]["data"]
    data["newsletters"].append({"id": "n2", "name": "Weekly\r\nBcc: x@example.org", "slug": "weekly",
                                "status": "active", "visibility": "members", "subscribe_on_signup": False})
    data["members"] = [
        {"id": "m1", "email": "Member.One@Example.org", "name": "Member One", "status": "free"},
        {"id": "m2", "email": "member2@example.org", "name": "Two", "status": "paid"},
        {"id": "m3", "email": "broken address", "name": "Three", "status": "free"},
    ]
    data["members_newsletters"] = [{"member_id": m, "newsletter_id": n}
                                   for m, n in (("m1", "n1"), ("m1", "n2"), ("m2", "n1"), ("m3", "n1"))]
    raw = msgspec.json.encode(export)
    async with sessionmaker() as session, session.begin():
        dry = await import_ghost(session, raw, dry_run=True)
    assert "newsletters: 2 created, 0 updated" in dry.lines()
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(NewsletterList)) == 0
    async with sessionmaker() as session, session.begin():
        report = await import_ghost(session, raw)
    lines = report.lines()
    assert "members' subscriptions: 3 added, 0 already there" in lines
    assert any("m3" in line and "not an email address" in line for line in lines)
    async with sessionmaker() as session, session.begin():
        again = await import_ghost(session, raw)
    assert "members' subscriptions: 0 added, 3 already there" in again.lines()
    async with sessionmaker() as session:
        lists = {lst.slug: lst for lst in (await session.scalars(select(NewsletterList))).all()}
        assert set(lists) == {"default-newsletter", "weekly"}
        assert lists["weekly"].name == "Weekly Bcc: x@example.org"  # the line break is gone
        subs = sorted((await session.execute(select(Subscription.email, Subscription.status))).all())
    assert subs == [("member.one@example.org", "confirmed"), ("member.one@example.org", "confirmed"),
                    ("member2@example.org", "confirmed")]


def test_unsubscribe_tokens_are_bound_and_unforgeable() -> None:
    sid = UUID("0190f0a0-0000-7000-8000-000000000001")
    token = unsubscribe_token("k" * 40, sid)
    assert read_unsubscribe_token("k" * 40, token) == sid
    assert read_unsubscribe_token("other-secret-key" * 3, token) is None
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert read_unsubscribe_token("k" * 40, flipped) is None
    assert read_unsubscribe_token("k" * 40, "") is None and read_unsubscribe_token("k" * 40, "%%%") is None


async def test_pause_resume_unsubscribe_meanwhile_and_an_interrupted_claim(
        client: Any, sessionmaker: Any, settings: Settings, smtp_server: SMTPServer) -> None:  # noqa: F811
    from domains.account.newsletters.jobs import INTERRUPTED

    await make_user(client, sessionmaker, "ada", admin=True)
    list_id = await make_list(client)
    await import_rows(client, list_id, "\n".join(f"r{n}@example.org" for n in range(20)))
    here = await new_issue(client, list_id)
    await post_form(client, f"{here}/send", {}, page=here)
    paused = await post_form(client, f"{here}/pause", {}, page=here)
    assert paused.status_code == 303
    await worker(sessionmaker, settings).run_once()
    assert smtp_server.received == []  # paused: the batch job stops before its first claim
    assert "Status: paused" in (await client.get(here)).text

    async with sessionmaker() as session, session.begin():
        # r1 leaves the list meanwhile; r2 was claimed by a run that died before recording the answer.
        r1 = await session.scalar(select(Subscription.id).where(Subscription.email == "r1@example.org"))
        assert r1 is not None
        await session.execute(update(Subscription).where(Subscription.id == r1).values(status="unsubscribed"))
        await session.execute(update(Recipient).where(Recipient.email == "r2@example.org").values(status="sending"))
    resumed = await post_form(client, f"{here}/resume", {}, page=here)
    assert resumed.status_code == 303
    await worker(sessionmaker, settings, days=1).run_once()
    received = smtp_server.wait_for(18)
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(
        f"r{n}@example.org" for n in range(20) if n not in (1, 2))
    async with sessionmaker() as session:
        rows = dict((await session.execute(select(Recipient.email, Recipient.status))).all())
        r2 = await session.scalar(select(Recipient.error).where(Recipient.email == "r2@example.org"))
        campaign = await session.scalar(select(Campaign))
    assert rows["r1@example.org"] == "unsubscribed" and rows["r2@example.org"] == "failed" and r2 == INTERRUPTED
    assert campaign is not None and campaign.status == "sent"
    page = await client.get(here)
    assert "18 of 20 sent" in page.text and "Unsubscribed meanwhile</dt><dd>1" in page.text


async def test_an_address_leaving_during_its_batch_is_skipped_and_the_batch_goes_on(
        client: Any, sessionmaker: Any, settings: Settings, smtp_server: SMTPServer,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    from domains.account.newsletters import jobs

    await make_user(client, sessionmaker, "ada", admin=True)
    list_id = await make_list(client)
    await import_rows(client, list_id, "\n".join(f"s{n}@example.org" for n in range(10)))
    here = await new_issue(client, list_id)
    await post_form(client, f"{here}/send", {}, page=here)
    claim = jobs._claim
    calls = 0

    async def unsubscribe_one_then_claim(maker: Any, cid: UUID, rid: UUID, answer: Any = None, conn: Any = None) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:  # after the batch read its recipients, one of them unsubscribes (one-click)
            async with sessionmaker() as session:
                sid = await session.scalar(select(Recipient.subscription_id).where(Recipient.email == "s7@example.org"))
            assert sid is not None
            from domains.account.newsletters.services import NewsletterService

            async with sessionmaker() as session, session.begin():
                assert await NewsletterService(session).unsubscribe(sid)
        return await claim(maker, cid, rid, answer, conn)

    monkeypatch.setattr(jobs, "_claim", unsubscribe_one_then_claim)
    await worker(sessionmaker, settings).run_once()
    received = smtp_server.wait_for(9)
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(f"s{n}@example.org" for n in range(10) if n != 7)
    async with sessionmaker() as session:
        campaign = await session.scalar(select(Campaign))
    assert campaign is not None and campaign.status == "sent"


async def test_an_unverified_address_subscribes_and_adopts_nothing(client: Any, sessionmaker: Any) -> None:
    """Signing up with someone else's address (never verified) must not subscribe that mailbox nor
    take over its existing subscriptions; verifying the address does both."""
    await make_user(client, sessionmaker, "ada", admin=True)
    welcome = await make_list(client, "welcome", name="Welcome", subscribe_on_signup="on")
    other = await make_list(client, "other", name="Other news")
    assert "1 added" in (await import_rows(client, other, "email,name\nvictim@example.net,Vic\n")).text
    await make_user(client, sessionmaker, "mallory", email="victim@example.net", verify=False)

    async def victim_subs() -> list[tuple[str, str, UUID | None]]:
        async with sessionmaker() as session:
            rows = await session.execute(select(NewsletterList.slug, Subscription.status, Subscription.user_id)
                                         .join(NewsletterList, NewsletterList.id == Subscription.list_id)
                                         .where(Subscription.email == "victim@example.net"))
            return sorted((r[0], r[1], r[2]) for r in rows)

    assert await victim_subs() == [("other", "confirmed", None)]
    page = await client.get("/account/newsletters")
    assert page.status_code == 200 and "You are on 1 list" not in page.text
    for action in ("subscribe", "unsubscribe"):
        for lst in (welcome, other):
            answer = await post_form(client, f"/account/newsletters/{lst}/{action}", {}, page="/account/newsletters")
            assert answer.status_code == 303
    assert await victim_subs() == [("other", "confirmed", None)]  # untouched, not adopted, not added
    async with sessionmaker() as session, session.begin():
        mallory = await session.scalar(select(User.id).where(User.username == "mallory"))
        assert mallory is not None
        assert await forget_member(session, mallory) == 0
    assert await victim_subs() == [("other", "confirmed", None)]

    # The address's owner verifies it: the sign-up list is added and the bare subscription adopted.
    async with sessionmaker() as session, session.begin():
        user = await session.get(User, mallory)
        assert user is not None
        await verify_address(session, await tokens.issue(session, user, Purpose.VERIFY))
    assert await victim_subs() == [("other", "confirmed", None), ("welcome", "confirmed", mallory)]
    assert "You are on 2 lists" in (await client.get("/account/newsletters")).text
