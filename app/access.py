"""How each route may be reached: the one declaration the auth middleware, the guard and the
authorization-matrix test (tests/app/test_access_matrix.py) all read.

Every route handler carries ``opt={"access": Access(...)}``, built by the helpers below. Litestar
merges ``opt`` router → controller → handler, so a domain puts its default on its Router and a
handler that differs overrides it. The reaches (ARCHITECTURE.md, Security):

- ``public``   anyone; a browser session may personalise the answer.
- ``session``  a member signed in with the session cookie (optionally holding ``role``).
- ``token``    a personal access token or OAuth access token carrying one of ``scopes``; the
               session cookie is never honoured there. ``anonymous`` routes also answer callers
               with no credentials at all (public data such as a public repository).
- ``git``      git smart HTTP: anonymous or Basic/token credentials, never the cookie; the handler
               requires ``repo:read`` to fetch private data and ``repo:write`` to push.
- ``machine``  authenticated by its own means (HTTP signatures, OAuth client credentials, webhook
               signatures); neither the cookie nor a member's token identifies anybody there.

A token sent to a public or session route authenticates nobody: the request is anonymous there.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

import msgspec

ACCESS_OPT_KEY = "access"

Role = Literal["author", "producer", "admin"]


class Reach(StrEnum):
    PUBLIC = "public"
    SESSION = "session"
    TOKEN = "token"
    GIT = "git"
    MACHINE = "machine"


class Access(msgspec.Struct, frozen=True, kw_only=True):
    reach: Reach
    # TOKEN: a token must carry at least one of these scopes (403 otherwise).
    scopes: frozenset[str] = frozenset()
    # SESSION: the member must also hold this role (403 otherwise).
    role: Role | None = None
    # The object type the route acts on whose owner (or collaborator, for repositories) may use it;
    # anybody else gets 403 or 404 from the handler. The matrix test fills path parameters from it.
    owner: str | None = None
    # TOKEN: callers without credentials may use it too (the handler shows only public data).
    anonymous: bool = False
    # TOKEN: only OAuth access tokens count here (``/oauth/userinfo``), not personal ones; the
    # handler authenticates the bearer token itself and answers with RFC 6750 error codes.
    oauth_only: bool = False

    @property
    def accepts_tokens(self) -> bool:
        return self.reach in (Reach.TOKEN, Reach.GIT)


def _opt(access: Access) -> dict[str, Any]:
    return {ACCESS_OPT_KEY: access}


def public(*, owner: str | None = None) -> dict[str, Any]:
    return _opt(Access(reach=Reach.PUBLIC, owner=owner))


def session(*, role: Role | None = None, owner: str | None = None) -> dict[str, Any]:
    return _opt(Access(reach=Reach.SESSION, role=role, owner=owner))


def admin(*, owner: str | None = None) -> dict[str, Any]:
    return session(role="admin", owner=owner)


def token(*scopes: str, anonymous: bool = False, owner: str | None = None,
          oauth_only: bool = False) -> dict[str, Any]:
    if not scopes:
        raise ValueError("A token route names the scope(s) that govern it.")
    return _opt(Access(reach=Reach.TOKEN, scopes=frozenset(scopes), anonymous=anonymous, owner=owner,
                       oauth_only=oauth_only))


def git() -> dict[str, Any]:
    return _opt(Access(reach=Reach.GIT, owner="repo"))


def machine() -> dict[str, Any]:
    return _opt(Access(reach=Reach.MACHINE))


def access_of(handler: Any) -> Access | None:
    """The declaration of a route handler, or None when it declares nothing."""
    if handler is None:
        return None
    value = getattr(handler, "opt", {}).get(ACCESS_OPT_KEY)
    return value if isinstance(value, Access) else None
