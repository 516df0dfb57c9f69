"""Account fragments: the newest members (also embeddable), the personal account menu and the
newsletters the member is on, for their dashboard (``me.dashboard-newsletters``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from advanced_alchemy.filters import LimitOffset, OrderBy

from app.caching import CachePolicy
from app.forms import safe_next
from domains.account.keys import MEMBERS
from domains.account.models import User
from domains.account.services import AccountService
from fragments.registry import FragmentContext, FragmentData, fragment


@fragment("account.new-members", title="Newest members", embed="members", params={"limit": "5"})
async def new_members(ctx: FragmentContext) -> FragmentData:
    """The newest members of the co-op, linked to their profiles."""
    limit = ctx.int_param("limit", 5, maximum=20)
    users, total = await AccountService(ctx.db).get_many_and_count(
        OrderBy(field_name="created_at", sort_order="desc"), LimitOffset(limit=limit, offset=0),
        User.is_active.is_(True), count_with_window_function=True,
    )
    members = [{"username": u.username, "name": u.name} for u in users]
    seed = f"{total}:" + ",".join(f"{u.id}:{u.updated_at.isoformat()}" for u in users)
    return FragmentData({"members": members, "total": total}, keys=(MEMBERS,), seed=seed)


@fragment("me.account-menu", policy=CachePolicy.PERSONAL, title="Account menu")
async def account_menu(ctx: FragmentContext) -> FragmentData:
    """Who is signed in, with sign-out; sign-in and sign-up links for everyone else."""
    user = ctx.user
    return FragmentData({"user": user, "next": "" if user is not None else _here(ctx), "flashes": _flashes(ctx)})


def _flashes(ctx: FragmentContext) -> list[dict[str, str]]:
    """The session's flash messages, taken (so shown once) for the toast region.

    Public pages are cached for everybody and never read the session, so a message queued before a
    redirect to one (signed in, signed out, a form posted from a public page) would wait unseen
    until the next private page. This hole is filled on every page, for this visitor alone, and
    swaps the messages into ``#toasts`` (hx-swap-oob). Private pages show theirs themselves
    (private.html), before this hole is filled, so nothing shows twice. No session, no write."""
    if ctx.request.scope.get("session") is None:
        return []
    taken = ctx.request.session.pop("_messages", None)
    if not isinstance(taken, list):
        return []
    return [{"message": m["message"], "category": str(m.get("category", "success"))}
            for m in taken if isinstance(m, dict) and isinstance(m.get("message"), str)]


def _here(ctx: FragmentContext) -> str:
    """The page the menu sits on, for "Sign in"'s ``?next=`` (so signing in from the checkout comes
    back to it): htmx names it in ``HX-Current-URL`` when it fills the hole; inline, it is the
    request's own path. Only a same-site path (``safe_next``); none for the sign-in and sign-up
    pages themselves, nor for the fragment's own address."""
    request = ctx.request
    current = request.headers.get("hx-current-url", "")
    if current:
        parts = urlsplit(current)
        if parts.netloc and parts.netloc != request.url.netloc:
            return ""
        path = parts.path + (f"?{parts.query}" if parts.query else "")
    else:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    path = safe_next(path[:500], default="")
    if path.startswith(("/account/login", "/account/signup", "/f/")):
        return ""
    return path


@fragment("me.dashboard-newsletters", policy=CachePolicy.PERSONAL, title="Your newsletters",
          template="fragments/me/dashboard-newsletters.html", inline_timeout=1.0)
async def my_newsletters(ctx: FragmentContext) -> FragmentData:
    """The lists the signed-in member gets (and how many more they could join)."""
    from domains.account.newsletters.models import CONFIRMED
    from domains.account.newsletters.services import NewsletterService

    user = ctx.user
    if user is None:
        return FragmentData({"user": None})
    rows = await NewsletterService(ctx.db).member_lists(user)
    on = [{"name": lst.name, "slug": lst.slug} for lst, sub in rows if sub is not None and sub.status == CONFIRMED]
    return FragmentData({"user": user, "lists": on, "others": len(rows) - len(on)})
