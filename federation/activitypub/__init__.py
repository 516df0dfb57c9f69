"""ActivityPub: actors, HTTP signatures, inbox/outbox, durable delivery, safe fetch.

URL scheme: see :mod:`federation.activitypub.core`. Importing this package registers the
``ap.inbox`` and ``ap.deliver`` job kinds.
"""

from federation.activitypub import blog as _blog  # noqa: F401  (subscribes to the blog's post events)
from federation.activitypub import delivery as _delivery  # noqa: F401  (registers ap.deliver)
from federation.activitypub import processor as _processor  # noqa: F401  (registers ap.inbox)
from federation.activitypub import provision as _provision  # noqa: F401  (actors made with their members)
from federation.activitypub.discovery import router as discovery_router
from federation.activitypub.provision import provision_service_actors
from federation.activitypub.routes import person_response
from federation.activitypub.routes import router as router

__all__ = ["discovery_router", "person_response", "provision_service_actors", "router"]
