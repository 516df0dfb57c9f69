"""The publishing flow over HTTP (with and without htmx), bad input, slugs and the public route class."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from app.jobs.models import Job
from domains.blog.models import Post
from tests.domains.blog.conftest import write

pytestmark = pytest.mark.anyio

PUBLIC_CC = "public, max-age=0, must-revalidate, s-maxage=300, stale-while-revalidate=600, stale-if-error=86400"


async def purge_keys(db_session: Any) -> list[set[str]]:
    rows = (await db_session.execute(select(Job.payload).where(Job.kind == "edge.purge"))).scalars().all()
    return [set(r["keys"]) for r in rows]


async def test_write_and_publish_without_js(author_client: Any, db_session: Any) -> None:
    client = author_client
    saved = await write(client, {"title": "Hello, world", "markdown": "First **post**.", "tags": "News, #internal",
                                 "action": "save"})
    assert saved.status_code == 303
    edit_url = saved.headers["location"]
    assert edit_url.startswith("/blog/admin/posts/")
    assert (await client.get("/blog/hello-world")).status_code == 404  # a draft is not public
    assert await purge_keys(db_session) == []

    page = await client.get(edit_url)
    assert page.status_code == 200 and "Hello, world" in page.text
    published = await write(client, {"title": "Hello, world", "slug": "hello-world", "markdown": "First **post**.",
                                     "tags": "News, #internal", "action": "publish"}, path=edit_url)
    assert published.status_code == 303 and published.headers["location"] == edit_url

    public = await client.get("/blog/hello-world")
    assert public.status_code == 200
    assert "<strong>post</strong>" in public.text
    assert public.headers["cache-control"] == PUBLIC_CC
    assert "set-cookie" not in public.headers
    assert public.headers["etag"].startswith('W/"')
    post_id = (await db_session.execute(select(Post.id))).scalar_one()
    keys = set(public.headers["surrogate-key"].split())
    assert {f"post:{post_id}", "tag:news", "author:alice", "nav"} <= keys
    assert "tag:hash-internal" not in keys and "#internal" not in public.text
    assert "_csrf_token" not in public.text

    again = await client.get("/blog/hello-world", headers={"If-None-Match": public.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == public.headers["etag"]
    assert again.headers["cache-control"] == PUBLIC_CC
    assert (await client.get("/blog/hello-world", headers={"If-None-Match": "*"})).status_code == 304
    assert (await client.get("/blog/hello-world", headers={"If-None-Match": 'W/"stale"'})).status_code == 200

    index = await client.get("/blog/")
    assert index.status_code == 200 and "Hello, world" in index.text and "posts" in index.headers["surrogate-key"]
    tag_page = await client.get("/blog/tag/news")
    assert tag_page.status_code == 200 and "Hello, world" in tag_page.text
    assert (await client.get("/blog/tag/hash-internal")).status_code == 404
    author_page = await client.get("/blog/author/alice")
    assert author_page.status_code == 200 and "Hello, world" in author_page.text
    home = await client.get("/")
    assert home.status_code == 200

    purges = await purge_keys(db_session)
    assert any({f"post:{post_id}", "posts", "tag:news", "author:alice"} <= keys for keys in purges)


async def test_publish_with_htmx_returns_the_editor_partial(author_client: Any, db_session: Any) -> None:
    client = author_client
    response = await write(client, {"title": "Via htmx", "markdown": "Hi", "action": "publish"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.headers["hx-push-url"].startswith("/blog/admin/posts/")
    assert '<form id="editor"' in response.text and "<html" not in response.text
    assert "Published." in response.text
    assert (await client.get("/blog/via-htmx")).status_code == 200

    bad = await write(client, {"title": "", "markdown": "x", "action": "publish"}, headers={"HX-Request": "true"})
    assert bad.status_code == 422 and '<form id="editor"' in bad.text and "Give it a title" in bad.text

    boosted = await write(client, {"title": "", "markdown": "x", "action": "publish"},
                          headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert boosted.status_code == 422 and "<html" in boosted.text


async def test_invalid_input_is_422_with_the_form(author_client: Any, db_session: Any) -> None:
    response = await write(author_client, {"title": "", "markdown": "keep me", "feature_image": "javascript:alert(1)",
                                           "action": "publish"})
    assert response.status_code == 422
    assert "Give it a title" in response.text and "keep me" in response.text
    assert "Use an http(s) URL" in response.text
    assert (await db_session.execute(select(func.count()).select_from(Post))).scalar_one() == 0


async def test_oversized_body_is_rejected(author_client: Any, db_session: Any) -> None:
    response = await write(author_client, {"title": "Big", "markdown": "x" * 200_001, "action": "save"})
    assert response.status_code == 422 and "too long" in response.text
    assert (await db_session.execute(select(func.count()).select_from(Post))).scalar_one() == 0


async def test_duplicate_slug_suggests_the_next_free_one(author_client: Any, db_session: Any) -> None:
    for _ in range(2):
        first = await write(author_client, {"title": "Same title", "markdown": "a", "action": "save"})
        assert first.status_code == 303
    slugs = sorted((await db_session.execute(select(Post.slug))).scalars().all())
    assert slugs == ["same-title", "same-title-2"]
    clash = await write(author_client, {"title": "Other", "slug": "same-title", "markdown": "b", "action": "save"})
    assert clash.status_code == 422
    assert "same-title-3" in clash.text and 'class="suggested-slug"' in clash.text
    reserved = await write(author_client, {"title": "Admin", "slug": "admin", "markdown": "b", "action": "save"})
    assert reserved.status_code == 422 and "admin-2" in reserved.text


async def test_changed_slug_keeps_the_old_one_as_301(author_client: Any, db_session: Any) -> None:
    created = await write(author_client, {"title": "Old name", "markdown": "a", "action": "publish"})
    edit_url = created.headers["location"]
    renamed = await write(author_client, {"title": "New name", "slug": "new-name", "markdown": "a", "action": "save"},
                          path=edit_url)
    assert renamed.status_code == 303
    old = await author_client.get("/blog/old-name")
    assert old.status_code == 301 and old.headers["location"] == "/blog/new-name"
    assert "set-cookie" not in old.headers
    assert (await author_client.get("/blog/new-name")).status_code == 200
    # Renaming back takes the slug over from the redirect.
    back = await write(author_client, {"title": "Old name", "slug": "old-name", "markdown": "a", "action": "save"},
                       path=edit_url)
    assert back.status_code == 303
    assert (await author_client.get("/blog/old-name")).status_code == 200
    assert (await author_client.get("/blog/new-name")).headers["location"] == "/blog/old-name"


async def test_preview_and_autosave(author_client: Any, db_session: Any) -> None:
    client = author_client
    page = await client.get("/blog/admin/new")
    from tests.helpers.web import CSRF_FIELD

    token = CSRF_FIELD.search(page.text)
    assert token
    headers = {"HX-Request": "true", "x-csrftoken": client.cookies.get("csrftoken")}
    preview = await client.post("/blog/admin/preview", data={"markdown": "# Title\n\n<script>x</script>"},
                                headers=headers)
    assert preview.status_code == 200
    assert "<h1>Title</h1>" in preview.text and "<script>" not in preview.text

    autosaved = await client.post("/blog/admin/autosave", data={"title": "Draft in progress", "markdown": "typing",
                                                                "post_id": ""}, headers=headers)
    assert autosaved.status_code == 200 and "Draft saved" in autosaved.text
    post = (await db_session.execute(select(Post))).scalar_one()
    assert post.status == "draft" and post.markdown == "typing"
    assert f'value="{post.id}"' in autosaved.text and "hx-swap-oob" in autosaved.text
    again = await client.post("/blog/admin/autosave", data={"title": "Draft in progress", "markdown": "typed more",
                                                             "post_id": str(post.id)}, headers=headers)
    assert again.status_code == 200
    # The plain submit after an autosave updates the same post rather than creating another.
    done = await write(client, {"title": "Draft in progress", "markdown": "final", "post_id": str(post.id),
                                "action": "publish"})
    assert done.status_code == 303
    await db_session.reset()
    rows = (await db_session.execute(select(Post.status, Post.markdown))).all()
    assert [tuple(r) for r in rows] == [("published", "final")]
    # A published post is not autosaved.
    refused = await client.post("/blog/admin/autosave", data={"title": "x", "markdown": "y", "post_id": str(post.id)},
                                headers=headers)
    assert "Not saved" in refused.text
    # The no-JS preview button renders without saving.
    nojs = await write(client, {"title": "P", "markdown": "*preview me*", "action": "preview"})
    assert nojs.status_code == 200 and "<em>preview me</em>" in nojs.text


async def test_non_authors_cannot_write(client: Any, db_session: Any) -> None:
    """A signed-in member without the author role is refused every write, with a valid CSRF token
    (so the refusal is the role guard's, not CSRF's), and nothing is written."""
    from app.audit import AuditEntry
    from domains.account.models import User
    from domains.blog.schemas import PostInput
    from domains.blog.services import BlogService
    from tests.helpers.web import csrf_token, signup

    assert (await client.get("/blog/admin/")).status_code == 303  # anonymous: to sign-in
    # Someone else's post exists, so the edit/delete/autosave paths have a real target.
    editor = await signup(client, "eve")
    assert editor.status_code == 303
    eve = (await db_session.execute(select(User).where(User.username == "eve"))).scalar_one()
    eve.is_admin = True
    theirs = await BlogService(db_session).save(eve, PostInput(title="Eve's", markdown="original"), "publish")
    theirs_id, theirs_slug = theirs.id, theirs.slug
    await db_session.commit()
    client.cookies.clear()

    await signup(client, "bob")
    assert (await client.get("/blog/admin/")).status_code == 403
    assert (await client.get("/blog/admin/new")).status_code == 403
    token = await csrf_token(client, "/account/settings/profile")

    async def snapshot() -> tuple[int, str, int]:
        db_session.expire_all()
        posts = (await db_session.execute(select(func.count()).select_from(Post))).scalar_one()
        body = (await db_session.execute(select(Post.markdown).where(Post.id == theirs_id))).scalar_one()
        audits = (await db_session.execute(select(func.count()).select_from(AuditEntry))).scalar_one()
        return int(posts), str(body), int(audits)

    before = await snapshot()
    assert before[:2] == (1, "original")
    attempts = [
        ("/blog/admin/posts", {"title": "Bob's", "markdown": "spam", "action": "publish"}),
        ("/blog/admin/posts", {"title": "Bob's", "markdown": "spam", "action": "save"}),
        (f"/blog/admin/posts/{theirs_id}", {"title": "Eve's", "markdown": "defaced", "action": "publish"}),
        (f"/blog/admin/posts/{theirs_id}/delete", {}),
        ("/blog/admin/autosave", {"title": "Bob's", "markdown": "spam"}),
        ("/blog/admin/autosave", {"title": "Eve's", "markdown": "defaced", "post_id": str(theirs_id)}),
    ]
    for path, data in attempts:
        refused = await client.post(path, data={**data, "_csrf_token": token})
        assert refused.status_code == 403, (path, refused.status_code, refused.text[:200])
    assert await snapshot() == before
    assert "original" in (await client.get(f"/blog/{theirs_slug}")).text  # still published, untouched

    # The same token works once bob is an author: the refusals above were the role's, not CSRF's.
    from domains.account.services import AccountService

    bob = (await db_session.execute(select(User).where(User.username == "bob"))).scalar_one()
    await AccountService(db_session).set_author(bob, True)
    await db_session.commit()
    allowed = await client.post("/blog/admin/posts", data={"title": "Bob's", "markdown": "mine", "action": "save",
                                                           "_csrf_token": token})
    assert allowed.status_code == 303, allowed.text[:200]
    assert (await snapshot())[0] == before[0] + 1


async def test_delete_purges_and_removes(author_client: Any, db_session: Any) -> None:
    created = await write(author_client, {"title": "Short lived", "markdown": "a", "action": "publish"})
    edit_url = created.headers["location"]
    post_id = edit_url.rsplit("/", 1)[1]
    deleted = await write(author_client, {}, path=f"{edit_url}/delete")
    assert deleted.status_code == 303
    assert (await author_client.get("/blog/short-lived")).status_code == 404
    assert sum(1 for keys in await purge_keys(db_session) if f"post:{post_id}" in keys) == 2


async def test_pages_are_served_but_not_listed(author_client: Any) -> None:
    created = await write(author_client, {"type": "page", "title": "About us", "markdown": "We are a co-op.",
                                          "action": "publish"})
    assert created.status_code == 303
    page = await author_client.get("/blog/about-us")
    assert page.status_code == 200 and "We are a co-op." in page.text
    assert "About us" not in (await author_client.get("/blog/")).text
    assert "About us" not in (await author_client.get("/blog/feed.rss")).text
    assert "/blog/about-us" in (await author_client.get("/sitemap.xml")).text


async def test_authors_edit_only_their_own_posts_and_the_list_filters(
        client: Any, sessionmaker: Any, db_session: Any) -> None:
    from tests.domains.blog.conftest import make_author

    await make_author(client, sessionmaker, "alice")
    created = await write(client, {"title": "Alice's draft", "markdown": "a", "tags": "Notes", "action": "save"})
    alice_edit = created.headers["location"]
    await write(client, {"title": "Alice's live one", "markdown": "b", "action": "publish"})
    listing = await client.get("/blog/admin/?status=draft")
    assert listing.status_code == 200 and listing.headers["cache-control"] == "no-store, private"
    assert "Alice&#39;s draft" in listing.text and "live one" not in listing.text
    assert "live one" in (await client.get("/blog/admin/?q=LIVE")).text
    assert "Alice&#39;s draft" in (await client.get("/blog/admin/?tag=notes")).text
    assert "Alice&#39;s draft" not in (await client.get("/blog/admin/?type=page")).text

    from tests.helpers.web import post_form

    await post_form(client, "/account/logout", {}, page="/account")
    await make_author(client, sessionmaker, "bert")
    assert (await client.get(alice_edit)).status_code == 404  # not yours: not shown to exist
    listing = await client.get("/blog/admin/")
    assert "Alice" not in listing.text and "/blog/admin/navigation" not in listing.text
    hijack = await write(client, {"title": "Hijacked", "markdown": "x", "action": "publish"}, path=alice_edit)
    assert hijack.status_code == 404
    assert (await write(client, {}, path=f"{alice_edit}/delete")).status_code == 404
    assert (await client.get("/blog/admin/navigation")).status_code == 403  # settings: administrators only
    assert (await client.get("/blog/admin/import")).status_code == 403
    titles = set((await db_session.execute(select(Post.title))).scalars().all())
    assert titles == {"Alice's draft", "Alice's live one"}


async def test_hostile_markdown_published_over_http_is_inert(author_client: Any) -> None:
    from tests.domains.blog.test_renderer import HOSTILE_MARKDOWN, assert_inert

    body = "Kept first.\n\n" + "\n\n".join(HOSTILE_MARKDOWN) + "\n\nKept last."
    created = await write(author_client, {"title": "Hostile", "markdown": body, "action": "publish",
                                          "og_image": "data:image/png;base64,AAAA"})
    assert created.status_code == 422  # a data: URL in a URL field is refused outright
    created = await write(author_client, {"title": "Hostile", "markdown": body, "action": "publish"})
    assert created.status_code == 303
    page = await author_client.get("/blog/hostile")
    article = page.text.split('<div class="post-body">', 1)[1].split("</article>", 1)[0]
    assert_inert(article)
    assert "Kept first." in article and "Kept last." in article
    feed = await author_client.get("/blog/feed.atom")
    import feedparser

    content = feedparser.parse(feed.content).entries[0].content[0].value
    assert_inert(content)
