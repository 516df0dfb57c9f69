"""The domain kit: how a package declares itself to the app, once (ARCHITECTURE.md "One domain package").

Each package's ``__init__.py`` holds one ``domain = Domain(...)``; the composition root lists the
installed ones in order (app/installed.py) and hands them to Litestar as plugins. Everything a
package contributes is a module *name* or a factory, so importing a package (or its models, for
Alembic) builds no router and imports no web stack: :meth:`Domain.on_app_init` does that when an
app is actually built, in the web process, ``rose-ash worker`` and every other ``rose-ash`` command.

``Domain`` meets Litestar's ``InitPluginProtocol`` and ``CLIPluginProtocol`` (both
``runtime_checkable``) by shape rather than by inheritance, so that importing a package does not
import Litestar: git's pre-receive hook imports ``forge`` once per push and must stay cheap.

The kernel never imports a domain; the other way round, a domain names only kernel types here.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import click
    from litestar import Litestar
    from litestar.config.app import AppConfig
    from litestar.types import ControllerRouterHandler

__all__ = ["Domain", "NavEntry", "ServiceActor", "admin_pages", "domains_of", "navigation", "service_actors"]


@dataclass(frozen=True)
class NavEntry:
    """A link in the site's main navigation; ``order`` sorts across domains (smaller first)."""

    href: str
    label: str
    order: int


@dataclass(frozen=True)
class ServiceActor:
    """The ActivityPub actor a domain speaks as (``/ap/actors/<name>``), e.g. the blog's ``Service``."""

    name: str
    kind: Literal["Service", "Application"] = "Service"


@dataclass(frozen=True)
class Domain:  # Litestar's InitPluginProtocol and CLIPluginProtocol, structurally (see below)
    """One installed package: what it serves, runs and owns. Builds nothing until an app is made.

    ``routes``       returns the package's routers/handlers; called once per app, so the
                     package's web modules are imported then and not when its models are.
    ``cli``          returns its ``rose-ash <group>`` click groups.
    ``models``       modules holding its tables (app/models.py imports them for Alembic and tests).
    ``setup``        modules imported for their registrations (fragments, job handlers, topic
                     subscriptions, hooks) in every process that builds the app.
    ``machine_routes``  path regexes authenticated by other means than the session cookie
                     (signatures, client credentials, tokens): exempt from cookie CSRF.
    ``public_get_routes``  public, cacheable GET path shapes: no CSRF cookie is set there, so no
                     POST route may live on them (tests/fragments/test_fragment_csrf_routes.py).
    ``nav``          entries for the site's main navigation.
    ``admin``        its administrators' pages, for the admin home's sidebar and tabs (``/admin``):
                     a page appears there exactly when its domain is installed.
    ``actor``        the service actor it federates as, if any.

    A declaration with only ``nav`` and ``actor`` announces a domain whose package is not built
    yet (market, events): its link and actor exist already, as they did before the kit.
    """

    name: str
    routes: Callable[[], Sequence[ControllerRouterHandler]] | None = None
    cli: Callable[[], Sequence[click.Command]] | None = None
    models: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    machine_routes: tuple[str, ...] = ()
    public_get_routes: tuple[str, ...] = ()
    nav: tuple[NavEntry, ...] = ()
    admin: tuple[NavEntry, ...] = ()
    actor: ServiceActor | None = None
    # Called with every installed Domain when an app is built, for a package that consumes the
    # others' declarations (fragments: navigation; activitypub: service actors) without
    # importing the composition root.
    on_installed: Callable[[tuple[Domain, ...]], None] | None = field(default=None, compare=False)
    # Run when the web app starts (not for other ``rose-ash`` commands), e.g. provisioning actors.
    on_startup: tuple[Callable[[Litestar], Awaitable[None]], ...] = field(default=(), compare=False)

    def load(self) -> None:
        """Import the setup modules (idempotent: Python imports each once per process)."""
        for module in self.setup:
            importlib.import_module(module)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        self.load()
        if self.on_installed is not None:
            self.on_installed(domains_of(app_config.plugins))
        if self.routes is not None:
            app_config.route_handlers.extend(self.routes())
        app_config.on_startup.extend(self.on_startup)
        return app_config

    def on_cli_init(self, cli: click.Group) -> None:
        if self.cli is not None:
            for command in self.cli():
                cli.add_command(command)


def domains_of(plugins: Iterable[object]) -> tuple[Domain, ...]:
    return tuple(p for p in plugins if isinstance(p, Domain))


def navigation(domains: Iterable[Domain]) -> tuple[tuple[str, str], ...]:
    """``((href, label), ...)`` of every installed domain's entries, in their declared order."""
    entries = sorted((entry for d in domains for entry in d.nav), key=lambda e: e.order)
    return tuple((e.href, e.label) for e in entries)


def admin_pages(domains: Iterable[Domain]) -> tuple[tuple[str, str], ...]:
    """``((href, label), ...)`` of every installed domain's administration pages, in declared order."""
    entries = sorted((entry for d in domains for entry in d.admin), key=lambda e: e.order)
    return tuple((e.href, e.label) for e in entries)


def service_actors(domains: Iterable[Domain]) -> dict[str, str]:
    """Actor name → ActivityPub type for every installed domain that federates as one."""
    return {d.actor.name: d.actor.kind for d in domains if d.actor is not None}
