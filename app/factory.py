"""``create_app(settings)``: the one place where domains, plugins and middleware are put together.

The domains come from the installed list (app/installed.py), each a Litestar plugin that adds its
routes, registrations and CLI groups (app/kit.py); this module adds what the kernel owns and the
few seams where it needs a domain: who a session or token belongs to, and single sign-on.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Router
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.middleware.allowed_hosts import AllowedHostsMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.plugins.flash import FlashConfig, FlashPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.response.base import ASGIResponse
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_400_BAD_REQUEST

import app.models  # noqa: F401  (every installed table on the metadata, before the config is made)
from app import access
from app.cli import RoseAshCLIPlugin
from app.db import make_alchemy_config
from app.errors import exception_handler
from app.head import answer_head_as_get
from app.headers import SecurityHeaders
from app.health import healthz
from app.identity import TokenGrant
from app.installed import INSTALLED, csrf_exempt, csrf_public_get
from app.kit import admin_pages
from app.limits import make_limiter
from app.logs import configure_logging, request_logging_middleware
from app.metrics import PROMETHEUS, MetricsController, process_exited
from app.security import AuthMiddleware, access_guard, make_csrf_config, make_session_config
from app.settings import Settings
from app.stores import make_store_registry
from app.strict_input import StrictInputMiddleware
from app.templating import STATIC_DIR, make_template_config
from fragments.cache import FragmentCache
from fragments.middleware import FragmentMiddleware, TrackingRequest
from fragments.page_cache import PageCacheMiddleware
from fragments.registry import inline_fragment
from fragments.site import installed, section_links

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send
    from sqlalchemy.ext.asyncio import AsyncSession

    from domains.account.models import User

# Routes that never need to know who is asking.
AUTH_EXCLUDE = [r"^/static/", r"^/healthz$"]
# Load balancers and orchestrators probe the health check by address (Host: 10.0.0.5:8000), and it
# builds no URL, reads no session and sets no cookie, so it answers whatever the Host.
ANY_HOST = [r"^/healthz$"]


class SingleHostMiddleware(AllowedHostsMiddleware):
    """Allowed hosts, and exactly one ``Host`` field (RFC 9112 section 3.2: more than one is a 400).

    Litestar checks the first ``Host`` line while a dict of the headers keeps the last, so a second
    line could otherwise smuggle another host past the check to code that reads it differently.
    """

    def __init__(self, app: ASGIApp, config: AllowedHostsConfig) -> None:
        super().__init__(app, config)
        # The configured hosts without a wildcard, matched by a set lookup before the regex (which
        # Litestar builds from the same list, escaped, so either says yes to exactly these).
        self.exact_hosts = frozenset(host for host in config.allowed_hosts
                                     if not host.startswith("*.") and host.split(":")[0])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lines = 0
        host: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"host":  # ASGI header names are lower-case
                lines += 1
                host = value
        if lines > 1:
            refused = ASGIResponse(body=b'{"message":"invalid host header"}', status_code=HTTP_400_BAD_REQUEST)
            await refused(scope, receive, send)
            return
        if self.allowed_hosts_regex is not None and host is not None and host.decode("latin-1") in self.exact_hosts:
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)  # Litestar's check: wildcards, "*", the 400


class InstalledIdentity:
    """The :class:`app.identity.IdentityProvider`: members from the account domain, OAuth's tokens."""

    async def user_for_session(self, db: AsyncSession, user_id: str) -> User | None:
        from domains.account.services import AccountService

        return await AccountService(db).get_active(user_id)

    async def user_for_token(self, db: AsyncSession, secret: str) -> TokenGrant | None:
        from domains.account.services import TokenService

        found = await TokenService(db).authenticate(secret)
        if found is None:
            return None
        user, token = found
        return TokenGrant(user, frozenset(token.scopes), str(token.id))

    async def user_for_oauth_token(self, db: AsyncSession, secret: str) -> TokenGrant | None:
        from federation.oauth.store import OAuthStore

        found = await OAuthStore(db).authenticate_access_token(secret)
        if found is None:
            return None
        token, _client, user = found
        if user is None:  # client-credentials tokens act for no user
            return None
        return TokenGrant(user, frozenset(token.scope.split()), f"oauth:{token.id}")


