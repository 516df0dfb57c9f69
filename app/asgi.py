"""ASGI entry point for servers: ``uvicorn --factory app.asgi:create_app --forwarded-allow-ips ''``.

Pass ``--forwarded-allow-ips`` (or FORWARDED_ALLOW_IPS) as ``rose-ash run`` does: the proxy's
address, or empty for none. uvicorn's own default believes ``X-Forwarded-For`` from 127.0.0.1,
so any local client could choose the address rate limits count it under (README: Configuration).
"""

from __future__ import annotations

import gc

from litestar import Litestar

from app import factory
from app.settings import Settings
from forge.smart_http import install_fast_path

__all__ = ["create_app", "freeze_startup_heap"]


def freeze_startup_heap() -> None:
    """Move everything alive once the app has started into the collector's permanent generation.

    A server process holds a few hundred thousand long-lived objects (modules, the ORM's mappers,
    routes, compiled templates) that no request frees. CPython's full collections walk all of them
    each time, and a page that allocates much (the events month: hundreds of dates) set one off
    every few requests: the collector was about a third of that page's CPU (bench/profile_requests.py).
    Frozen, they are left out of every collection; what requests allocate is collected as before.
    Only here, in the server's entry point: tests make many apps in one process, and freezing each
    would keep every earlier one's garbage for good (gc.freeze documents the same for fork servers).
    """
    gc.collect()  # the start-up's own garbage first, so that is not kept for good
    gc.freeze()


def create_app(settings: Settings | None = None) -> Litestar:
    """:func:`app.factory.create_app`, with :func:`freeze_startup_heap` as the last start-up step."""
    app = factory.create_app(settings)
    app.on_startup.append(freeze_startup_heap)
    # git fetches skip the application's middleware stack for the one path that needs none of it
    # (forge/smart_http.py GitFastPath: anything else, including every refusal, still goes through).
    install_fast_path(app, factory.InstalledIdentity())
    return app
