"""``rose-ash oauth ...``: register clients and rotate the ID-token signing keys."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@click.group(name="oauth")
def oauth_group() -> None:
    """Manage the OAuth 2.0 / OpenID Connect authorization server."""


@oauth_group.command(name="create-client")
@click.option("--name", required=True, help="The application's name, shown on the consent screen.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True, help="Exact redirect URI (repeatable).")
@click.option("--public", is_flag=True, help="A public client (no secret; PKCE only), e.g. a native or browser app.")
@click.option("--first-party", is_flag=True, help="One of the co-op's own apps: skips the consent screen.")
@click.option("--scope", default="openid profile email", show_default=True, help="Scopes the client may request.")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True, help="Allowed after-logout URI.")
@click.option("--id-token-alg", type=click.Choice(["RS256", "EdDSA"]), default="RS256", show_default=True)
@click.pass_context
def create_client(ctx: click.Context, name: str, redirect_uris: tuple[str, ...], public: bool, first_party: bool,
                  scope: str, logout_uris: tuple[str, ...], id_token_alg: str) -> None:
    """Register a client and print JSON with client_id and client_secret (null for public clients)."""
    from app.commands import fail, settings_from, with_session
    from federation.oauth.registration import redirect_uri_problem
    from federation.oauth.scopes import SCOPE_TEXT, split_scope
    from federation.oauth.store import OAuthStore

    errors = {f"redirect-uri {uri}": p for uri in (*redirect_uris, *logout_uris) if (p := redirect_uri_problem(uri))}
    unknown = [s for s in split_scope(scope) if s not in SCOPE_TEXT]
    if unknown:
        errors["scope"] = f"unknown scope {' '.join(unknown)}"
    if errors:
        fail(errors)

    async def work(session: AsyncSession) -> dict[str, object]:
        client, secret = await OAuthStore(session).create_client(
            name=name, redirect_uris=list(redirect_uris), public=public, scope=" ".join(split_scope(scope)),
            first_party=first_party, post_logout_redirect_uris=list(logout_uris), id_token_alg=id_token_alg,
        )
        return {
            "client_id": client.client_id,
            "client_secret": secret,
            "name": client.name,
            "redirect_uris": client.redirect_uris,
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
            "grant_types": client.grant_types,
            "scope": client.scope,
            "first_party": client.is_first_party,
        }

    click.echo(json.dumps(with_session(settings_from(ctx), work)))


@oauth_group.command(name="rotate-keys")
@click.option("--alg", type=click.Choice(["RS256", "EdDSA"]), default=None, help="Only this algorithm.")
@click.pass_context
def rotate_keys(ctx: click.Context, alg: str | None) -> None:
    """Make new ID-token signing keys; old ones stay in the JWKS until their tokens expire."""
    from app.commands import settings_from, with_session
    from federation.oauth.signing import rotate

    settings = settings_from(ctx)

    async def work(session: AsyncSession) -> list[str]:
        return await rotate(session, settings.secret_key, alg)  # type: ignore[arg-type]

    for kid in with_session(settings, work):
        click.echo(kid)


@oauth_group.command(name="prune")
@click.pass_context
def prune(ctx: click.Context) -> None:
    """Delete expired authorization codes and tokens that can no longer be used."""
    from app.commands import settings_from, with_session
    from federation.oauth.store import OAuthStore

    async def work(session: AsyncSession) -> tuple[int, int]:
        return await OAuthStore(session).prune()

    codes, tokens = with_session(settings_from(ctx), work)
    click.echo(f"deleted {codes} authorization codes and {tokens} tokens")
