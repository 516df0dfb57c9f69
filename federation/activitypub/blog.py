"""Blog federation: published posts go out as ``Article`` from their author, and the ``blog``
actor ``Announce``s them; edits send ``Update``; unpublishing or deleting sends ``Delete``.

Driven by the blog's durable post events (domains/blog/events.py): this module subscribes the
``activitypub.blog-post`` job kind. The Article's id is ``/ap/objects/<post id>``, so it is
stable across edits and dereferenceable as AS2.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from app.jobs import JobContext, job_handler
from domains.blog import events
from domains.blog.schemas import PostEvent, PostRead
from domains.blog.services import BlogService
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor, APObject
from federation.activitypub.outbox import Outbox
from federation.activitypub.sanitize import plain_text

log = logging.getLogger("rose_ash.federation.blog")

KIND = "activitypub.blog-post"


def article_fields(post: PostRead) -> dict[str, Any]:
    teaser = plain_text(post.excerpt or post.meta_description, 500)
    return {
        "oid": str(post.id),
        "name": post.title,
        "summary": teaser,
        "content": post.html,
        "url": post.url,
        "published": post.published_at,
        "tags": [{"type": "Hashtag", "href": t.url, "name": f"#{t.slug.replace('-', '')}"} for t in post.tags],
    }


async def _author(fed: Federation, post: PostRead | None) -> Actor:
    for author in post.authors if post is not None else []:
        user = await fed.user_by_name(author.username)
        if user is not None:
            return await fed.local_actor_for_user(user)
    return await fed.local_service_actor("blog")


@job_handler(KIND)
async def federate_blog_post(ctx: JobContext, event: PostEvent) -> None:
    if event.type != "post":
        return  # pages are not federated
    client = ctx.services.get("federation_client") if ctx.services else None
    async with ctx.sessionmaker() as session, session.begin():
        fed = Federation(session, ctx.settings, client)
        try:
            post = await BlogService(session, base_url=ctx.settings.base_url).get_published(event.post_id)
            ap_id = fed.urls.object(event.post_id)
            existing = await session.scalar(select(APObject).where(APObject.ap_id == ap_id))
            outbox = Outbox(fed)
            if post is None:
                if existing is not None and not existing.deleted:
                    author = await fed.remote_actor(existing.attributed_to)
                    await outbox.delete_note(author, existing)
                return
            author = await _author(fed, post)
            fields = article_fields(post)
            if existing is None:
                obj = await outbox.post_note(author, "", visibility="public", article=fields)
                await outbox.boost(await fed.local_service_actor("blog"), obj)
            elif existing.deleted:  # published again after an unpublish: a new Create
                existing.deleted = False
                existing.name, existing.summary, existing.content = fields["name"], fields["summary"], fields["content"]
                existing.url, existing.raw = fields["url"], {"tag": fields["tags"]}
                await outbox.send_create(author, existing)
            else:
                await outbox.update_note(author, existing, fields)
        finally:
            await fed.aclose()


events.subscribe(KIND)
