"""The forge's panel on a member's dashboard (``me.dashboard-repositories``, personal): the
repositories they own or collaborate on, private ones included, so only ever shown to them."""

from __future__ import annotations

from app.caching import CachePolicy
from forge.queries import repos_of
from fragments.registry import FragmentContext, FragmentData, fragment

__all__ = ["my_repositories"]

DASHBOARD_REPOS = 8


@fragment("me.dashboard-repositories", policy=CachePolicy.PERSONAL, title="Your repositories",
          template="fragments/me/dashboard-repositories.html", inline_timeout=1.0)
async def my_repositories(ctx: FragmentContext) -> FragmentData:
    """The signed-in member's repositories, most recently changed first."""
    user = ctx.user
    if user is None:
        return FragmentData({"user": None})
    pairs = sorted(await repos_of(ctx.db, user), key=lambda pair: pair[0].updated_at, reverse=True)
    repos = [{"path": f"{owner}/{repo.name}", "private": repo.is_private, "description": repo.description}
             for repo, owner in pairs[:DASHBOARD_REPOS]]
    return FragmentData({"user": user, "repos": repos, "more": max(0, len(pairs) - DASHBOARD_REPOS)})
