"""Who may fetch from or push to a repository over git smart HTTP.

One guard policy (ARCHITECTURE.md, Security; design/forge.md §2 item 9; gitprotocol-http(5)
"Authentication"): a public repository is fetched anonymously; a push always needs
credentials; anonymous on a private repository gets 401 with a Basic challenge (so git asks
for credentials); a signed-in caller who may not know the repository exists gets 404; one who
may see it but not do this gets 403. Wrong credentials are refused with 401 by
``app.security.AuthMiddleware`` before we get here. Tokens must carry ``repo:read`` to fetch a
private repository and ``repo:write`` to push.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.security import AuthInfo
from domains.account.models import User
from forge.models import ForgeRepo
from forge.services import Permission, RepoService, at_least

REALM = 'Basic realm="Rose Ash"'
Action = Literal["read", "write"]


@dataclass(frozen=True)
class Denied:
    status: int
    message: str

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": REALM} if self.status == 401 else {}


@dataclass(frozen=True)
class Allowed:
    repo: ForgeRepo
    user: User | None
    permission: Permission


async def check_access(service: RepoService, owner: str, name: str, user: User | None, auth: AuthInfo | None,
                       action: Action) -> Allowed | Denied:
    """Resolve the repository and the caller's right to ``action`` it, before any git process starts."""
    repo = await service.get_by_owner_and_name(owner, name)
    if repo is None:
        if action == "write" and user is None:
            return Denied(401, "Authentication required to push.")
        return Denied(404, "Repository not found.")
    permission = await service.permission(user, repo)
    decision = decide_access(repo.is_private, user is not None, permission, auth, action)
    return decision if decision is not None else Allowed(repo, user, permission)


def decide_access(is_private: bool, signed_in: bool, permission: Permission, auth: AuthInfo | None,
                  action: Action) -> Denied | None:
    """The pure part of :func:`check_access`; None means allowed."""
    if action == "read":
        if at_least(permission, "read") and not is_private:
            # Public data needs no credentials, but a token that comes must carry the scope (app/access.py).
            if auth is not None and not auth.allows("repo:read"):
                return Denied(403, "This token lacks the 'repo:read' scope.")
            return None
        if not signed_in:
            return Denied(401, "Authentication required.")
        if not at_least(permission, "read"):
            return Denied(404, "Repository not found.")
        if auth is not None and not auth.allows("repo:read"):
            return Denied(403, "This token lacks the 'repo:read' scope.")
        return None
    if not signed_in:
        return Denied(401, "Authentication required to push.")
    if not at_least(permission, "read"):
        return Denied(404, "Repository not found.")
    if not at_least(permission, "write"):
        return Denied(403, "You may read this repository but not push to it.")
    if auth is not None and not auth.allows("repo:write"):
        return Denied(403, "This token lacks the 'repo:write' scope.")
    return None
