"""The blog domain: posts and pages, tags, authors, navigation, the editor, feeds, Ghost import/sync.

Importing the package registers its fragments (``blog.latest``, ``blog.post-card``) and its job
kinds (``blog.publish-scheduled``). Other domains use :class:`~domains.blog.services.BlogService`
(``get_published`` → :class:`~domains.blog.schemas.PostRead`) and subscribe to post events
with :func:`domains.blog.events.subscribe`.
"""

from litestar import Router

from domains.blog import fragments, jobs  # noqa: F401  (registers fragments and job kinds)
from domains.blog.admin import admin_handlers
from domains.blog.controllers import public_handlers
from domains.blog.webhooks import ghost_webhook

router = Router(path="/", route_handlers=[*public_handlers, *admin_handlers, ghost_webhook])

__all__ = ["router"]
