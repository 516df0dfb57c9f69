"""The ``rose-ash`` command: Litestar's CLI with this app preloaded, plus our own groups.

``rose-ash run``, ``rose-ash database upgrade`` come from Litestar and advanced-alchemy;
``users``, ``tokens`` and ``worker`` are added here through Litestar's CLI plugin hook.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import click
from litestar.plugins import CLIPluginProtocol

if TYPE_CHECKING:
    from litestar import Litestar
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.settings import Settings

T = TypeVar("T")


def _settings(ctx: click.Context) -> Settings:
    app: Litestar = ctx.obj.app
    settings: Settings = app.state.settings
    return settings


def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from app.db import make_engine, make_sessionmaker

    async def run() -> T:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine, settings)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _fail(errors: dict[str, str]) -> None:
    for field, message in errors.items():
        click.echo(f"error: {field}: {message}", err=True)
    sys.exit(1)


@click.group(name="users")
def users_group() -> None:
    """Manage member accounts."""


@users_group.command(name="create")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--display-name", default="")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.pass_context
def users_create(ctx: click.Context, username: str, email: str, password: str, display_name: str,
                 admin: bool) -> None:
    """Create a user (it can sign in at once)."""
    from app.forms import InputProblems
    from domains.account.schemas import SignupInput
    from domains.account.services import AccountService

    async def work(session: AsyncSession) -> str:
        user = await AccountService(session).signup(
            SignupInput(username=username, email=email, password=password, display_name=display_name),
            is_admin=admin,
        )
        return user.username

    try:
        name = _with_session(_settings(ctx), work)
    except InputProblems as exc:
        _fail(exc.errors)
    click.echo(f"created user {name}{' (admin)' if admin else ''}")


@click.group(name="tokens")
def tokens_group() -> None:
    """Manage personal access tokens."""


@tokens_group.command(name="create")
@click.option("--username", required=True)
@click.option("--scope", "scopes", multiple=True, required=True, help="repo:read, repo:write or api")
@click.option("--name", default="cli", help="A label to recognise the token by.")
@click.pass_context
def tokens_create(ctx: click.Context, username: str, scopes: tuple[str, ...], name: str) -> None:
    """Create a token and print it as the last line (it is not shown again)."""
    from app.forms import InputProblems
    from domains.account.services import AccountService, TokenService

    async def work(session: AsyncSession) -> str:
        user = await AccountService(session).by_username(username)
        if user is None:
            raise InputProblems({"username": f"no user called {username}"})
        _token, secret = await TokenService(session).issue(user, name, list(scopes))
        return secret

    try:
        secret = _with_session(_settings(ctx), work)
    except InputProblems as exc:
        _fail(exc.errors)
    click.echo(f"token for {username} with scopes {' '.join(sorted(scopes))}:")
    click.echo(secret)


@click.command(name="worker")
@click.option("--concurrency", default=4, show_default=True)
def worker_command(app: Litestar, concurrency: int) -> None:
    """Run the durable job worker until SIGINT/SIGTERM (finishing jobs in flight)."""
    from app.jobs import run_worker_forever

    # A top-level command: Litestar's group injects ``app`` (and would inject ``ctx`` too, so a
    # click.pass_context here passed it twice). Loading the app imported every domain, so every
    # job handler is registered.
    settings: Settings = app.state.settings
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
    def on_cli_init(self, cli: click.Group) -> None:
        cli.add_command(users_group)
        cli.add_command(tokens_group)
        cli.add_command(worker_command)
        from domains.blog.cli import blog_group

        cli.add_command(blog_group)
        from federation.oauth.cli import oauth_group

        cli.add_command(oauth_group)
        from federation.activitypub.cli import federation_group

        cli.add_command(federation_group)
        from forge.cli import forge_group

        cli.add_command(forge_group)


# uvicorn believes ``X-Forwarded-For`` from the addresses in FORWARDED_ALLOW_IPS, which it
# defaults to 127.0.0.1: then any client on this machine, or any request a same-host proxy passes
# through without rewriting the header, picks its own address, and per-address rate limits (inbox,
# sign-in) count nothing. So ``rose-ash`` trusts no proxy unless the operator names it
# (README: Configuration; deploy/varnish/README.md).
TRUST_NO_PROXY = ""


def main() -> None:
    os.environ.setdefault("LITESTAR_APP", "app.asgi:create_app")
    os.environ.setdefault("FORWARDED_ALLOW_IPS", TRUST_NO_PROXY)
    from litestar.cli.main import litestar_group

    litestar_group(prog_name="rose-ash")


