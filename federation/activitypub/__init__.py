"""ActivityPub: actors, HTTP signatures, inbox/outbox, durable delivery, safe fetch.

URL scheme: see :mod:`federation.activitypub.core`. Its setup modules register the ``ap.inbox``,
``ap.fanout`` and ``ap.deliver`` job kinds, the blog post subscription and the member hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain, ServiceActor, service_actors

if TYPE_CHECKING:
    import click
    from litestar import Litestar
    from litestar.types import ControllerRouterHandler

__all__ = ["domain"]


def _routes() -> list[ControllerRouterHandler]:
    from federation.activitypub.discovery import router as discovery_router
    from federation.activitypub.forgefed import router as forgefed_router
    from federation.activitypub.routes import router

    return [router, discovery_router, forgefed_router]


def _cli() -> list[click.Command]:
    from federation.activitypub.cli import federation_group

    return [federation_group]


def _serve_actors(installed: tuple[Domain, ...]) -> None:
    """The service actors are the installed domains' (app/installed.py), this one's included."""
    from federation.activitypub.core import use_service_actors

    use_service_actors(service_actors(installed))


async def _provision_actors(app: Litestar) -> None:
    """The service actors and their keys exist before anyone asks for them (provision.py)."""
    from app.db import make_sessionmaker
    from federation.activitypub.provision import provision_service_actors

    settings = app.state["settings"]
    await provision_service_actors(make_sessionmaker(app.state["alchemy"].get_engine(), settings), settings)


domain = Domain(
    name="activitypub",
    routes=_routes,
    cli=_cli,
    models=("federation.keys", "federation.activitypub.models", "federation.activitypub.event_models"),
    setup=(
        "federation.activitypub.blog",  # subscribes to the blog's post events
        "federation.activitypub.market",  # subscribes to the market's product events
        "federation.activitypub.events",  # subscribes to the events domain's event changes; Join/Leave
        "federation.activitypub.delivery",  # ap.fanout, ap.deliver
        "federation.activitypub.processor",  # ap.inbox
        "federation.activitypub.provision",  # actors made with their members
    ),
    machine_routes=(
        r"^/ap/actors/[^/]+/inbox$",  # ActivityPub inboxes: HTTP signatures
        r"^/(@[^/]+/|)inbox$",
        r"^/ap/repos/[^/]+(/service)?/inbox$",  # ForgeFed repositories (forgefed.py)
    ),
    actor=ServiceActor("instance", "Application"),
    on_installed=_serve_actors,
    on_startup=(_provision_actors,),
)
