"""The scopes the authorization server knows, in the words the consent screen uses."""

from __future__ import annotations

from domains.account.schemas import SCOPES as TOKEN_SCOPES

# What each scope lets an application do, in the words the consent page shows (issue 11 item 1).
# An app's token is honoured only where a scope governs it (app/access.py): never on the website.
SCOPE_TEXT: dict[str, str] = {
    "openid": "Confirm who you are, so it can sign you in with your Rose Ash account "
              "(it learns your account's ID, nothing more)",
    "profile": "See your username, display name and public profile page",
    "email": "See your email address",
    "repo:read": "Read every repository you can see, private ones included: "
                 "clone and fetch them with git and read them through the API",
    "repo:write": "Change every repository you may change: push commits, create and delete "
                  "repositories, manage their collaborators and mirrors (and read them)",
    "api": "Use the JSON API as you: read your account details and list your repositories",
    "market": "Create and change your market products, their variants and stock through the API",
    "events": "Check tickets in at events you run and book event places through the API",
}
# The consent page's promise, true for every scope above.
NEVER_TEXT = ("It can never use the Rose Ash website as you: it cannot post, change your settings or "
              "password, create access tokens or use the administration pages.")
if missing := set(TOKEN_SCOPES) - set(SCOPE_TEXT):
    raise RuntimeError(f"personal-token scopes without consent text: {sorted(missing)}")

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
