"""Account pages: the lookup of a handle or profile URL, and what an account's page shows (its
notes and boosts, counts, and for a remote account what its own server says)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select

from app.safe_http import BlockedAddressError, FetchError
from domains.account.models import User
from domains.account.services import AccountService
from federation.activitypub.as2 import as_list, id_of, ids_of, page_url, parse_time
from federation.activitypub.core import Federation
from federation.activitypub.models import Actor, Announce, APObject, Follow
from federation.activitypub.processor import OBJECT_TYPES, visibility_of
from federation.activitypub.sanitize import plain_text, sanitize_html, text_to_html
from federation.activitypub.urls import host_of, http_url
from federation.social import paging
from federation.social.paging import EPOCH, Cursor, cut, older_than
from federation.social.schemas import (
    ACCT,
    AccountEntry,
    AccountPage,
    FetchedNote,
    Lookup,
    RemoteExtras,
    event_card,
)
from federation.social.services.relations import Relations
from federation.social.services.views import note_views

# A remote account with fewer stored notes than this gets the first page of its outbox fetched.
FEW_NOTES = 10


class AccountProblem(Exception):
    """An account lookup that can't show an account: the status and the message to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_lookup(text: str) -> Lookup:
    """``user@host``, ``@user@host``, ``acct:user@host`` or an http(s) URL; else 422."""
    text = text.strip()
    if text.startswith(("https://", "http://")):
        if not http_url(text):  # also a port out of range or a broken IPv6 literal
            raise AccountProblem(422, f"{text[:200]!r} is not a valid profile URL.")
        return Lookup(url=text.split("#")[0])
    text = text.removeprefix("acct:")
    found = ACCT.fullmatch(text)
    if found is None:
        raise AccountProblem(422, f"{text!r} is not a handle. Type it as user@example.org, or paste a profile URL.")
    return Lookup(user=found.group(1), host=found.group(2).lower())


def parse_account_path(acct: str) -> Lookup:
    """The ``user@host`` of an account page's path; else 422."""
    if ACCT.fullmatch(acct) is None:
        raise AccountProblem(422, f"{acct!r} is not a handle. Account pages are /social/accounts/user@host.")
    return parse_lookup(acct)


def _total(doc: dict[str, Any]) -> int | None:
    total = doc.get("totalItems")
    return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


def _fetched_note(item: Any, actor: Actor) -> FetchedNote | None:
    """A public or unlisted note by ``actor`` from an item of its outbox, or None."""
    if not isinstance(item, dict):
        return None
    obj: Any = item
    if item.get("type") == "Create":
        if id_of(item.get("actor")) != actor.uri:
            return None
        obj = item.get("object")
    if not isinstance(obj, dict) or obj.get("type") not in OBJECT_TYPES:
        return None
    oid = id_of(obj)
    # Only the author's own objects, served by the author's own server.
    if not oid or host_of(oid) != host_of(actor.uri) or actor.uri not in ids_of(obj.get("attributedTo")):
        return None
    visibility = visibility_of(ids_of(obj.get("to")), ids_of(obj.get("cc")), actor.followers_url)
    if visibility not in ("public", "unlisted"):
        return None
    return FetchedNote(ap_id=oid, url=page_url(obj, oid),
                       type=str(obj.get("type")), name=plain_text(obj.get("name"), 500),
                       content=sanitize_html(obj.get("content")), summary=plain_text(obj.get("summary"), 500),
                       published=parse_time(obj.get("published")), visibility=visibility, author=actor,
                       event=event_card(obj, name=plain_text(obj.get("name"), 500), url=page_url(obj, oid))
                       if obj.get("type") == "Event" else None)


