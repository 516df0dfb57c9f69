"""What the middleware stack costs per request, in-process (no server, no sockets).

Builds the app on a scratch SQLite database (a member, their OAuth token, a signed-in cookie
session), then sends four kinds of request through httpx's ASGI transport and prints the CPU ms
per request (``time.process_time``: a loaded machine blurs wall time, not this) of each, beside a
bare Litestar app answering the same JSON (what the client and Litestar alone cost here):

- ``public``: a signed-out ``GET /market/search?q=x&n=<fresh>`` (the page cache never answers it);
- ``token``: ``GET /api/v1/preferences`` with ``Authorization: Bearer`` (an OAuth token);
- ``cookie``: a signed-in ``GET /account/settings/password`` with the session cookie;
- ``404``: ``GET /no/such/page``.

``--drop NAME`` builds the app without one middleware (repeatable; names as in ``MIDDLEWARE``) to
see its share; ``--profile KIND`` prints cProfile's top functions for one kind.

    PYTHONPATH=$PWD .venv/bin/python bench/middleware_cost.py [--requests 300] [--rounds 3] [--drop sso]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ROSE_ASH_PASSWORD_HASH_COST", "test")

BASE = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery staple"
# The middleware in app/factory.py's order, by a short name (matched against the class or function name).
MIDDLEWARE = {"logging": "request_logging_middleware", "hosts": "SingleHostMiddleware",
              "prometheus": "PrometheusMiddleware", "strict": "StrictInputMiddleware",
              "pagecache": "PageCacheMiddleware", "fragments": "FragmentMiddleware",
              "session": "ServerSideSessionMiddleware", "sso": "SSOMiddleware", "auth": "AuthMiddleware"}


def _name(entry: Any) -> str:
    if hasattr(entry, "middleware"):  # DefineMiddleware
        entry = entry.middleware
    if hasattr(entry, "config") and type(entry).__name__ == "ServerSideSessionConfig":
        return "ServerSideSessionMiddleware"
    return getattr(entry, "__name__", type(entry).__name__)


def _build(drop: set[str], settings: Any) -> Any:
    """The app as app/factory.py builds it, less the named middleware (and hooks)."""
    import app.factory as factory
    from app import create_app

    real = factory.Litestar
    names = {MIDDLEWARE[d] for d in drop if d in MIDDLEWARE}

    def build(*args: Any, **kwargs: Any) -> Any:
        kept = []
        for entry in kwargs.get("middleware", []):
            if type(entry).__name__ == "LazySessionConfig":
                entry_name = "ServerSideSessionMiddleware"
            elif type(getattr(entry, "kwargs", {}).get("config")).__name__ == "PrometheusConfig":
                entry_name = "PrometheusMiddleware"
            else:
                entry_name = _name(entry)
            if entry_name not in names:
                kept.append(entry)
        kwargs["middleware"] = kept
        if "headers" in drop:
            kwargs["before_send"] = []
        if "csrf" in drop:
            kwargs["csrf_config"] = None
        return real(*args, **kwargs)

    factory.Litestar = build  # type: ignore[assignment,misc]
    try:
        return create_app(settings)
    finally:
        factory.Litestar = real  # type: ignore[misc]


async def _seed(url: str, settings: Any) -> str:
    from advanced_alchemy.base import metadata_registry
    from sqlalchemy.ext.asyncio import async_sessionmaker

    import app.models  # noqa: F401
    from app.db import make_engine
    from domains.account.models import User
    from federation.oauth.store import OAuthStore, new_access_token

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata_registry.get(None).create_all)
        maker = async_sessionmaker(engine, expire_on_commit=False)
        async with maker() as session, session.begin():
            from sqlalchemy import select

            user = (await session.scalars(select(User).where(User.username == "alice"))).one()
            store = OAuthStore(session)
            client, _ = await store.create_client(name="bench", redirect_uris=["urn:ietf:wg:oauth:2.0:oob"],
                                                  scope="read", grant_types=["authorization_code"], dynamic=True)
            token = new_access_token()
            await store.save_token(client=client, user=user, family_id=uuid.uuid4(), access_token=token,
                                   refresh_token=None, scope="read", expires_in=7 * 24 * 3600)
        return token
    finally:
        await engine.dispose()


def bare_app() -> Any:
    from litestar import Litestar, get

    @get("/api/v1/preferences")
    async def preferences() -> dict[str, Any]:
        return {"posting:default:visibility": "public", "posting:default:sensitive": False}

    return Litestar(route_handlers=[preferences], logging_config=None)


async def run(args: argparse.Namespace) -> None:
    from contextlib import AsyncExitStack

    from advanced_alchemy.base import metadata_registry
    from sqlalchemy.ext.asyncio import create_async_engine

    import app.models  # noqa: F401
    from app.settings import Settings
    from tests.helpers.web import login, signup

    tmp = Path(tempfile.mkdtemp(prefix="mwcost-"))
    url = f"sqlite+aiosqlite:///{tmp / 'db.sqlite3'}"
    settings = Settings.from_env({}, data_dir=tmp / "data", database_url=url, base_url=BASE,
                                 secret_key="bench-secret-0123456789abcdef0123456789",
                                 worker_in_process=False, auth_rate_limit=100000, log_level=args.log_level)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata_registry.get(None).create_all)
    await engine.dispose()
    # Every variant in this one process, sharing the database and the session files, measured in
    # turn round after round: the machine's load moves all of them alike.
    variants = {"full": set()} | {name: {name} for name in args.drop}
    apps = {label: _build(drop, settings) for label, drop in variants.items()}
    async with AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {}
        for label, application in apps.items():
            await stack.enter_async_context(application.lifespan())
            clients[label] = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE))
        bare = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=bare_app()), base_url=BASE))
        client = clients["full"]
        got = await signup(client, "alice")
        assert got.status_code in (200, 303), got.status_code
        token = await _seed(url, settings)
        got = await login(client, "alice")
        assert got.status_code == 303, got.status_code
        cookie = client.cookies.get("rose_ash_session")
        assert cookie
        client.cookies.clear()
        kinds: dict[str, tuple[str, dict[str, str], int]] = {
            "public": ("/market/search?q=x&n={n}", {}, 200),
            "token": ("/api/v1/preferences", {"Authorization": f"Bearer {token}"}, 200),
            "cookie": ("/account/settings/password", {"Cookie": f"rose_ash_session={cookie}"}, 200),
            "404": ("/no/such/page", {}, 404),
        }

        async def one(label: str, kind: str, n: int) -> None:
            if kind == "bare":
                got = await bare.get("/api/v1/preferences")
                assert got.status_code == 200
                return
            path, headers, status = kinds[kind]
            c = clients[label]
            got = await c.get(path.format(n=f"{n}-{uuid.uuid4().hex[:6]}"), headers=headers)
            c.cookies.clear()  # each kind sends exactly its own headers (no CSRF or session cookie kept)
            # Without session or auth a signed-in request is answered differently (401, 303): not checked.
            assert label != "full" or got.status_code == status, (kind, got.status_code, got.text[:200])

        order = ["bare", *kinds]
        for label in apps:  # warm: templates compiled, statements cached
            for kind in order:
                for n in range(20):
                    await one(label, kind, n)
        if args.profile:
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            for n in range(args.requests):
                await one("full", args.profile, n)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
            print(out.getvalue())
            return
        results: dict[tuple[str, str], list[float]] = {(v, k): [] for v in apps for k in order}
        for _ in range(args.rounds):
            for label in apps:
                for kind in order:
                    started = time.process_time()
                    for n in range(args.requests):
                        await one(label, kind, n)
                    results[label, kind].append((time.process_time() - started) * 1000 / args.requests)
    print(f"CPU ms/request, best of {args.rounds} rounds of {args.requests}; load {os.getloadavg()[0]:.2f}")
    print(f"{'without':12s} " + " ".join(f"{k:>7s}" for k in order))
    for label in apps:
        print(f"{label:12s} " + " ".join(f"{min(results[label, k]):7.3f}" for k in order), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drop", action="append", default=[],
                        help=f"build without: {', '.join([*MIDDLEWARE, 'headers', 'csrf'])}")
    parser.add_argument("--profile", choices=["bare", "public", "token", "cookie", "404"])
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    from app.logs import configure_logging

    configure_logging(args.log_level)  # the app's JSON lines, formatted as in production but not shown
    handler = logging.getLogger("rose_ash").handlers[0]
    handler.setStream(open(os.devnull, "w"))  # type: ignore[attr-defined]  # noqa: SIM115 (open for the run)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
