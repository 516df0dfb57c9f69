"""``rose-ash federation ...``: the instance's domain blocks from the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@click.group(name="federation")
def federation_group() -> None:
    """Moderate ActivityPub federation."""


@federation_group.command(name="block-domain")
@click.argument("domain")
@click.option("--reason", default="", help="Why (kept for the moderators).")
@click.option("--severity", type=click.Choice(["suspend", "limit"]), default="suspend", show_default=True,
              help="suspend: refuse it outright; limit: keep federating, out of sight of non-followers.")
@click.pass_context
def block_domain(ctx: click.Context, domain: str, reason: str, severity: str) -> None:
    """Block DOMAIN (and its subdomains; host:port blocks that port only). Suspend refuses its
    activities, stops deliveries to it and ends the follows between its accounts and ours; limit
    keeps it federating, but off the federated timeline and with follows needing approval."""
    from app.commands import fail, settings_from, with_session
    from federation.activitypub.moderation import DomainBlockResult, DomainBlocks, ModerationError
    from federation.activitypub.urls import Urls

    settings = settings_from(ctx)

    async def work(session: AsyncSession) -> DomainBlockResult:
        return await DomainBlocks(session, Urls(settings.base_url).host).add(domain, reason, severity)

    try:
        result = with_session(settings, work)
    except ModerationError as exc:
        fail({exc.field: str(exc)})
    click.echo(result.summary())


@federation_group.command(name="unblock-domain")
@click.argument("domain")
@click.pass_context
def unblock_domain(ctx: click.Context, domain: str) -> None:
    """Lift the block of DOMAIN (follows it ended are not restored)."""
    from app.commands import fail, settings_from, with_session
    from federation.activitypub.moderation import DomainBlocks, ModerationError, normalize_domain
    from federation.activitypub.urls import Urls

    settings = settings_from(ctx)

    async def work(session: AsyncSession) -> bool:
        return await DomainBlocks(session, Urls(settings.base_url).host).remove(domain)

    try:
        removed = with_session(settings, work)
    except ModerationError as exc:
        fail({exc.field: str(exc)})
    if not removed:
        fail({"domain": f"{normalize_domain(domain)} is not blocked"})
    click.echo(f"unblocked {normalize_domain(domain)}")


@federation_group.command(name="blocked-domains")
@click.pass_context
def blocked_domains(ctx: click.Context) -> None:
    """List the blocked domains, one a line: domain, severity and reason, tab-separated."""
    from app.commands import settings_from, with_session
    from federation.activitypub.moderation import DomainBlocks
    from federation.activitypub.urls import Urls

    settings = settings_from(ctx)

    async def work(session: AsyncSession) -> list[tuple[str, str, str]]:
        found = await DomainBlocks(session, Urls(settings.base_url).host).all()
        return [(b.domain, b.severity, b.reason) for b in found]

    for domain, severity, reason in with_session(settings, work):
        click.echo(f"{domain}\t{severity}\t{' '.join(reason.split())}")
