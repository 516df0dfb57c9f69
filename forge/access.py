"""Who may fetch from or push to a repository over git smart HTTP, and who may know it exists.

One guard policy (ARCHITECTURE.md, Security; design/forge.md §2 item 9; gitprotocol-http(5)
"Authentication"): a public repository is fetched anonymously; a push always needs
credentials. Private and absent look the same to those who may not see them: an anonymous
caller gets 401 with a Basic challenge for both (so git prompts, as GitHub does), an
authenticated caller who may not read it gets 404 for both; one who may see it but not do this
gets 403. Wrong credentials are refused with 401 by ``app.security.AuthMiddleware`` before we
get here. Tokens must carry ``repo:read`` to see a private repository (without it the
repository is absent to them) and ``repo:write`` to push.
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
NOT_FOUND = "Repository not found."


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


def may_see(is_private: bool, permission: Permission, auth: AuthInfo | None) -> bool:
    """May the caller know this repository exists? Everyone may know a public one; a private one
    only callers with read permission, and a token only if it carries ``repo:read``."""
    if not is_private:
        return True
    return at_least(permission, "read") and (auth is None or auth.allows("repo:read"))


async def check_access(service: RepoService, owner: str, name: str, user: User | None, auth: AuthInfo | None,
                       action: Action, *, audit: str = "") -> Allowed | Denied:
    """Resolve the repository and the caller's right to ``action`` it, before any git process starts.

    With ``audit`` (e.g. ``"git fetch"``), an administrator's use of powers they hold only as site
    admin is written to the audit log in the request's transaction.
    """
    repo = await service.get_by_owner_and_name(owner, name)
    permission, own = await service.access(user, repo) if repo is not None else ("none", "none")
    if repo is None or not may_see(repo.is_private, permission, auth):
        # Absent, or private and not theirs: one answer for both (ARCHITECTURE.md, Security).
        return Denied(401, "Authentication required.") if user is None else Denied(404, NOT_FOUND)
    decision = decide_access(repo.is_private, user is not None, permission, auth, action)
    if decision is not None:
        return decision
    if audit and user is not None and not at_least(own, action):
        await service.audit_admin_use(user, repo, action, audit)
    return Allowed(repo, user, permission)


def decide_access(is_private: bool, signed_in: bool, permission: Permission, auth: AuthInfo | None,
                  action: Action) -> Denied | None:
    """The pure part of :func:`check_access` for a repository that exists; None means allowed."""
    if not may_see(is_private, permission, auth):
        return Denied(404, NOT_FOUND) if signed_in else Denied(401, "Authentication required.")
    if action == "read":
        # Public data needs no credentials, but a token that comes must carry the scope (app/access.py);
        # a private repository already passed may_see, which asks the same of tokens.
        if auth is not None and not auth.allows("repo:read"):
            return Denied(403, "This token lacks the 'repo:read' scope.")
        return None
    if not signed_in:
        return Denied(401, "Authentication required to push.")
    if not at_least(permission, "write"):
        return Denied(403, "You may read this repository but not push to it.")
    if auth is not None and not auth.allows("repo:write"):
        return Denied(403, "This token lacks the 'repo:write' scope.")
    return None
