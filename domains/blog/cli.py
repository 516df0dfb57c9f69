"""``rose-ash blog ...``: Ghost import and the author and editor roles from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from domains.blog.schemas import ImportReport


@click.group(name="blog")
def blog_group() -> None:
    """The blog: Ghost import, authors and editors."""


@blog_group.command(name="import-ghost")
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Report what would be imported; write nothing.")
@click.option("--ghost-url", default=None, help="The old Ghost site's origin, replacing __GHOST_URL__ "
              "(default: ROSE_ASH_GHOST_URL).")
@click.pass_context
def import_ghost_command(ctx: click.Context, export: Path, dry_run: bool, ghost_url: str | None) -> None:
    """Import a Ghost JSON export (posts, pages, tags, authors) in one transaction."""
    from app.commands import settings_from, with_session
    from domains.blog.importer import GhostImportError, import_ghost

    settings = settings_from(ctx)
    raw = export.read_bytes()

    async def work(session: AsyncSession) -> ImportReport:
        report = await import_ghost(session, raw, dry_run=dry_run, base_url=settings.base_url,
                                    ghost_url=settings.ghost_url if ghost_url is None else ghost_url)
        if dry_run:
            await session.rollback()
        return report

    try:
        report = with_session(settings, work)
    except GhostImportError as exc:
        click.echo(f"error: {exc}", err=True)
        click.echo("nothing was imported", err=True)
        sys.exit(1)
    for line in report.lines():
        click.echo(line)


def _grant(ctx: click.Context, username: str, role: str, revoke: bool) -> None:
    from app.commands import settings_from, with_session
    from domains.account.services import AccountService

    async def work(session: AsyncSession) -> bool:
        accounts = AccountService(session)
        user = await accounts.by_username(username)
        if user is None:
            return False
        if role == "editor":
            await accounts.set_editor(user, not revoke)
        else:
            await accounts.set_author(user, not revoke)
        return True

    if not with_session(settings_from(ctx), work):
        click.echo(f"error: no user called {username}", err=True)
        sys.exit(1)
    click.echo(f"{'removed the ' + role + ' role from' if revoke else 'granted the ' + role + ' role to'} {username}")


@blog_group.command(name="grant-author")
@click.argument("username")
@click.option("--revoke", is_flag=True, help="Remove the author role instead.")
@click.pass_context
def grant_author_command(ctx: click.Context, username: str, revoke: bool) -> None:
    """Let a member write and publish their own posts on the blog (or stop them with --revoke)."""
    _grant(ctx, username, "author", revoke)


@blog_group.command(name="grant-editor")
@click.argument("username")
@click.option("--revoke", is_flag=True, help="Remove the editor role instead.")
@click.pass_context
def grant_editor_command(ctx: click.Context, username: str, revoke: bool) -> None:
    """Let a member edit and publish every post and choose posts' authors (or stop them with --revoke)."""
    _grant(ctx, username, "editor", revoke)


@blog_group.command(name="export-ghost")
@click.argument("output", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@click.pass_context
def export_ghost_command(ctx: click.Context, output: Path) -> None:
    """Write every post, page, tag and author as a Ghost JSON export (importable by Ghost and by us)."""
    import msgspec

    from app.commands import settings_from, with_session
    from domains.blog.exporter import export_ghost

    async def work(session: AsyncSession) -> dict[str, object]:
        return await export_ghost(session)

    data = with_session(settings_from(ctx), work)
    output.write_bytes(msgspec.json.format(msgspec.json.encode(data), indent=2))
    posts = len(data["db"][0]["data"]["posts"])  # type: ignore[index]
    click.echo(f"exported {posts} posts and pages to {output}")
