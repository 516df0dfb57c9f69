"""The social hub's contracts: the forms its pages post (read with ``parse_form``) and the views
its services return for the templates.

Every form field is text with a default, as the pages have always read them: a missing field is
its default, never a 422, and checkboxes are on when they send ``on`` or ``1`` (``true`` too for
the locked-account box).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import msgspec

from domains.account.models import User
from federation.activitypub.core import host_of
from federation.activitypub.hashtags import link_tags
from federation.activitypub.models import Actor, APObject, Block, Follow, Notification, Report
from federation.activitypub.sanitize import plain_text
from federation.social import when

# --- forms ------------------------------------------------------------------------------------


class NextForm(msgspec.Struct, kw_only=True):
    """A button that acts and goes back where it was (like, boost, delete...)."""

    next: str = ""


class ComposeForm(msgspec.Struct, kw_only=True):
    content: str = ""
    visibility: str = "public"
    summary: str = ""
    in_reply_to: str = ""
    next: str = ""


class FollowForm(msgspec.Struct, kw_only=True):
    handle: str = ""
    next: str = ""


class ActorForm(msgspec.Struct, kw_only=True):
    """An action on an account we know, named by its actor URI (unfollow, unblock)."""

    actor: str = ""
    next: str = ""


class LockedForm(msgspec.Struct, kw_only=True):
    locked: str = ""

    @property
    def on(self) -> bool:
        return self.locked in ("1", "on", "true")


class BlockForm(msgspec.Struct, kw_only=True):
    """Block by ``actor`` (an actor URI, as on a note or profile) or ``handle`` (user@host)."""

    actor: str = ""
    handle: str = ""
    next: str = ""


class ReportForm(msgspec.Struct, kw_only=True):
    note: str = ""
    actor: str = ""
    comment: str = ""
    forward: str = ""
    next: str = ""

    @property
    def forwarded(self) -> bool:
        return self.forward in ("on", "1")


class DomainBlockForm(msgspec.Struct, kw_only=True):
    domain: str = ""
    reason: str = ""
    severity: str = "suspend"


# --- views ------------------------------------------------------------------------------------

_USERNAME = r"[A-Za-z0-9_.~+-]+"
_HOST = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::[0-9]{1,5})?"
ACCT = re.compile(rf"@?({_USERNAME})@({_HOST})")
_PATH_ACCT = re.compile(rf"{_USERNAME}@{_HOST}")


def account_path(uri: str, actor: Actor | None = None) -> str:
    """The hub's page for an account: ``/social/accounts/user@host`` when its name can stand in a
    path, else the lookup of its URI (which fetches an actor we don't know yet)."""
    if actor is not None and actor.username and _PATH_ACCT.fullmatch(f"{actor.username}@{actor.domain}"):
        return f"/social/accounts/{actor.username}@{actor.domain}"
    return f"/social/accounts?q={quote(actor.uri if actor is not None else uri, safe='')}"


EXCERPT = 280  # characters of an article card's excerpt


def excerpt(summary: str, html: str, limit: int = EXCERPT) -> str:
    """An article card's text: its summary, else the start of its body as plain text."""
    text = summary.strip() or " ".join(plain_text(html.replace("</p>", "</p> "), 20_000).split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0].rstrip(",;:.") + "…"


class EventCard(msgspec.Struct, kw_only=True):
    """An AS2 ``Event`` (ours from the events actor, Mobilizon's, Gancio's) as a card: title, date,
    place and a link, never folded behind its ``summary`` (not a content warning on an Event)."""

    name: str
    url: str
    when: str
    place: str
    status: str


def _event_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def event_when(start: datetime | None, end: datetime | None) -> str:
    """``Sat 12 December 2026, 19:00-21:30 (an en dash)`` in the event's own offset, as its ``startTime`` gives it."""
    if start is None:
        return ""
    day = f"{start:%a} {start.day} {start:%B %Y}"
    if end is None or end <= start:
        return f"{day}, {start:%H:%M}"
    if end.date() == start.date():
        return f"{day}, {start:%H:%M}\u2013{end:%H:%M}"
    return f"{day}, {start:%H:%M} \u2013 {end:%a} {end.day} {end:%B %Y}, {end:%H:%M}"


def _place_text(location: Any) -> str:
    """A ``location`` Place's name, else its address's first lines; "" for anything else."""
    place = location[0] if isinstance(location, list) and location else location
    if not isinstance(place, dict):
        return ""
    name = place.get("name")
    if isinstance(name, str) and name.strip():
        return plain_text(name, 200)
    address = place.get("address")
    if isinstance(address, str):
        return plain_text(address, 200)
    if isinstance(address, dict):
        parts = (address.get(k) for k in ("streetAddress", "addressLocality"))
        return plain_text(", ".join(p for p in parts if isinstance(p, str) and p.strip()), 200)
    return ""


def event_card(doc: dict[str, Any] | None, *, name: str, url: str) -> EventCard:
    """The card of an Event object from its (stored or fetched) AS2 document; strings only from
    ``plain_text`` (the template escapes them again)."""
    doc = doc if isinstance(doc, dict) else {}
    status = {"CANCELLED": "Cancelled", "TENTATIVE": "Postponed"}.get(str(doc.get("ical:status", "")).upper(), "")
    return EventCard(name=name or "Untitled event", url=url,
                     when=event_when(_event_time(doc.get("startTime")), _event_time(doc.get("endTime"))),
                     place=_place_text(doc.get("location")), status=status)


def initial(actor: Actor | None, fallback: str = "?") -> str:
    """The initials avatar's letter, for accounts without a picture."""
    name = actor.display_name if actor is not None else fallback
    return (name.lstrip("@")[:1] or "?").upper()


# The text of a mention link as the outbox writes it (federation/activitypub/outbox.py
# ``post_note``): ``<a href="…" class="u-url mention">@bob@host</a>``.
_MENTION_LABEL = re.compile(rf">@({_USERNAME})@({_HOST})</a>")


def short_local_mentions(html: str, here: str) -> str:
    """Mentions of members of this instance (``here``, its host) as Mastodon shows them: ``@bob``.

    Only for this instance's pages: the stored content is the note's ActivityPub document, and
    other servers need the full ``@bob@host`` handle there. The input is sanitised HTML and this
    only drops ``@host`` from a link's text, so the result is as safe as it was."""
    if not here:
        return html
    return _MENTION_LABEL.sub(
        lambda m: f">@{m.group(1)}</a>" if m.group(2).lower() == here.lower() else m.group(0), html)


def link_hashtags(html: str) -> str:
    """``#tag`` in a post's text as a link to the hub's tag page (``/social/tags/<tag>``), as
    Mastodon links them (hashtags.link_tags: text already inside a link is left alone)."""
    return link_tags(html, lambda name: f"/social/tags/{quote(name)}")


def mention_of(actor: Actor | None) -> str:
    """How a reply addresses an author: ``@bob`` for a member here, ``@bob@host`` elsewhere."""
    if actor is None or not actor.username:
        return ""
    return f"@{actor.username}" if actor.local else actor.handle


class NoteView(msgspec.Struct, kw_only=True):
    obj: APObject
    author: Actor | None
    likes: int
    boosts: int
    liked: bool
    boosted: bool
    mine: bool
    boosted_by: Actor | None = None
    here: str = ""  # this instance's host, whose members' mentions read ``@bob`` (content_html)

    @property
    def local_id(self) -> str:
        return str(self.obj.id)

    @property
    def author_path(self) -> str:
        return account_path(self.obj.attributed_to, self.author)

    @property
    def booster_path(self) -> str:
        return account_path(self.boosted_by.uri, self.boosted_by) if self.boosted_by is not None else ""

    @property
    def initial(self) -> str:
        return initial(self.author, self.obj.attributed_to.rstrip("/").rsplit("/", 1)[-1])

    @property
    def ago(self) -> str:
        return when.relative(self.obj.published)

    @property
    def at_iso(self) -> str:
        return when.iso(self.obj.published)

    @property
    def at_title(self) -> str:
        return when.absolute(self.obj.published)

    @property
    def excerpt(self) -> str:
        return excerpt(self.obj.summary, self.obj.content)

    @property
    def event(self) -> EventCard:
        """An ``Event`` object's card (the template asks only when the type is ``Event``)."""
        return event_card(self.obj.raw, name=self.obj.name, url=self.obj.url or self.obj.ap_id)

    @property
    def content_html(self) -> str:
        """The note's (sanitised) content as this instance's pages show it."""
        return link_hashtags(short_local_mentions(self.obj.content, self.here))

    @property
    def mention(self) -> str:
        return mention_of(self.author)


class FetchedNote(msgspec.Struct, kw_only=True):
    """A public note read from a remote outbox page for display only (sanitised, never stored)."""

    ap_id: str
    url: str
    type: str
    name: str
    content: str
    summary: str
    published: datetime | None
    visibility: str
    author: Actor
    event: EventCard | None = None  # an ``Event``'s date and place (accounts.py reads them)

    @property
    def author_path(self) -> str:
        return account_path(self.author.uri, self.author)

    @property
    def initial(self) -> str:
        return initial(self.author)

    @property
    def ago(self) -> str:
        return when.relative(self.published)

    @property
    def at_iso(self) -> str:
        return when.iso(self.published)

    @property
    def at_title(self) -> str:
        return when.absolute(self.published)

    @property
    def excerpt(self) -> str:
        return excerpt(self.summary, self.content)


class Relation(msgspec.Struct, kw_only=True):
    """How the member (``me``) and an account relate: ``state`` is the member's follow of it
    ("", "pending" or "accepted")."""

    me: Actor
    target: Actor
    state: str
    follows_me: bool
    blocked: bool = False  # the member blocks this account
    muted: bool = False  # the member mutes this account (its notes are off their home timeline)
    muted_notifications: bool = False  # ... and its notifications too

    @property
    def is_me(self) -> bool:
        return self.me.uri == self.target.uri


class RemoteExtras(msgspec.Struct, kw_only=True):
    """What a remote account's own server says about it: counts and recent public notes."""

    posts: int | None = None
    followers: int | None = None
    following: int | None = None
    notes: list[FetchedNote] = msgspec.field(default_factory=list)
    problem: str = ""


class Lookup(msgspec.Struct, frozen=True, kw_only=True):
    """Parsed lookup input: a handle (``user``, ``host``) or an actor/profile ``url``."""

    user: str = ""
    host: str = ""
    url: str = ""

    @property
    def server(self) -> str:
        return host_of(self.url) if self.url else self.host

    @property
    def label(self) -> str:
        return self.url or f"{self.user}@{self.host}"


class TimelinePage(msgspec.Struct, kw_only=True):
    me: Actor
    notes: list[NoteView]
    unread: int
    older: str  # the next page's ``before`` token, "" on the last page
    suggestions: list[Actor] = msgspec.field(default_factory=list)  # an empty first page: members to follow


class NotePage(msgspec.Struct, kw_only=True):
    me: Actor
    note: NoteView
    replies: list[NoteView]


class FollowEntry(msgspec.Struct, kw_only=True):
    follow: Follow
    actor: Actor | None
    path: str


class FollowPage(msgspec.Struct, kw_only=True):
    me: Actor
    entries: list[FollowEntry]
    older: str


class NotificationEntry(msgspec.Struct, kw_only=True):
    notification: Notification
    actor: Actor | None
    object: APObject | None
    path: str


class NotificationPage(msgspec.Struct, kw_only=True):
    entries: list[NotificationEntry]
    older: str


class AccountEntry(msgspec.Struct, kw_only=True):
    """One entry of an account page: a note we hold (``stored``) or one read from its server."""

    kind: str  # "stored" or "fetched"
    note: NoteView | FetchedNote
    at: datetime | None


class AccountPage(msgspec.Struct, kw_only=True):
    me: Actor
    target: Actor
    relation: Relation
    bio: str
    counts: dict[str, int | None]
    entries: list[AccountEntry]
    problem: str
    older: str


class BlockEntry(msgspec.Struct, kw_only=True):
    block: Block
    actor: Actor | None


class ReportsPage(msgspec.Struct, kw_only=True):
    state: str
    reports: list[Report]
    actors: dict[str, Actor]
    objects: dict[str, APObject]
    resolvers: dict[UUID, User]


class FollowResult(msgspec.Struct, kw_only=True):
    """A follow (or unfollow) done: who, whom (None: no such account was known) and what to say."""

    me: Actor
    target: Actor | None
    message: str


__all__ = [
    "ACCT",
    "AccountEntry",
    "AccountPage",
    "ActorForm",
    "BlockEntry",
    "BlockForm",
    "ComposeForm",
    "DomainBlockForm",
    "FetchedNote",
    "FollowEntry",
    "FollowForm",
    "FollowPage",
    "FollowResult",
    "LockedForm",
    "Lookup",
    "NextForm",
    "NotePage",
    "NoteView",
    "NotificationEntry",
    "NotificationPage",
    "Relation",
    "RemoteExtras",
    "ReportForm",
    "ReportsPage",
    "TimelinePage",
    "account_path",
    "excerpt",
    "initial",
    "mention_of",
]
