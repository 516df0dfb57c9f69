"""The ``rose-ash`` command: Litestar's CLI with this app preloaded, plus our own groups.

``rose-ash run``, ``rose-ash database upgrade`` come from Litestar and advanced-alchemy;
``worker`` is added here, and each installed domain adds its own groups (``users``, ``tokens``,
``blog``, ``oauth``, ``federation``, ``forge``) through its plugin (app/kit.py, app/installed.py).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING

import click
from litestar.plugins import CLIPluginProtocol

if TYPE_CHECKING:
    from litestar import Litestar

    from app.settings import Settings


@click.command(name="worker")
@click.option("--concurrency", default=4, show_default=True)
def worker_command(app: Litestar, concurrency: int) -> None:
    """Run the durable job worker until SIGINT/SIGTERM (finishing jobs in flight)."""
    from app.commands import require_migrated
    from app.jobs import run_worker_forever

    # A top-level command: Litestar's group injects ``app`` (and would inject ``ctx`` too, so a
    # click.pass_context here passed it twice). Building the app imported every installed
    # domain's setup modules (app/kit.py), so every job handler is registered.
    settings: Settings = app.state.settings
    require_migrated(settings)
    _log_to_stderr(settings.log_level)
    asyncio.run(run_worker_forever(settings, concurrency=concurrency))


def _log_to_stderr(level: str) -> None:
    """The worker process's own log: every logger (jobs, federation, domains) as JSON lines.

    The web app logs only ``rose_ash.*`` itself and leaves the rest to uvicorn; a bare worker
    process has no uvicorn, so without this its job logs below WARNING would go nowhere.
    """
    import logging

    from app.logs import JSONFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


class RoseAshCLIPlugin(CLIPluginProtocol):
    """The kernel's own command; the domains' groups come with their plugins."""

    def on_cli_init(self, cli: click.Group) -> None:
        cli.add_command(worker_command)


# uvicorn believes ``X-Forwarded-For`` from the addresses in FORWARDED_ALLOW_IPS, which it
# defaults to 127.0.0.1: then any client on this machine, or any request a same-host proxy passes
# through without rewriting the header, picks its own address, and per-address rate limits (inbox,
# sign-in) count nothing. So ``rose-ash`` trusts no proxy unless the operator names it
# (README: Configuration; deploy/varnish/README.md).
TRUST_NO_PROXY = ""


# `make run` serves on HOST:PORT and names that origin ROSE_ASH_BASE_URL unless the operator
# set one (Makefile, "run"); with the same defaults here, `rose-ash users create` beside
# `PORT=9000 make run` writes the key ids and links of the server the members will use.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = "8000"


def public_origin(env: Mapping[str, str]) -> str:
    """``ROSE_ASH_BASE_URL``, else ``http://$HOST:$PORT`` exactly as the Makefile builds it."""
    return env.get("ROSE_ASH_BASE_URL") or f"http://{env.get('HOST') or DEFAULT_HOST}:{env.get('PORT') or DEFAULT_PORT}"


def _prepare_environment(env: MutableMapping[str, str]) -> None:
    env.setdefault("LITESTAR_APP", "app.asgi:create_app")
    env.setdefault("FORWARDED_ALLOW_IPS", TRUST_NO_PROXY)
    env["ROSE_ASH_BASE_URL"] = public_origin(env)


def main() -> None:
    _prepare_environment(os.environ)
    from litestar.cli.main import litestar_group

    litestar_group(prog_name="rose-ash")


