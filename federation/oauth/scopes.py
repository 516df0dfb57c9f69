"""The scopes the authorization server knows, in the words the consent screen uses."""

from __future__ import annotations

from domains.account.schemas import SCOPES as TOKEN_SCOPES

SCOPE_TEXT: dict[str, str] = {
    "openid": "Sign you in with your Rose Ash account",
    "profile": "See your username, display name and profile page",
    "email": "See your email address",
    **TOKEN_SCOPES,
}

# Scopes that describe the user; a client acting for itself (client credentials) cannot have them.
USER_SCOPES = frozenset({"openid", "profile", "email"})


def split_scope(scope: str | None) -> list[str]:
    """Scopes in request order, duplicates dropped."""
    seen: list[str] = []
    for item in (scope or "").split():
        if item not in seen:
            seen.append(item)
    return seen


def describe(scope: str | None) -> list[tuple[str, str]]:
    return [(s, SCOPE_TEXT.get(s, s)) for s in split_scope(scope)]
