"""``rose-ash forge mirror …``: the mirror client from the command line.

Tokens for remotes are never taken from argv (other users can read it in ``ps``): pass the
*name* of an environment variable with ``--token-env`` (default ``ROSE_ASH_MIRROR_TOKEN``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.settings import Settings

TOKEN_ENV = "ROSE_ASH_MIRROR_TOKEN"


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj.app.state.settings
    return settings


def _token(var: str) -> str | None:
    return os.environ.get(var) or None


def _split(full: str) -> tuple[str, str]:
    owner, _, name = full.partition("/")
    if not owner or not name:
        raise click.BadParameter("use owner/name", param_hint="--repo")
    return owner, name


def _die(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group(name="forge")
def forge_group() -> None:
    """Forge administration."""


@forge_group.group(name="mirror")
def mirror_group() -> None:
    """Pull mirrors and push targets (git CLI underneath)."""


@mirror_group.command(name="ls-remote")
@click.argument("url")
@click.option("--token-env", default=TOKEN_ENV, show_default=True, help="Environment variable holding the token.")
@click.pass_context
def ls_remote_command(ctx: click.Context, url: str, token_env: str) -> None:
    """List a remote's HEAD, heads and tags."""
    from forge.remote import MirrorError, build_remote, ls_remote
    from forge.runtime import runtime_for

    settings = _settings(ctx)

    async def run() -> None:
        remote = await build_remote(url, _token(token_env), allow_private=settings.federation_allow_private_addresses)
        listing = await ls_remote(remote, runtime_for(settings).store)
        if listing.head:
            click.echo(f"ref: refs/heads/{listing.head}\tHEAD")
        for name, oid in sorted(listing.refs.items()):
            click.echo(f"{oid}\t{name}")

    try:
        asyncio.run(run())
    except MirrorError as exc:
        _die(str(exc))


@mirror_group.command(name="add")
@click.option("--repo", "full", required=True, help="owner/name of the repository here.")
@click.option("--direction", type=click.Choice(["pull", "push"]), required=True)
@click.option("--url", required=True)
@click.option("--interval", default=3600, show_default=True, help="Seconds between syncs.")
@click.option("--token-env", default=TOKEN_ENV, show_default=True)
@click.option("--follow-force", is_flag=True,
              help="Pull: follow force-pushes, keeping the replaced tips under refs/mirror-backup/.")
@click.pass_context
def add_command(ctx: click.Context, full: str, direction: str, url: str, interval: int, token_env: str,
                follow_force: bool) -> None:
    """Add a pull mirror or push target; its first sync is queued for the worker."""
    from app.commands import with_session
    from app.forms import InputProblems
    from forge.mirror import MirrorService
    from forge.runtime import runtime_for
    from forge.services import RepoService

    settings = _settings(ctx)
    owner, name = _split(full)

    async def work(session: AsyncSession) -> str:
        store = runtime_for(settings).store
        repo = await RepoService(session, store).get_by_owner_and_name(owner, name)
        if repo is None:
            raise InputProblems({"repo": f"no repository {full}"})
        mirror = await MirrorService(session, store, settings).add(
            repo, direction=direction, remote_url=url, token=_token(token_env), interval_seconds=interval,
            follow_force=follow_force)
        return str(mirror.id)

    try:
        click.echo(with_session(settings, work))
    except InputProblems as exc:
        _die("; ".join(f"{k}: {v}" for k, v in exc.errors.items()))


@mirror_group.command(name="list")
@click.option("--repo", "full", required=True)
@click.pass_context
def list_command(ctx: click.Context, full: str) -> None:
    """Show a repository's mirrors (never their credentials)."""
    import json

    from app.commands import with_session
    from forge.mirror import MirrorService, mirror_view
    from forge.runtime import runtime_for
    from forge.services import RepoService

    settings = _settings(ctx)
    owner, name = _split(full)

    async def work(session: AsyncSession) -> list[dict[str, object]] | None:
        store = runtime_for(settings).store
        repo = await RepoService(session, store).get_by_owner_and_name(owner, name)
        if repo is None:
            return None
        return [mirror_view(m) for m in await MirrorService(session, store, settings).list_for(repo)]

    found = with_session(settings, work)
    if found is None:
        _die(f"no repository {full}")
    click.echo(json.dumps(found, indent=2))


@mirror_group.command(name="sync")
@click.option("--repo", "full", required=True)
@click.pass_context
def sync_command(ctx: click.Context, full: str) -> None:
    """Queue an immediate sync of every mirror of a repository."""
    from app.commands import with_session
    from forge.mirror import MirrorService
    from forge.runtime import runtime_for
    from forge.services import RepoService

    settings = _settings(ctx)
    owner, name = _split(full)

    async def work(session: AsyncSession) -> int:
        store = runtime_for(settings).store
        repo = await RepoService(session, store).get_by_owner_and_name(owner, name)
        if repo is None:
            return -1
        service = MirrorService(session, store, settings)
        mirrors = await service.list_for(repo)
        for mirror in mirrors:
            await service.schedule_now(repo, str(mirror.id))
        return len(mirrors)

    count = with_session(settings, work)
    if count < 0:
        _die(f"no repository {full}")
    click.echo(f"queued {count} sync(s)")
