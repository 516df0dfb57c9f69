"""The blog domain: posts and pages, tags, authors, navigation, the editor, feeds, Ghost import/sync.

The first full domain, laid out the way later ones should be:

``models.py``       tables (advanced-alchemy ``UUIDv7AuditBase``; relationships ``lazy="raise"``,
                    loaded explicitly with ``services.with_relations``)
``schemas.py``      msgspec Structs: form input, what other domains read (``PostRead``), job and
                    event payloads, and the foreign wire formats (Ghost export and webhooks)
``services.py``     the rules (``BlogService``, ``NavigationService``); every visible change
                    writes its ``edge.purge`` job and ``PostEvent`` jobs in the same transaction
``guards.py``       who may do what (authors their posts, editors every post; admins settings; not yours → 404)
``controllers.py``  public pages and feeds: ``public_get`` + ``render_page``/``conditional_response``
                    (no session, ETag/304, Surrogate-Key)
``admin.py``        the private editor: real forms, 303 on success, 422 with the form, htmx partials
``fragments.py``    ``blog.latest`` (embeddable) and ``blog.post-card`` through the fragment registry
``jobs.py``         durable job kinds (scheduled publishing); ``events.py`` post events for others
``renderer.py``     Markdown → sanitised HTML, and the wider sanitiser for Ghost HTML
``importer.py``/``exporter.py``/``webhooks.py``  Ghost interop; ``cli.py`` the ``rose-ash blog`` group

Importing the package builds nothing: its ``domain`` declaration (app/kit.py) names the modules
that register its fragments and job kinds, imported when an app is built. Other domains use
``BlogService.get_published(post_id) -> PostRead | None`` and subscribe to post events with
:func:`domains.blog.events.subscribe` (see that module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain, NavEntry, ServiceActor

if TYPE_CHECKING:
    import click
    from litestar.types import ControllerRouterHandler


def _routes() -> list[ControllerRouterHandler]:
    from litestar import Router

    from app import access
    from domains.blog.admin import admin_handlers
    from domains.blog.controllers import public_handlers
    from domains.blog.webhooks import ghost_webhook

    return [Router(path="/", opt=access.public(), route_handlers=[
        *public_handlers,
        Router(path="/", opt=access.session(role="author", owner="post"), route_handlers=admin_handlers),
        Router(path="/", opt=access.machine(), route_handlers=[ghost_webhook]),  # Ghost's signature
    ])]


def _cli() -> list[click.Command]:
    from domains.blog.cli import blog_group

    return [blog_group]


domain = Domain(
    name="blog",
    routes=_routes,
    cli=_cli,
    models=("domains.blog.models",),
    setup=("domains.blog.fragments", "domains.blog.jobs", "domains.blog.webhooks"),
    machine_routes=(r"^/hooks/blog/",),  # Ghost's webhooks: signed with the shared secret
    nav=(NavEntry("/blog/", "Blog", 10),),
    admin=(NavEntry("/blog/admin/", "Blog posts", 20), NavEntry("/blog/admin/navigation", "Navigation", 21)),
    actor=ServiceActor("blog"),
)

__all__ = ["domain"]