def _static_version() -> str:
    """A digest of the CSS/JS so their URLs change whenever they do (they are cached for a year)."""
    digest = hashlib.blake2b(digest_size=6)
    for path in sorted(STATIC_DIR.glob("css/*")) + sorted(STATIC_DIR.glob("js/*")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(settings.log_level)

    alchemy = make_alchemy_config(settings)
    template_config = make_template_config(settings)
    session_config = make_session_config(settings)
    static_version = _static_version()
    fragment_cache = FragmentCache(settings)  # shared fragments, invalidated by surrogate key

    def add_template_globals(app: Litestar) -> None:
        env = app.template_engine.engine  # type: ignore[union-attr]
        env.globals["static_version"] = static_version
        env.globals["fragment"] = inline_fragment
        env.globals["installed"] = installed  # a domain's links only when it is (fragments/site.py)
        env.globals["section_links"] = section_links
        env.globals["admin_pages"] = admin_pages(INSTALLED)  # the admin home's sidebar and tabs (issue 14)


    @asynccontextmanager
    async def background_worker(app: Litestar) -> AsyncIterator[None]:
        if not settings.worker_in_process:
            yield
            return
        from app.db import make_sessionmaker
        from app.jobs import JobContext
        from app.jobs.worker import worker_in_background

        # One in-process worker per machine however many web processes run (-W N): whichever
        # holds the lock under DATA_DIR runs it; the others take over if it dies (app/jobs/worker.py).
        sessionmaker = make_sessionmaker(alchemy.get_engine(), settings)
        async with worker_in_background(sessionmaker, JobContext(sessionmaker=sessionmaker, settings=settings),
                                        lock_path=settings.data_dir / "job-worker.lock"):
            yield

    @asynccontextmanager
    async def metrics_files(app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            process_exited()  # this process's live gauges leave the shared directory (-W N)

    # Only the configured hosts, port included (Litestar matches the whole Host header). Placed
    # outermost rather than as Litestar(allowed_hosts=...), which Litestar nests inside the app
    # middleware: a foreign Host must not reach the session store, single sign-on or the database.
    allowed_hosts = DefineMiddleware(SingleHostMiddleware, config=AllowedHostsConfig(
        allowed_hosts=list(settings.allowed_hosts), exclude=ANY_HOST, www_redirect=False))

    static = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        cache_control=CacheControlHeader(public=True, max_age=31_536_000, immutable=True),
        opt={"exclude_from_auth": True, "exclude_from_csrf": True, **access.public()},
    )

    from federation.oauth.sso import SSOMiddleware

    app = Litestar(
        route_handlers=[healthz, static, MetricsController],  # the rest come with the installed domains
        plugins=[
            *INSTALLED,
            SQLAlchemyPlugin(config=alchemy),
            HTMXPlugin(),
            FlashPlugin(config=FlashConfig(template_config=template_config)),
            RoseAshCLIPlugin(),
        ],
        middleware=[
            request_logging_middleware,
            allowed_hosts,  # 400 for any Host that is not configured, before anything else runs
            PROMETHEUS.middleware,  # request counts and durations per route template (/metrics)
            StrictInputMiddleware(),  # NULs in the URL, non-JSON API writes: refused before any lookup
            PageCacheMiddleware,  # public pages answered from the fragment cache (fragments/page_cache.py)
            FragmentMiddleware,  # outside session/auth/CSRF: sees every Set-Cookie and the final headers
            session_config.middleware,
            SSOMiddleware,  # single sign-on across ROSE_ASH_DOMAIN_HOSTS; ends sessions signed out elsewhere
            DefineMiddleware(AuthMiddleware, alchemy=alchemy, identity=InstalledIdentity(), exclude=AUTH_EXCLUDE),
        ],
        guards=[access_guard],  # every route is held to its access declaration (app/access.py)
        # CSP, framing, nosniff, referrer, permissions, COOP, HSTS on every response (app/headers.py).
        before_send=[SecurityHeaders(settings)],
        csrf_config=make_csrf_config(settings, [*csrf_exempt(), *csrf_public_get()]),
        template_config=template_config,
        stores=make_store_registry(settings),
        exception_handlers={Exception: exception_handler},
        dependencies={"settings": Provide(lambda: settings, sync_to_thread=False)},
        request_class=TrackingRequest,
        on_startup=[add_template_globals],  # and the installed domains' (app/kit.py)
        lifespan=[metrics_files, background_worker, fragment_cache.running],
        # The named rate limits (app/limits.py), in Redis when configured: shared by every process.
        state=State({"settings": settings, "alchemy": alchemy, "limiter": make_limiter(settings),
                     "fragment_cache": fragment_cache}),
        # The schema as JSON (also at /api/schema itself) and YAML; no HTML viewers, which load their
        # scripts from CDNs that the CSP (app/headers.py) rightly refuses. Not itself in the schema.
        openapi_config=OpenAPIConfig(
            title="Rose Ash", version="0.1.0", path="/api/schema",
            render_plugins=[JsonRenderPlugin(path=["/openapi.json", "/"]), YamlRenderPlugin()],
            openapi_router=Router(path="/api/schema", route_handlers=[], opt=access.public(),
                                  include_in_schema=False)),
        # Our JSON logging is configured once per process (app/logs.py). Litestar's default config
        # would start a queue-listener thread per app instance that never stops.
        logging_config=None,
        debug=settings.debug,
    )
    answer_head_as_get(app)  # HEAD is served by every GET route (app/head.py)
    return app