async def remote_extras(fed: Federation, actor: Actor, *, want_notes: bool) -> RemoteExtras:
    """Counts and (``want_notes``) the first page of notes from the account's own server.

    Only documents on the actor's own host are fetched, through the guarded client; the first
    failure ends the fetching (a server that is down costs one timeout, not four). Nothing is
    written: fetched notes are shown, not stored.
    """
    extras = RemoteExtras()
    origin = host_of(actor.uri)
    try:
        if actor.outbox and host_of(actor.outbox) == origin:
            _final, outbox = await fed.fetch_json(actor.outbox)
            extras.posts = _total(outbox)
            if want_notes:
                page: Any = outbox
                if not isinstance(outbox.get("orderedItems", outbox.get("items")), list):
                    first = outbox.get("first")
                    if isinstance(first, str) and host_of(first) == origin:
                        _final, page = await fed.fetch_json(first)
                    else:
                        page = first if isinstance(first, dict) else {}
                items = page.get("orderedItems", page.get("items"))
                notes = [_fetched_note(item, actor) for item in as_list(items)[:paging.PROFILE_SIZE]]
                extras.notes = [n for n in notes if n is not None]
        for name, url in (("followers", actor.followers_url), ("following", actor.following_url)):
            if url and host_of(url) == origin:
                _final, doc = await fed.fetch_json(url)
                setattr(extras, name, _total(doc))
    except FetchError as exc:
        if want_notes:
            extras.problem = f"Couldn't load recent posts from {origin}: {exc}"
    return extras


def _unavailable(exc: FetchError, wanted: Lookup) -> AccountProblem:
    if exc.status in (404, 410):
        return AccountProblem(404, f"There is no account {wanted.label}.")
    if isinstance(exc, BlockedAddressError) or exc.status == 400:
        return AccountProblem(422, f"{wanted.server} is not a server we can look accounts up on: {exc}")
    return AccountProblem(502, f"The server {wanted.server} could not be reached, or did not answer with an "
                               f"account: {exc}")


