"""Moderation: instance domain blocks, members' blocks of accounts, and reports (Flag).

**Domain blocks** (``ap_domain_block``) have Mastodon's two severities. A block of
``example.org`` covers its subdomains and every port; a block written with a port
(``example.org:8443``) covers that host and port only.

- *suspend*: the inbox refuses blocked actors and key ids (:meth:`Federation.domain_blocked`),
  :func:`federation.activitypub.delivery.deliver` never addresses their inboxes, and adding the
  block ends every follow to or from their actors and fails the deliveries still pending to them.
- *limit* (Mastodon's "silence"): the domain still federates, but its accounts' posts stay off
  the federated timeline and their notifications are dropped for members who don't follow them
  (:func:`limited_unfollowed`), and their follows of members always wait for approval.

**Member blocks** (``ap_block`` rows whose ``actor`` is local) belong to the member alone, as in
Mastodon's BlockService: blocking ends the follows both ways (Undo(Follow) for ours, Reject for
theirs), sends a Block to a remote account and clears the member's notifications from it. The
processor then drops, for that member only, the blocked account's follows, likes and boosts of
the member's notes, and its mention and reply notifications; :func:`hidden_from` is the filter
timelines apply. Unblocking sends Undo(Block).

**Reports** (``ap_report``) come in as Flag activities (Mastodon sends them from its instance
actor with ``object`` = [the reported account, its reported notes...] and the comment as
``content``), or from members; a member's report about a remote account may be forwarded to its
server as a Flag from our instance actor.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import CursorResult, Select, delete, or_, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from federation.activitypub.models import (
    Actor,
    APObject,
    Block,
    Delivery,
    DomainBlock,
    Follow,
    Mute,
    Notification,
    Report,
)
from federation.activitypub.outbox import Outbox

MAX_REASON = 1000
SEVERITIES = ("suspend", "limit")
MAX_COMMENT = 1000
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Above this many candidate names, match against the whole (small) block list instead of an IN list.
_IN_LIMIT = 500


class ModerationError(ValueError):
    """Input a person must correct (shown on the form, or as the CLI's error)."""

    def __init__(self, message: str, status: int = 422, *, field: str = "form") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


# --- domains ------------------------------------------------------------------------------


def normalize_domain(raw: str) -> str:
    """``Example.ORG.`` -> ``example.org``; ``host:8443`` keeps its port. No scheme, user or path."""
    value = (raw or "").strip()
    shown = value[:100]
    if not value:
        raise ModerationError("Enter a domain, like example.org.", field="domain")
    if any(c in value for c in "/?#@[]\\") or any(c.isspace() for c in value):
        raise ModerationError(f"{shown} is not a domain: write only the host, like example.org or "
                              "example.org:8443 (no https://, user or path).", field="domain")
    host, sep, port = value.partition(":")
    if sep and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ModerationError(f"{shown}: the port must be a number from 1 to 65535.", field="domain")
    host = host.rstrip(".").lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ModerationError(f"{shown} is not a valid domain name.", field="domain") from None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ModerationError(f"{shown} is not a valid domain name.", field="domain")
    if labels[-1].isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ModerationError(f"{shown} is neither a domain name nor an IPv4 address.",
                                  field="domain") from None
    return f"{host}:{int(port)}" if sep else host


def block_candidates(host: str) -> list[str]:
    """The ``ap_domain_block.domain`` values that block ``host`` (``name`` or ``name:port``)."""
    host = host.lower()
    if host.count(":") > 1:  # an IPv6 literal: only an exact entry (none validates today)
        return [host]
    name, sep, port = host.partition(":")
    labels = name.split(".")
    names = [name] if labels[-1].isdigit() else [".".join(labels[i:]) for i in range(len(labels))]
    return ([f"{name}:{port}"] if sep else []) + names


async def blocked_hosts(session: AsyncSession, hosts: Iterable[str], severity: str = "suspend") -> set[str]:
    """Which of ``hosts`` (as :func:`~federation.activitypub.core.host_of` gives them) have a
    domain block of ``severity`` (suspended, unless asked for ``limit``)."""
    candidates = {h: block_candidates(h) for h in {h for h in hosts if h}}
    if not candidates:
        return set()
    every = {c for names in candidates.values() for c in names}
    query = select(DomainBlock.domain).where(DomainBlock.severity == severity)
    if len(every) <= _IN_LIMIT:
        query = query.where(DomainBlock.domain.in_(every))
    found = set((await session.scalars(query)).all())
    return {h for h, names in candidates.items() if found.intersection(names)}


async def limited_unfollowed(session: AsyncSession, member_uri: str) -> Select[Any] | None:
    """Actor URIs on limited domains that ``member_uri`` does not follow (None: no domain is
    limited). Timelines and notifications filter with ``column.not_in(...)``."""
    domains = list((await session.scalars(select(DomainBlock.domain).where(DomainBlock.severity == "limit"))).all())
    if not domains:
        return None
    followed = select(Follow.followee).where(Follow.follower == member_uri, Follow.state == "accepted")
    return select(Actor.uri).where(Actor.local.is_(False), or_(*(on_domain(Actor.domain, d) for d in domains)),
                                   Actor.uri.not_in(followed))


def on_domain(column: Any, domain: str) -> ColumnElement[bool]:
    """SQL: a host column (``host`` or ``host:port``) is covered by the block of ``domain``."""
    if ":" in domain:
        return cast(ColumnElement[bool], column == domain)
    # normalize_domain admits no LIKE wildcards (% and _), so the patterns need no escaping.
    return or_(column == domain, column.like(f"%.{domain}"), column.like(f"{domain}:%"),
               column.like(f"%.{domain}:%"))


@dataclass(frozen=True)
class DomainBlockResult:
    block: DomainBlock
    created: bool
    follows_removed: int
    deliveries_stopped: int

    def summary(self) -> str:
        if self.block.severity == "limit":
            return (f"{'Limited' if self.created else 'Updated the limit of'} {self.block.domain}: its accounts' "
                    "posts show only to their followers, and their follow requests need approval.")
        return (f"{'Blocked' if self.created else 'Updated the block of'} {self.block.domain}: "
                f"removed {self.follows_removed} follow{'s' * (self.follows_removed != 1)}, "
                f"stopped {self.deliveries_stopped} pending deliver{'ies' if self.deliveries_stopped != 1 else 'y'}.")


class DomainBlocks:
    """The instance's domain blocks (the admin page and ``rose-ash federation`` use this)."""

    def __init__(self, session: AsyncSession, own_host: str) -> None:
        self.session = session
        self.own_host = own_host

    async def all(self) -> list[DomainBlock]:
        return list((await self.session.scalars(select(DomainBlock).order_by(DomainBlock.domain))).all())

    async def add(self, raw_domain: str, reason: str = "", severity: str = "suspend") -> DomainBlockResult:
        domain = normalize_domain(raw_domain)
        if severity not in SEVERITIES:
            raise ModerationError(f"{severity[:40]!r} is not a severity: choose suspend or limit.", field="severity")
        reason = reason.strip()
        if len(reason) > MAX_REASON:
            raise ModerationError(f"Keep the reason under {MAX_REASON} characters.", field="reason")
        if domain in block_candidates(self.own_host):
            raise ModerationError(f"{domain} is this instance's own domain.", field="domain")
        block = await self.session.scalar(select(DomainBlock).where(DomainBlock.domain == domain))
        created = block is None
        if block is None:
            block = DomainBlock(domain=domain, reason=reason, severity=severity)
            try:
                async with self.session.begin_nested():  # a concurrent admin may win the insert
                    self.session.add(block)
            except IntegrityError:
                block = (await self.session.scalars(select(DomainBlock).where(DomainBlock.domain == domain))).one()
                created = False
        if not created and reason:
            block.reason = reason
        block.severity = severity
        if severity == "limit":  # nothing ends: the domain keeps federating, out of sight
            await self.session.flush()
            return DomainBlockResult(block, created, 0, 0)
        actors = select(Actor.uri).where(Actor.local.is_(False), on_domain(Actor.domain, domain))
        follows = cast(CursorResult[Any], await self.session.execute(
            delete(Follow).where(or_(Follow.follower.in_(actors), Follow.followee.in_(actors)))))
        deliveries = cast(CursorResult[Any], await self.session.execute(
            update(Delivery).where(Delivery.state == "pending", on_domain(Delivery.host, domain)).values(
                state="failed", last_error=f"domain {domain} is blocked", next_try=None)))
        await self.session.flush()
        return DomainBlockResult(block, created, follows.rowcount or 0, deliveries.rowcount or 0)

    async def remove(self, raw_domain: str) -> bool:
        domain = normalize_domain(raw_domain)
        done = cast(CursorResult[Any], await self.session.execute(
            delete(DomainBlock).where(DomainBlock.domain == domain)))
        return bool(done.rowcount)


# --- member blocks --------------------------------------------------------------------------


async def blocks(session: AsyncSession, blocker: str, target: str) -> bool:
    """Whether the actor ``blocker`` blocks ``target``."""
    found = await session.scalar(select(Block.id).where(Block.actor == blocker, Block.target == target).limit(1))
    return found is not None


def hidden_from(member_uri: str) -> Select[Any]:
    """Actor URIs whose notes, boosts and notifications ``member_uri`` should not see: those the
    member blocks and those who block the member (Mastodon filters both from home feeds).

    For timelines: ``APObject.attributed_to.not_in(hidden_from(me.uri))`` and
    ``Announce.actor.not_in(hidden_from(me.uri))``.
    """
    return select(union(select(Block.target.label("uri")).where(Block.actor == member_uri),
                        select(Block.actor.label("uri")).where(Block.target == member_uri)).subquery().c.uri)


def muted_by(member_uri: str, *, notifications: bool = False) -> Select[Any]:
    """Actor URIs ``member_uri`` mutes now (an expired mute no longer counts): their notes stay off
    the member's home timeline; with ``notifications``, only the mutes that also hide notifications
    (Mastodon's ``notifications`` flag, docs.joinmastodon.org/methods/accounts/#mute)."""
    query = select(Mute.target).where(Mute.actor == member_uri, or_(Mute.expires_at.is_(None),
                                                                    Mute.expires_at > datetime.now(UTC)))
    return query.where(Mute.notifications.is_(True)) if notifications else query


def may_see(obj: APObject, me: Actor, follows_author: bool) -> bool:
    """The hub's visibility rule: followers-only notes for accepted followers and the mentioned,
    direct notes for the mentioned (and the author always)."""
    if obj.deleted:
        return False
    if obj.visibility not in ("followers", "direct") or obj.attributed_to == me.uri or me.uri in obj.mentions:
        return True
    return obj.visibility == "followers" and follows_author


async def may_see_note(session: AsyncSession, obj: APObject, me: Actor) -> bool:
    """:func:`may_see`, with whether ``me`` follows the note's author read from the database."""
    follows = await session.scalar(select(Follow.id).where(
        Follow.follower == me.uri, Follow.followee == obj.attributed_to, Follow.state == "accepted"))
    return may_see(obj, me, follows is not None)


async def visible_note(session: AsyncSession, oid: UUID, me: Actor) -> APObject | None:
    """The note ``oid`` if ``me`` may see it (:func:`may_see`, and no block either way between
    ``me`` and its author), else None — callers answer 404, as if it did not exist."""
    obj = await session.get(APObject, oid)
    if obj is None or not await may_see_note(session, obj, me):
        return None
    if obj.attributed_to != me.uri and (await blocks(session, me.uri, obj.attributed_to)
                                        or await blocks(session, obj.attributed_to, me.uri)):
        return None
    return obj


class Moderation(Outbox):
    """Blocks and reports, sent as activities the way :class:`Outbox` sends everything."""

    async def block(self, actor: Actor, target: Actor) -> None:
        """Block ``target`` for ``actor`` alone (replaces :meth:`Outbox.block`, which only deletes
        the follows): follows end both ways with Undo(Follow) and Reject, then a Block is sent."""
        if target.uri == actor.uri:
            raise ModerationError("You can't block yourself.")
        if target.local and target.user_id is None:
            raise ModerationError("This account can't be blocked.", 403)
        if await blocks(self.session, actor.uri, target.uri):
            return
        await self.unfollow(actor, target)  # Undo(Follow) to a remote account
        theirs = await self.session.scalar(
            select(Follow).where(Follow.follower == target.uri, Follow.followee == actor.uri))
        if theirs is not None:
            follow_id = theirs.activity_id
            await self.session.delete(theirs)
            await self.session.flush()
            await self.reject_follow(actor, target, follow_id)
        activity = await self._record(actor, {"type": "Block", "object": target.uri, "to": [target.uri]})
        self.session.add(Block(actor=actor.uri, target=target.uri, activity_id=activity.ap_id))
        if actor.user_id is not None:
            await self.session.execute(delete(Notification).where(Notification.user_id == actor.user_id,
                                                                  Notification.actor == target.uri))
        await self.session.flush()
        if not target.local:
            await self._send(actor, activity, [target])

    async def unblock(self, actor: Actor, target: Actor) -> bool:
        """Lift ``actor``'s block of ``target`` with an Undo(Block); False if there was none."""
        block = await self.session.scalar(select(Block).where(Block.actor == actor.uri, Block.target == target.uri))
        if block is None:
            return False
        await self.undo(actor, target, block, "Block", block.activity_id)
        return True

    async def reject_follow(self, actor: Actor, follower: Actor, follow_id: str) -> None:
        """Tell ``follower`` that its follow (``follow_id``) of ``actor`` is refused or ended."""
        activity = await self._record(actor, {"type": "Reject", "to": [follower.uri], "object": {
            "id": follow_id, "type": "Follow", "actor": follower.uri, "object": actor.uri}})
        if not follower.local:
            await self._send(actor, activity, [follower])

    # --- reports ------------------------------------------------------------------------

    async def report(self, actor: Actor, target: Actor, objects: list[APObject], comment: str, *,
                     forward: bool = False) -> Report:
        """A member's report of ``target`` (and some of its notes) for our moderators; forwarded
        to the account's server as a Flag from the instance actor if asked and it is remote."""
        comment = comment.strip()
        if len(comment) > MAX_COMMENT:
            raise ModerationError(f"Keep the comment under {MAX_COMMENT} characters.", field="comment")
        if target.uri == actor.uri:
            raise ModerationError("You can't report yourself.")
        if any(o.attributed_to != target.uri for o in objects):
            raise ModerationError("Those posts are not by that account.")
        report = Report(origin="local", reporter=actor.uri, reporter_user_id=actor.user_id, target=target.uri,
                        object_ids=[o.ap_id for o in objects], comment=comment)
        self.session.add(report)
        await self.session.flush()
        if forward and not target.local:
            instance = await self.fed.local_service_actor("instance")
            # Mastodon's Flag: object = [the account, its notes...]; content = the comment.
            flag = await self._record(instance, {"type": "Flag", "object": [target.uri, *report.object_ids],
                                                 "content": comment, "to": [target.uri]})
            report.forwarded_activity = flag.ap_id
            await self.session.flush()
            await self._send(instance, flag, [target])
        return report


async def resolve_report(session: AsyncSession, report: Report, by_user_id: Any, *, resolved: bool = True) -> None:
    report.state = "resolved" if resolved else "open"
    report.resolved_at = datetime.now(UTC) if resolved else None
    report.resolved_by_id = by_user_id if resolved else None
    await session.flush()
