"""Blog roles (Ghost's Author/Editor): authors write only under their own name; editors and
administrators edit every post and choose authors. Enforced in BlogService, so every path (the
form, htmx, autosave, a forged POST) gets the same answer, and a refusal writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.exceptions import NotFoundException
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import AuditEntry
from app.forms import InputProblems
from domains.account.models import User
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from domains.blog.models import Post, PostAuthor
from domains.blog.schemas import PostInput
from domains.blog.services import BlogService
from tests.domains.blog.conftest import make_author, write
from tests.helpers.web import post_form

pytestmark = pytest.mark.anyio


async def member(session: AsyncSession, username: str, *, author: bool = False, editor: bool = False,
                 admin: bool = False) -> User:
    accounts = AccountService(session)
    user = await accounts.signup(SignupInput(username=username, email=f"{username}@example.org",
                                             password="correct horse battery staple"), is_admin=admin)
    if author:
        await accounts.set_author(user)
    if editor:
        await accounts.set_editor(user)
    return user


async def counts(session: AsyncSession) -> tuple[int, int]:
    posts = (await session.execute(select(func.count()).select_from(Post))).scalar_one()
    links = (await session.execute(select(func.count()).select_from(PostAuthor))).scalar_one()
    return int(posts), int(links)


async def authors_of(session: AsyncSession, post_id: Any) -> list[str]:
    post = await BlogService(session).get(post_id)
    assert post is not None
    return [a.username for a in post.authors]


async def test_an_author_cannot_publish_as_someone_else(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        alice = await member(session, "alice", author=True)
        await member(session, "bert", author=True)
    for names in ("bert", "alice, bert", "bert, alice"):
        async with sessionmaker() as session:
            with pytest.raises(InputProblems) as refused:
                await BlogService(session).save(alice, PostInput(title="As Bert", markdown="x", authors=names),
                                                "publish")
            assert refused.value.status == 403
            assert "Only editors and administrators" in refused.value.errors["authors"]
            await session.rollback()
    async with sessionmaker() as session:
        assert await counts(session) == (0, 0)
    async with sessionmaker() as session, session.begin():  # naming only herself is fine
        mine = await BlogService(session).save(alice, PostInput(title="Mine", markdown="x", authors="@Alice"),
                                               "publish")
    async with sessionmaker() as session:
        assert await authors_of(session, mine.id) == ["alice"]


async def test_an_author_cannot_drop_themself_or_edit_others(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        alice = await member(session, "alice", author=True)
        bert = await member(session, "bert", author=True)
        eve = await member(session, "eve", editor=True)
        service = BlogService(session)
        shared = await service.save(eve, PostInput(title="Shared", markdown="x", authors="alice, bert"), "publish")
        berts = await service.save(bert, PostInput(title="Bert's", markdown="b"), "save")
    async with sessionmaker() as session:
        service = BlogService(session)
        post = await service.get(shared.id)
        assert post is not None
        with pytest.raises(InputProblems) as refused:
            await service.save(alice, PostInput(title="Shared", markdown="y", authors="bert"), "save", post=post)
        assert refused.value.status == 403
        await session.rollback()
    async with sessionmaker() as session:  # keeping the list as it is works, and changes only the text
        service = BlogService(session)
        post = await service.get(shared.id)
        assert post is not None
        await service.save(alice, PostInput(title="Shared", markdown="y", authors="alice, bert"), "save", post=post)
        await session.commit()
        assert await authors_of(session, shared.id) == ["alice", "bert"]
    async with sessionmaker() as session:
        service = BlogService(session)
        other = await service.get(berts.id)
        assert other is not None
        with pytest.raises(NotFoundException):
            await service.save(alice, PostInput(title="Hijacked", markdown="z"), "publish", post=other)
        with pytest.raises(NotFoundException):
            await service.delete(other, actor=alice)
        await session.rollback()
    async with sessionmaker() as session:
        post = await BlogService(session).get(berts.id)
        assert post is not None and post.title == "Bert's" and post.status == "draft"


async def test_editors_edit_publish_and_assign_authors(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        await member(session, "alice", author=True)
        bert = await member(session, "bert", author=True)
        eve = await member(session, "eve", editor=True)
        berts = await BlogService(session).save(bert, PostInput(title="Bert's", markdown="b"), "save")
    async with sessionmaker() as session, session.begin():
        service = BlogService(session)
        post = await service.get(berts.id)
        assert post is not None
        await service.save(eve, PostInput(title="Bert's, edited", markdown="b2", authors="alice, bert"), "publish",
                           post=post)
    async with sessionmaker() as session:
        post = await BlogService(session).get(berts.id)
        assert post is not None and post.status == "published" and post.title == "Bert's, edited"
        assert [a.username for a in post.authors] == ["alice", "bert"]
        audit = (await session.execute(select(AuditEntry).order_by(AuditEntry.created_at))).scalars().all()
        actions = [(e.actor_name, e.action) for e in audit]
        assert ("eve", "blog.post.publish") in actions and ("eve", "blog.post.authors") in actions
        assert all(e.subject_id == bert.id for e in audit if e.actor_name == "eve")
        assert eve.id in {e.actor_id for e in audit}
    async with sessionmaker() as session, session.begin():  # an editor may delete another's post too
        service = BlogService(session)
        post = await service.get(berts.id)
        assert post is not None
        await service.delete(post, actor=eve)
    async with sessionmaker() as session:
        assert (await counts(session))[0] == 0


async def test_unknown_or_roleless_author_is_400_and_writes_nothing(
        sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        eve = await member(session, "eve", editor=True)
        await member(session, "plain")
    for names, who in (("eve, ghost", "@ghost"), ("plain", "@plain")):
        async with sessionmaker() as session:
            with pytest.raises(InputProblems) as refused:
                await BlogService(session).save(eve, PostInput(title="T", markdown="x", authors=names), "publish")
            assert refused.value.status == 400
            assert f"{who} is not an author on this site" in refused.value.errors["authors"]
            await session.rollback()
    async with sessionmaker() as session:
        assert await counts(session) == (0, 0)
        assert (await session.execute(select(func.count()).select_from(AuditEntry))).scalar_one() == 1  # the grant


async def test_over_http_author_is_refused_and_editor_is_not(client: Any, sessionmaker: Any, db_session: Any) -> None:
    await make_author(client, sessionmaker, "bert")
    await post_form(client, "/account/logout", {}, page="/account")
    await make_author(client, sessionmaker, "alice")
    page = await client.get("/blog/admin/new")
    assert 'name="authors"' not in page.text and "Only editors and administrators" in page.text
    refused = await write(client, {"title": "As Bert", "markdown": "x", "authors": "bert", "action": "publish"})
    assert refused.status_code == 403
    assert "Only editors and administrators choose a post&#39;s authors" in refused.text
    unknown = await write(client, {"title": "As nobody", "markdown": "x", "authors": "nobody", "action": "publish"})
    assert unknown.status_code == 403  # an author may not name anyone, known or not
    hx = await write(client, {"title": "As Bert", "markdown": "x", "authors": "bert", "action": "publish"},
                     headers={"HX-Request": "true"})
    assert hx.status_code == 403 and 'id="editor"' in hx.text
    assert (await db_session.execute(select(func.count()).select_from(Post))).scalar_one() == 0

    async with sessionmaker() as session, session.begin():
        alice = (await session.execute(select(User).where(User.username == "alice"))).scalar_one()
        await AccountService(session).set_editor(alice)
    assert 'name="authors"' in (await client.get("/blog/admin/new")).text
    bad = await write(client, {"title": "As nobody", "markdown": "x", "authors": "nobody", "action": "publish"})
    assert bad.status_code == 400 and "@nobody is not an author on this site" in bad.text
    done = await write(client, {"title": "For Bert", "markdown": "x", "authors": "bert", "action": "publish"})
    assert done.status_code == 303
    post = (await db_session.execute(select(Post))).scalar_one()
    assert await authors_of(db_session, post.id) == ["bert"]
    # Alice edits it although she is not one of its authors (an editor's job).
    assert (await client.get(done.headers["location"])).status_code == 200


async def test_a_run_of_staff_autosaves_is_one_audit_entry(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        bert = await member(session, "bert", author=True)
        eve = await member(session, "eve", editor=True)
        draft = await BlogService(session).save(bert, PostInput(title="Draft", markdown="b"), "save")
        await BlogService(session).autosave(bert, PostInput(title="Draft", markdown="b, own autosave"), post=draft)
    steps = [("autosave", "one"), ("autosave", "two"), ("autosave", "three"), ("save", "saved"),
             ("autosave", "four")]
    for kind, text in steps:
        async with sessionmaker() as session, session.begin():
            service = BlogService(session)
            post = await service.get(draft.id)
            assert post is not None
            if kind == "autosave":
                await service.autosave(eve, PostInput(title="Draft", markdown=text), post=post)
            else:
                await service.save(eve, PostInput(title="Draft", markdown=text), "save", post=post)
    async with sessionmaker() as session:
        rows = (await session.execute(select(AuditEntry).where(AuditEntry.action.like("blog.%"))
                                      .order_by(AuditEntry.created_at))).scalars().all()
        assert [(r.actor_name, r.action) for r in rows] == [
            ("eve", "blog.post.autosave"), ("eve", "blog.post.save"), ("eve", "blog.post.autosave")]
        assert rows[0].target == f"blog post {draft.id}" and "“Draft” (draft)" in rows[0].detail
        assert all(r.subject_id == bert.id for r in rows)
        post = await BlogService(session).get(draft.id)
        assert post is not None and post.markdown == "four"
