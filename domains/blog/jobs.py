"""Blog job kinds: publishing a scheduled post at its time."""

from __future__ import annotations

from app.jobs import JobContext, job_handler
from domains.blog.schemas import PublishScheduled

__all__ = ["PUBLISH_SCHEDULED", "publish_scheduled"]

PUBLISH_SCHEDULED = "blog.publish-scheduled"


@job_handler(PUBLISH_SCHEDULED, backoff_base=5.0, backoff_cap=600.0)
async def publish_scheduled(ctx: JobContext, payload: PublishScheduled) -> None:
    """Publish the post if it is still scheduled for this time (purges and events in the same commit).

    The move is ``app.fsm.transition(SCHEDULED -> PUBLISHED)``: if an editor published or
    unpublished the post meanwhile, this run does nothing.
    """
    # The services enqueue this kind (so they import this module): import them at run time.
    from domains.blog.services import BlogService

    base_url = str(getattr(ctx.settings, "base_url", "") or "")
    async with ctx.sessionmaker() as session, session.begin():
        await BlogService(session, base_url=base_url).publish_due(payload.post_id, payload.scheduled_for)
