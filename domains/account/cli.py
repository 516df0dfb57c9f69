"""``rose-ash users ...`` and ``rose-ash tokens ...``: members and personal access tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from app.commands import fail, settings_from, with_session

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["tokens_group", "users_group"]


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
        name = with_session(settings_from(ctx), work)
    except InputProblems as exc:
        if admin and "username" in exc.errors and exc.status == 409:
            exc.errors["username"] += f" To make an existing member an administrator: rose-ash users promote {username}"
        fail(exc.errors)
    click.echo(f"created user {name}{' (admin)' if admin else ''}")


@users_group.command(name="promote")
@click.argument("username")
@click.option("--revoke", is_flag=True, help="Remove the admin role instead.")
@click.pass_context
def users_promote(ctx: click.Context, username: str, revoke: bool) -> None:
    """Give an existing member the admin role (sign up on the site, then run this)."""
    from app import audit
    from app.forms import InputProblems
    from domains.account.services import AccountService

    async def work(session: AsyncSession) -> bool:
        accounts = AccountService(session)
        user = await accounts.by_username(username)
        if user is None:
            raise InputProblems({"username": f"no user called {username}"})
        if user.is_admin == (not revoke):
            return False
        before = user.role_names
        user.is_admin = not revoke
        await accounts.repository.update(user)
        await audit.record(session, None, "account.roles", f"@{user.username}",
                           f"{', '.join(before) or 'member'} → {', '.join(user.role_names) or 'member'}",
                           subject_id=user.id)
        return True

    try:
        changed = with_session(settings_from(ctx), work)
    except InputProblems as exc:
        fail(exc.errors)
    state = "no longer an administrator" if revoke else "an administrator"
    click.echo(f"{username} is {'now ' if changed else 'already '}{state}")


@users_group.command(name="invite")
@click.argument("username")
@click.pass_context
def users_invite(ctx: click.Context, username: str) -> None:
    """Mail USERNAME a link to set their password (valid 7 days), e.g. authors brought in by a Ghost
    import, who have none. Any earlier invitation stops working."""
    from app.forms import InputProblems
    from domains.account import mailflows
    from domains.account.services import AccountService
    from domains.account.tokens import Purpose

    settings = settings_from(ctx)

    async def work(session: AsyncSession) -> str:
        user = await AccountService(session).by_username(username)
        if user is None:
            raise InputProblems({"username": f"no user called {username}"})
        if not user.is_active:
            raise InputProblems({"username": f"{username} is suspended; restore the account first"})
        await mailflows.mail_password_link(session, settings.base_url, user, Purpose.INVITE)
        return user.email

    try:
        email = with_session(settings, work)
    except InputProblems as exc:
        fail(exc.errors)
    click.echo(f"invitation to set a password queued for {username} <{email}>")


@users_group.command(name="grant-role")
@click.argument("username")
@click.argument("role", type=click.Choice(["admin", "editor", "author", "producer"]))
@click.option("--remove", is_flag=True, help="Take the role away instead.")
@click.pass_context
def users_grant_role(ctx: click.Context, username: str, role: str, remove: bool) -> None:
    """Grant a member a role (admin, editor, author or producer); --remove takes it away."""
    from app.forms import InputProblems
    from domains.account.services import AccountService

    async def work(session: AsyncSession) -> list[str]:
        accounts = AccountService(session)
        user = await accounts.by_username(username)
        if user is None:
            raise InputProblems({"username": f"no user called {username}"})
        user = await accounts.grant_role(user, role, on=not remove)
        return user.role_names

    try:
        roles = with_session(settings_from(ctx), work)
    except InputProblems as exc:
        fail(exc.errors)
    click.echo(f"{username}: {', '.join(roles) or 'member'}")


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
        secret = with_session(settings_from(ctx), work)
    except InputProblems as exc:
        fail(exc.errors)
    click.echo(f"token for {username} with scopes {' '.join(sorted(scopes))}:")
    click.echo(secret)
