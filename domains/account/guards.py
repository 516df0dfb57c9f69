"""Who may do what with accounts, beyond the route declarations.

Signing in and holding the administrator role are declared per route (app/access.py) and checked
by the app-wide guard; what is left here are the rules that need the member in question.
"""

from __future__ import annotations

from litestar.exceptions import NotFoundException

from domains.account.models import User

LOCKOUT = "You can't remove your own administrator role or suspend yourself."


def check_member(member: User | None) -> User:
    """A member an administrator acts on (suspended ones included), or 404."""
    if member is None:
        raise NotFoundException("No such member.")
    return member


def check_visible_profile(member: User | None, username: str) -> User:
    """A public profile: a suspended member looks exactly like one who never existed."""
    if member is None or not member.is_active:
        raise NotFoundException(f"There is no member called @{username}.")
    return member


def lockout_problem(actor: User, member: User, *, is_admin: bool, is_active: bool) -> str | None:
    """Why ``actor`` may not give ``member`` these flags: no administrator locks themself out."""
    if actor.id == member.id and (not is_admin or not is_active):
        return LOCKOUT
    return None
