"""Public blog pages and feeds: the public route class (no session, ETag/304, Surrogate-Key).

Every handler here is ``public_get``: it never reads the session or the user, so the answer is
the same for everyone and an edge may keep it (design/fragments.md §2).
"""

from __future__ import annotations

import math
from typing import Any

from litestar import Request, Response
from litestar.exceptions import NotFoundException

from app.caching import CachePolicy, conditional_response, policy_headers
from app.params import PageNumber
from app.settings import Settings
from domains.blog import feeds
from domains.blog import keys as blog_keys
from domains.blog.deps import dependencies
from domains.blog.models import Post
from domains.blog.renderer import reading_time
from domains.blog.schemas import PER_PAGE
from domains.blog.services import BlogService
from fragments.pages import public_get, render_page


def _page_number(page: int) -> int:
    if page < 1 or page > 10_000:
        raise NotFoundException("No such page.")
    return page


def _pagination(page: int, total: int, base: str) -> dict[str, Any]:
    pages = max(1, math.ceil(total / PER_PAGE))
    return {
        "page": page, "pages": pages, "total": total,
        "prev": (base if page == 2 else f"{base}?page={page - 1}") if page > 1 else None,
        "next": f"{base}?page={page + 1}" if page < pages else None,
    }


@public_get("/blog/", name="blog:index", dependencies=dependencies)
async def blog_index(request: Request[Any, Any, Any], blog: BlogService,
                     page: PageNumber = 1) -> Response[bytes]:
    page = _page_number(page)
    posts, total = await blog.list_public(page=page)
    if page > 1 and not posts:
        raise NotFoundException("No such page.")
    return await render_page(request, "blog/index.html", {
        "posts": posts, "pagination": _pagination(page, total, "/blog/"), "heading": "Blog",
        "feed_path": "/blog/feed.rss",
    }, keys=(blog_keys.POSTS,))


@public_get("/blog/{slug:str}", name="blog:post", dependencies=dependencies)
async def blog_post(request: Request[Any, Any, Any], blog: BlogService, slug: str) -> Response[bytes]:
    found = await blog.resolve_public(slug)
    if found is None:
        raise NotFoundException("We couldn't find that post.")
    if isinstance(found, str):  # an old slug
        return Response(b"", status_code=301, headers={**policy_headers(CachePolicy.PUBLIC),
                                                        "Location": f"/blog/{found}"})
    post = found
    minutes = reading_time(post.body_html)
    older, newer = await blog.neighbours(post)
    more_tag, more = await blog.more_in_tag(post)
    # Previous/next and "more in #tag" change whenever any post is published or unpublished,
    # and every such change purges ``posts``: a post's page carries that key too.
    keys = blog_keys.own_page(post) | ({blog_keys.POSTS} if not post.is_page else set())
    return await render_page(request, "blog/post.html", {
        "post": post, "minutes": minutes, "older": older, "newer": newer, "more_tag": more_tag, "more": more,
    }, keys=tuple(sorted(keys)))


@public_get("/blog/tag/{slug:str}", name="blog:tag", dependencies=dependencies)
async def blog_tag(request: Request[Any, Any, Any], blog: BlogService, slug: str,
                   page: PageNumber = 1) -> Response[bytes]:
    page = _page_number(page)
    tag = await blog.public_tag(slug)
    if tag is None:
        raise NotFoundException("No such tag.")
    posts, total = await blog.list_public(page=page, tag=tag)
    return await render_page(request, "blog/index.html", {
        "posts": posts, "pagination": _pagination(page, total, f"/blog/tag/{slug}"), "heading": tag.name,
        "description": tag.description, "feed_path": f"/blog/tag/{slug}/feed.rss", "tag": tag,
    }, keys=(blog_keys.tag(slug), blog_keys.POSTS))


@public_get("/blog/author/{username:str}", name="blog:author", dependencies=dependencies)
async def blog_author(request: Request[Any, Any, Any], blog: BlogService, username: str,
                      page: PageNumber = 1) -> Response[bytes]:
    page = _page_number(page)
    author = await blog.author(username)
    if author is None:
        raise NotFoundException("No such author.")
    posts, total = await blog.list_public(page=page, author=author)
    if not posts and page == 1 and not author.can_author:
        raise NotFoundException("No such author.")
    return await render_page(request, "blog/index.html", {
        "posts": posts, "pagination": _pagination(page, total, f"/blog/author/{username}"),
        "heading": author.name, "description": author.bio, "feed_path": f"/blog/author/{username}/feed.rss",
        "author": author,
    }, keys=(blog_keys.author(author.username), blog_keys.POSTS))


def _feed_response(request: Request[Any, Any, Any], body: bytes, media_type: str,
                   keys: tuple[str, ...]) -> Response[bytes]:
    return conditional_response(request, body, CachePolicy.PUBLIC, surrogate_keys=keys, media_type=media_type)