class Accounts:
    """Any account, local or remote, as the member sees it, over this request's :class:`Federation`."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.session = fed.session

    async def resolve(self, user: User, wanted: Lookup) -> tuple[Actor, str]:
        """The actor for a lookup and a notice to show with it ("" normally); else AccountProblem.

        A known account comes from our table (refreshed from its server when stale; if that fails,
        shown as we have it, with a notice). Otherwise handles go through WebFinger and URLs are
        fetched. Fetches happen before any write (:meth:`Federation.settle`).
        """
        fed, session = self.fed, self.session
        server = wanted.server
        local = server == fed.urls.host
        if not local and await fed.domain_blocked(f"https://{server}/"):
            raise AccountProblem(403, f"Accounts on {server} are blocked on this server.")
        if wanted.url:
            known = await session.scalar(select(Actor.uri).where(
                (Actor.uri == wanted.url) | (Actor.url == wanted.url)).order_by(Actor.local.desc()).limit(1))
        else:
            known = await session.scalar(select(Actor.uri).where(
                func.lower(Actor.username) == wanted.user.lower(), Actor.domain == wanted.host).order_by(
                Actor.local.desc(), Actor.fetched_at.desc()).limit(1))

        async def work() -> Actor:
            if known is not None:
                return await fed.remote_actor(known)
            return await fed.webfinger(wanted.url or wanted.label)

        notice = ""
        try:
            target = await fed.settle(work, keep=[user])
        except FetchError as exc:
            stale = await session.scalar(select(Actor).where(Actor.uri == known, Actor.local.is_(False))) \
                if known is not None else None
            if stale is None or exc.status in (404, 410):
                raise _unavailable(exc, wanted) from None
            target, notice = stale, f"Couldn't refresh this account from {server}, so this may be out of date: {exc}"
        if target.gone:
            raise AccountProblem(404, f"{target.handle} no longer exists.")
        return target, notice

    async def page(self, user: User, target: Actor, cursor: Cursor | None) -> AccountPage:
        """The account's notes and boosts (newest first, paged together), counts and bio."""
        fed, session = self.fed, self.session
        extras: RemoteExtras | None = None
        if not target.local:
            async def fetch_extras() -> RemoteExtras:
                stored = await session.scalar(select(func.count()).select_from(APObject).where(
                    APObject.attributed_to == target.uri, APObject.deleted.is_(False),
                    APObject.visibility.in_(("public", "unlisted")))) or 0
                return await remote_extras(fed, target, want_notes=cursor is None and stored < FEW_NOTES)

            extras = await fed.settle(fetch_extras, keep=[user, target])
        me = await fed.local_actor_for_user(user)
        rel = await Relations(fed).relation(me, target)
        # Followers-only notes to the author and accepted followers; direct notes never here.
        visible = ["public", "unlisted", *(["followers"] if rel.is_me or rel.state == "accepted" else [])]
        live = APObject.deleted.is_(False)
        # Own notes page by (published, note id), boosts by (when we got the boost, boost id).
        own_query = select(APObject).where(APObject.attributed_to == target.uri, live, APObject.visibility.in_(visible))
        if (older := older_than(APObject.published, APObject.id, cursor)) is not None:
            own_query = own_query.where(older)
        own = list((await session.scalars(own_query.order_by(
            APObject.published.desc(), APObject.id.desc()).limit(paging.PROFILE_SIZE + 1))).all())
        boost_query = select(Announce).where(Announce.actor == target.uri, Announce.object_id.in_(
            select(APObject.ap_id).where(live, APObject.attributed_to != target.uri,
                                         APObject.visibility.in_(("public", "unlisted")))))
        if (older := older_than(Announce.created_at, Announce.id, cursor)) is not None:
            boost_query = boost_query.where(older)
        boosts = list((await session.scalars(boost_query.order_by(
            Announce.created_at.desc(), Announce.id.desc()).limit(paging.PROFILE_SIZE + 1))).all())
        boosted = {o.ap_id: o for o in (await session.scalars(select(APObject).where(
            APObject.ap_id.in_([b.object_id for b in boosts])))).all()} if boosts else {}
        keys: dict[str, tuple[datetime, UUID]] = {o.ap_id: (o.published or EPOCH, o.id) for o in own}
        for boost in boosts:
            if boost.object_id in boosted:
                keys.setdefault(boost.object_id, (boost.created_at, boost.id))
        newest = sorted(keys, key=keys.__getitem__, reverse=True)
        page, token = cut(newest, paging.PROFILE_SIZE, keys.__getitem__)
        shown = {*page}
        views = await note_views(session, me, [o for o in [*own, *boosted.values()] if o.ap_id in shown],
                                 {oid: target.uri for oid in boosted if oid in shown})
        entries: list[AccountEntry] = [AccountEntry(kind="stored", note=v, at=keys[v.obj.ap_id][0]) for v in views]
        if extras is not None and cursor is None:  # the remote outbox's first page, beside what we hold
            entries += [AccountEntry(kind="fetched", note=n, at=n.published) for n in extras.notes
                        if n.ap_id not in keys]
        entries.sort(key=lambda e: e.at.timestamp() if e.at else 0, reverse=True)
        bio = target.summary
        if target.user_id is not None:
            member = await AccountService(session).get_active(target.user_id)
            bio = sanitize_html(text_to_html(member.bio)) if member is not None and member.bio else ""
        return AccountPage(me=me, target=target, relation=rel, bio=bio, counts=await self._counts(target, extras),
                           entries=entries, problem=extras.problem if extras else "", older=token)

    async def _counts(self, target: Actor, extras: RemoteExtras | None) -> dict[str, int | None]:
        """Posts, following and followers: ours for a local account, its server's for a remote one."""
        if extras is not None:
            return {"posts": extras.posts, "following": extras.following, "followers": extras.followers}
        session = self.session

        async def count(*where: Any) -> int:
            return int(await session.scalar(select(func.count()).select_from(Follow).where(*where)) or 0)

        posts = await session.scalar(select(func.count()).select_from(APObject).where(
            APObject.attributed_to == target.uri, APObject.deleted.is_(False), APObject.visibility != "direct"))
        return {"posts": int(posts or 0),
                "following": await count(Follow.follower == target.uri, Follow.state == "accepted"),
                "followers": await count(Follow.followee == target.uri, Follow.state == "accepted")}
