"""``rose-ash market import-url`` and ``rose-ash market import-csv``: the imports without the browser.

``import-url URL --owner USERNAME [--publish]`` fetches the page through the SSRF-safe client,
takes the proposal as it is (every variant needs a price in the market's currency, and a SKU:
one is made from the title when the page has none) and saves it for the owner's producer; its
last line is the product's public URL. ``import-csv FILE --owner USERNAME`` checks the header,
stores the file in DATA_DIR and runs the same job the web upload queues, in this process,
printing the counts and where the per-row report is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.commands import fail, settings_from, with_session
from domains.market.cli import market_group

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from domains.account.models import User

__all__ = ["import_csv", "import_url"]


async def _owner(session: AsyncSession, username: str) -> User:
    from domains.account.services import AccountService

    user = await AccountService(session).by_username(username)
    if user is None:
        fail({"owner": f"no member is called {username!r}"})
    if not user.can_sell:
        fail({"owner": f"{username} is not a producer (rose-ash users grant-role {username} producer)"})
    return user


@market_group.command(name="import-url")
@click.argument("url")
@click.option("--owner", required=True, help="The producer member the product is listed for.")
@click.option("--publish", is_flag=True, help="Make it active at once (default: a draft to review).")
@click.pass_context
def import_url(ctx: click.Context, url: str, owner: str, publish: bool) -> None:
    """Import a product from its page on another shop; prints its public URL last."""
    from app.forms import InputProblems
    from app.safe_http import SafeClient
    from domains.market.import_admin import proposal_values, save_proposal
    from domains.market.importer import ImportRefused, fetch_proposal
    from domains.market.schemas import slugify

    settings = settings_from(ctx)

    async def work(session: AsyncSession) -> tuple[Any, list[str]]:
        user = await _owner(session, owner)
        async with SafeClient(allow_private=settings.federation_allow_private_addresses) as client:
            proposal = await fetch_proposal(client, url)
            values = proposal_values(proposal, settings.market_currency)
            values["status"] = "active" if publish else "draft"
            base = slugify(proposal.title, "item").upper()[:40]
            for i, variant in enumerate(values["variants"]):
                if not variant["sku"]:
                    variant["sku"] = f"{base}-{i + 1}"
            product = await save_proposal(session, settings, client, None, user, values)
        return product, values["warnings"]

    try:
        product, warnings = with_session(settings, work)
    except ImportRefused as exc:
        fail({"url": str(exc)})
    except InputProblems as exc:
        fail(exc.errors)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"imported {product.title!r} ({product.status}, {len(product.variants)} variants, "
               f"{len(product.images)} images)")
    click.echo(f"{settings.base_url.rstrip('/')}/market/{product.slug}")


@market_group.command(name="import-csv")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--owner", required=True, help="The producer member the products are listed for.")
@click.pass_context
def import_csv(ctx: click.Context, file: Path, owner: str) -> None:
    """Import products from a CSV file (the header of /market/admin/import/template.csv)."""
    import anyio
    from uuid_utils.compat import uuid7

    from app.db import make_engine, make_sessionmaker
    from domains.market.csv_import import CsvRefused, report_path, run_import, store_upload
    from domains.market.import_models import CsvImport

    settings = settings_from(ctx)
    import_id = uuid7()

    async def chunks() -> Any:
        with file.open("rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    async def prepare(session: AsyncSession) -> None:
        user = await _owner(session, owner)
        try:
            await store_upload(settings.data_dir, import_id, chunks())
        except CsvRefused as exc:
            fail({"file": str(exc)})
        session.add(CsvImport(id=import_id, owner_id=user.id, filename=file.name[:255]))

    with_session(settings, prepare)

    async def run() -> CsvImport | None:
        engine = make_engine(settings.database_url)
        try:
            return await run_import(make_sessionmaker(engine, settings), settings.data_dir, import_id,
                                    currency=settings.market_currency, base_url=settings.base_url)
        finally:
            await engine.dispose()

    result = anyio.run(run)
    if result is None or result.state != "done":
        fail({"import": (result.error if result is not None else "") or "the import did not finish"})
    click.echo(f"{result.processed_rows} rows: {result.created_count} created, {result.updated_count} updated, "
               f"{result.skipped_count} skipped")
    click.echo(f"report: {report_path(settings.data_dir, import_id)}")