async def _feed_posts(service: BlogService, *, tag_slug: str | None = None,
                      username: str | None = None) -> tuple[list[Post], str, tuple[str, ...]]:
    if tag_slug is not None:
        tag = await service.public_tag(tag_slug)
        if tag is None:
            raise NotFoundException("No such tag.")
        posts, _ = await service.list_public(per_page=feeds.FEED_SIZE, tag=tag)
        return posts, tag.name, (blog_keys.tag(tag.slug), blog_keys.POSTS)
    if username is not None:
        author = await service.author(username)
        if author is None:
            raise NotFoundException("No such author.")
        posts, _ = await service.list_public(per_page=feeds.FEED_SIZE, author=author)
        return posts, author.name, (blog_keys.author(author.username), blog_keys.POSTS)
    posts, _ = await service.list_public(per_page=feeds.FEED_SIZE)
    return posts, "", (blog_keys.POSTS,)


@public_get("/blog/feed.atom", name="blog:feed-atom", dependencies=dependencies)
async def feed_atom(request: Request[Any, Any, Any], blog: BlogService, settings: Settings) -> Response[bytes]:
    posts, _, keys = await _feed_posts(blog)
    body = feeds.atom_feed(posts, base_url=settings.base_url, title="Rose Ash blog", self_path="/blog/feed.atom",
                           alt_path="/blog/")
    return _feed_response(request, body, feeds.ATOM_TYPE, keys)


@public_get("/blog/feed.rss", name="blog:feed-rss", dependencies=dependencies)
async def feed_rss(request: Request[Any, Any, Any], blog: BlogService, settings: Settings) -> Response[bytes]:
    posts, _, keys = await _feed_posts(blog)
    body = feeds.rss_feed(posts, base_url=settings.base_url, title="Rose Ash blog",
                          description="News and stories from the co-op.", self_path="/blog/feed.rss",
                          alt_path="/blog/")
    return _feed_response(request, body, feeds.RSS_TYPE, keys)


@public_get("/blog/tag/{slug:str}/feed.rss", name="blog:tag-feed", dependencies=dependencies)
async def tag_feed(request: Request[Any, Any, Any], blog: BlogService, settings: Settings,
                   slug: str) -> Response[bytes]:
    posts, name, keys = await _feed_posts(blog, tag_slug=slug)
    body = feeds.rss_feed(posts, base_url=settings.base_url, title=f"{name} · Rose Ash blog",
                          description=f"Posts tagged {name}.", self_path=f"/blog/tag/{slug}/feed.rss",
                          alt_path=f"/blog/tag/{slug}")
    return _feed_response(request, body, feeds.RSS_TYPE, keys)


@public_get("/blog/author/{username:str}/feed.rss", name="blog:author-feed", dependencies=dependencies)
async def author_feed(request: Request[Any, Any, Any], blog: BlogService, settings: Settings,
                      username: str) -> Response[bytes]:
    posts, name, keys = await _feed_posts(blog, username=username)
    body = feeds.rss_feed(posts, base_url=settings.base_url, title=f"{name} · Rose Ash blog",
                          description=f"Posts by {name}.", self_path=f"/blog/author/{username}/feed.rss",
                          alt_path=f"/blog/author/{username}")
    return _feed_response(request, body, feeds.RSS_TYPE, keys)


@public_get("/sitemap.xml", name="sitemap", dependencies=dependencies)
async def sitemap(request: Request[Any, Any, Any], blog: BlogService, settings: Settings) -> Response[bytes]:
    body = feeds.sitemap(base_url=settings.base_url, posts=await blog.all_public(),
                         tags=await blog.public_tags(), authors=await blog.public_authors())
    return conditional_response(request, body, CachePolicy.PUBLIC, surrogate_keys=(blog_keys.POSTS, blog_keys.PAGES),
                                media_type=feeds.XML_TYPE)


@public_get("/embed/blog/latest", name="blog:embed-latest", include_in_schema=False,
            opt={"cache_policy": CachePolicy.EMBED})
async def embed_latest(request: Request[Any, Any, Any]) -> Response[bytes]:
    """``/embed/blog/latest``: the ``blog.latest`` embed (also at ``/embed/blog-latest``)."""
    from fragments.routes import embed

    response: Response[bytes] = await embed.fn(request, "blog-latest")
    return response


@public_get("/embed/blog/latest/frame", name="blog:embed-latest-frame", include_in_schema=False,
            opt={"cache_policy": CachePolicy.EMBED})
async def embed_latest_frame(request: Request[Any, Any, Any]) -> Response[bytes]:
    from fragments.routes import embed_frame

    response: Response[bytes] = await embed_frame.fn(request, "blog-latest")
    return response


public_handlers = [blog_index, feed_atom, feed_rss, blog_tag, tag_feed, blog_author, author_feed, blog_post,
                   sitemap, embed_latest, embed_latest_frame]
