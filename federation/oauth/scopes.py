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
# Mastodon's client API scopes (docs.joinmastodon.org/api/oauth-scopes/): the apps ask for the
# broad ``read write follow push``; newer ones for the granular ``read:statuses``-style scopes.
# A broad scope covers its granular ones (MASTODON_IMPLIES); ``follow`` is deprecated (Mastodon
# 3.5) but still accepted, as its granular equivalents: follows, blocks and mutes.
MASTODON_GRANULAR: dict[str, str] = {
    "read:accounts": "See accounts, your own profile included",
    "read:blocks": "See whom you block",
    "read:bookmarks": "See your bookmarks",
    "read:favourites": "See the posts you liked",
    "read:filters": "See your filters",
    "read:follows": "See whom you follow and who follows you",
    "read:lists": "See your lists",
    "read:mutes": "See whom you mute",
    "read:notifications": "See your notifications",
    "read:search": "Search as you",
    "read:statuses": "See posts and timelines, including posts only you or your followers can see",
    "write:accounts": "Change your profile",
    "write:blocks": "Block and unblock accounts",
    "write:bookmarks": "Bookmark posts",
    "write:conversations": "Manage your direct conversations",
    "write:favourites": "Like and unlike posts",
    "write:filters": "Change your filters",
    "write:follows": "Follow and unfollow accounts",
    "write:lists": "Change your lists",
    "write:media": "Upload pictures",
    "write:mutes": "Mute and unmute accounts",
    "write:notifications": "Clear your notifications",
    "write:reports": "Report accounts and posts",
    "write:statuses": "Post, boost and delete posts as you",
}
MASTODON_IMPLIES: dict[str, frozenset[str]] = {
    "read": frozenset(s for s in MASTODON_GRANULAR if s.startswith("read:")),
    "write": frozenset(s for s in MASTODON_GRANULAR if s.startswith("write:")),
    "follow": frozenset({"read:follows", "write:follows", "read:blocks", "write:blocks", "read:mutes",
                         "write:mutes"}),
    "push": frozenset(),
}
SCOPE_TEXT.update({
    "read": "Read everything of yours through Mastodon apps: your profile, timelines, posts (followers-only "
            "and direct ones included), notifications, follows, blocks and mutes",
    "write": "Act as you through Mastodon apps: post, reply, like, boost and delete posts, change your "
             "profile, follow, block and mute accounts, clear notifications",
    "follow": "See and change whom you follow, block and mute",
    "push": "Receive push notifications (not offered yet: this grants nothing)",
    **MASTODON_GRANULAR,
})


def mastodon_scopes_covering(granular: str) -> tuple[str, ...]:
    """Every scope that lets a token do what ``granular`` names: itself and the broad scopes that
    imply it (a route declares all of them, ``app.access.token(*...)``)."""
    return (granular, *sorted(broad for broad, implied in MASTODON_IMPLIES.items() if granular in implied))


# The consent page's promise, true for every scope above.
NEVER_TEXT = ("It can never use the Rose Ash website as you: it cannot post, change your settings or "
              "password, create access tokens or use the administration pages.")
# Mastodon apps act as the member in the social hub (post, follow): the promise says what remains.
MASTODON_NEVER_TEXT = ("It can never use the Rose Ash website as you: it cannot change your settings or "
                       "password, create access tokens or use the administration pages.")


def never_text(scope: str | None) -> str:
    """The consent page's promise for these scopes: apps writing through the Mastodon API do post."""
    writes = {"write", "follow", *(s for s in MASTODON_GRANULAR if s.startswith("write:"))}
    return MASTODON_NEVER_TEXT if writes & set(split_scope(scope)) else NEVER_TEXT


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
