"""Who may do what to a repository on the web pages and the JSON API (the git side is
:mod:`forge.access`): one guard policy, the same codes on HTML and JSON (ARCHITECTURE.md, Security)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException, PermissionDeniedException

from app.security import AuthInfo
from domains.account.models import User
from forge.access import NOT_FOUND, may_see
from forge.models import ForgeRepo
from forge.services import Permission, RepoService, at_least

__all__ = ["load_repo", "request_line", "viewer"]


def viewer(request: Request[Any, Any, Any]) -> tuple[User | None, AuthInfo | None]:
    """Who is asking. Only called where the answer may depend on it (private pages and repositories)."""
    user: User | None = request.scope.get("user")
    auth = request.scope.get("auth")
    return user, auth if isinstance(auth, AuthInfo) else None


class MovedPermanently(HTTPException):
    """A renamed repository's old URL: 301 to the new one (the error handler keeps the Location)."""

    status_code = 301
    new_name: str = ""
    old: tuple[str, str] = ("", "")


def moved_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Point the old URL's path (web ``/forge/o/old/...`` or API ``/api/v1/repos/o/old/...``) at the new name."""
    assert isinstance(exc, MovedPermanently)
    owner, old = exc.old
    path = request.url.path
    for lead in (f"/forge/{owner}/", f"/api/v1/repos/{owner}/"):
        if path.startswith(lead):
            tail = path[len(lead):]
            segment, _sep, rest = tail.partition("/")
            if segment.lower() == old.lower():
                path = f"{lead}{exc.new_name}" + (f"/{rest}" if _sep else "")
            break
    query = request.url.query
    location = path + (f"?{query}" if query else "")
    return Response({"message": "This repository was renamed.", "url": location}, status_code=301,
                    headers={"Location": location})


async def redirect_if_renamed(service: RepoService, owner: str, name: str, user: User | None,
                              auth: AuthInfo | None, path: str | None = None) -> None:
    """Raise a 301 to the new name when ``owner/name`` was renamed and the caller may see the
    repository (to anyone else an old name is as absent as any other)."""
    repo = await service.redirected(owner, name)
    if repo is None:
        return
    permission, _own = await service.access(user, repo)
    if not may_see(repo.is_private, permission, auth):
        return
    exc = MovedPermanently(detail="This repository was renamed.")
    exc.new_name = repo.name
    exc.old = (owner, name)
    raise exc


def request_line(request: Request[Any, Any, Any]) -> str:
    """``"POST /forge/bob/x/settings"``: what the audit log records of an administrator's request."""
    return f"{request.method} {request.url.path}"


async def load_repo(service: RepoService, owner: str, name: str, user: User | None, need: Permission,
                    auth: AuthInfo | None = None, *, audit: str = "") -> tuple[ForgeRepo, Permission]:
    """The repository and the caller's permission, or the house error: 404 for an absent
    repository and for a private one the caller may not see (anonymous included: web and API
    pages answer the same for both), 401 anonymous on a change, 403 when they may see it but not
    do ``need``. With ``audit`` (the request, e.g. ``"POST /forge/bob/x/settings"``), an
    administrator's use of powers they hold only as site admin goes to the audit log."""
    repo = await service.get_by_owner_and_name(owner, name)
    if repo is None:
        await redirect_if_renamed(service, owner, name, user, auth)
        raise NotFoundException(NOT_FOUND)
    permission, own = await service.access(user, repo)
    if not may_see(repo.is_private, permission, auth):
        raise NotFoundException(NOT_FOUND)
    if need != "read":
        if user is None:
            raise NotAuthorizedException("Sign in to continue.")
        scope = "repo:write"
        if auth is not None and not auth.allows(scope):
            raise PermissionDeniedException(f"This token lacks the '{scope}' scope.")
    if not at_least(permission, need):
        raise PermissionDeniedException("You don't have permission to do that in this repository.")
    if audit and user is not None and not at_least(own, need):
        await service.audit_admin_use(user, repo, need, audit)
    return repo, permission
