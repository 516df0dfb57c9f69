"""ActivityPub tables. Everything refers to actors and objects by their ``id`` URI.

- ``ap_actor``: every actor we know, local (users, domain actors, the instance) and remote.
- ``ap_activity``: every activity received (raw JSON, verification result, signer) or sent.
- ``ap_object``: notes and articles (sanitised HTML), local and remote, tombstoned on Delete.
- ``ap_follow``, ``ap_like``, ``ap_announce``, ``ap_block``, ``ap_mute``, ``ap_domain_block``.
- ``ap_delivery``: one row per (outgoing activity, target inbox); the job does the work.
- ``ap_host``: per-host signature spec memory and circuit breaker.
- ``ap_notification``: what the social hub shows a member.
- ``ap_report``: reports for the moderators, received as Flag or made by members.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

URI = 2048


class Actor(UUIDv7AuditBase):
    __tablename__ = "ap_actor"

    uri: Mapped[str] = mapped_column(String(URI), unique=True)
    local: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    # Local actors: the user they stand for, or the domain actor's name ("blog", "instance", ...).
    user_id: Mapped[UUID | None] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), default=None,
                                                 index=True)
    type: Mapped[str] = mapped_column(String(40), default="Person")
    username: Mapped[str] = mapped_column(String(255), default="")
    domain: Mapped[str] = mapped_column(String(255), default="", index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    summary: Mapped[str] = mapped_column(Text, default="")  # sanitised HTML
    url: Mapped[str] = mapped_column(String(URI), default="")
    icon_url: Mapped[str] = mapped_column(String(URI), default="")
    inbox: Mapped[str] = mapped_column(String(URI), default="")
    shared_inbox: Mapped[str] = mapped_column(String(URI), default="")
    outbox: Mapped[str] = mapped_column(String(URI), default="")
    followers_url: Mapped[str] = mapped_column(String(URI), default="")
    following_url: Mapped[str] = mapped_column(String(URI), default="")
    key_id: Mapped[str] = mapped_column(String(URI), default="", index=True)
    public_key_pem: Mapped[str] = mapped_column(Text, default="")
    manually_approves: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    fetched_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    gone: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def handle(self) -> str:
        return f"@{self.username}@{self.domain}" if self.username else self.uri

    @property
    def display_name(self) -> str:
        return self.name or self.username or self.uri


class Activity(UUIDv7AuditBase):
    __tablename__ = "ap_activity"

    # The activity id; unique, so a redelivered activity is recognised (and still gets 202).
    ap_id: Mapped[str] = mapped_column(String(URI), unique=True)
    direction: Mapped[str] = mapped_column(String(3))  # "in" | "out"
    type: Mapped[str] = mapped_column(String(40), default="")
    actor_uri: Mapped[str] = mapped_column(String(URI), default="", index=True)
    object_type: Mapped[str] = mapped_column(String(40), default="")
    object_id: Mapped[str] = mapped_column(String(URI), default="")
    raw: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    # Inbound: how the signature was checked ("cavage:rsa-sha256" ...), who signed, whether the
    # signer is the activity's actor (trusted) or the object must be fetched from its origin.
    verification: Mapped[str] = mapped_column(String(255), default="")
    signer: Mapped[str] = mapped_column(String(URI), default="")
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    recipient: Mapped[str] = mapped_column(String(URI), default="")  # the inbox it came to
    state: Mapped[str] = mapped_column(String(16), default="received")  # received|processed|rejected|sent
    error: Mapped[str] = mapped_column(Text, default="")


# Notes an account's counts include: not deleted, not direct (render.py ``_counts``).
SHOWN = "deleted IS false AND visibility <> 'direct'"


class APObject(UUIDv7AuditBase):
    __tablename__ = "ap_object"
    __table_args__ = (
        Index("ix_ap_object_attributed_published", "attributed_to", "published"),
        # An account's shown notes (what statuses_count and last_status_at count, on every account
        # an API page renders): the predicate in the index, so PostgreSQL counts them from the
        # index alone instead of visiting each note's row.
        Index("ix_ap_object_attributed_shown", "attributed_to", "published",
              postgresql_where=text(SHOWN), sqlite_where=text(SHOWN)),
    )

    ap_id: Mapped[str] = mapped_column(String(URI), unique=True)
    type: Mapped[str] = mapped_column(String(40), default="Note")
    local: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    attributed_to: Mapped[str] = mapped_column(String(URI), default="")
    content: Mapped[str] = mapped_column(Text, default="")  # sanitised HTML
    summary: Mapped[str] = mapped_column(Text, default="")  # content warning (plain text)
    name: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(String(URI), default="", index=True)  # a note found by its web address
    in_reply_to: Mapped[str] = mapped_column(String(URI), default="", index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="public")  # public|unlisted|followers|direct
    to: Mapped[list[str]] = mapped_column(JsonB, default=list)
    cc: Mapped[list[str]] = mapped_column(JsonB, default=list)
    mentions: Mapped[list[str]] = mapped_column(JsonB, default=list)
    published: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None, index=True)
    updated: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)


class Follow(UUIDv7AuditBase):
    __tablename__ = "ap_follow"
    __table_args__ = (UniqueConstraint("follower", "followee", name="uq_ap_follow_pair"),)

    follower: Mapped[str] = mapped_column(String(URI), index=True)
    followee: Mapped[str] = mapped_column(String(URI), index=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|accepted|rejected
    activity_id: Mapped[str] = mapped_column(String(URI), default="")


class Like(UUIDv7AuditBase):
    __tablename__ = "ap_like"
    __table_args__ = (UniqueConstraint("actor", "object_id", name="uq_ap_like_pair"),)

    actor: Mapped[str] = mapped_column(String(URI), index=True)
    object_id: Mapped[str] = mapped_column(String(URI), index=True)
    activity_id: Mapped[str] = mapped_column(String(URI), default="")


class Announce(UUIDv7AuditBase):
    __tablename__ = "ap_announce"
    __table_args__ = (UniqueConstraint("actor", "object_id", name="uq_ap_announce_pair"),)

    actor: Mapped[str] = mapped_column(String(URI), index=True)
    object_id: Mapped[str] = mapped_column(String(URI), index=True)
    activity_id: Mapped[str] = mapped_column(String(URI), default="")
    published: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class Block(UUIDv7AuditBase):
    __tablename__ = "ap_block"
    __table_args__ = (UniqueConstraint("actor", "target", name="uq_ap_block_pair"),)

    actor: Mapped[str] = mapped_column(String(URI), index=True)
    target: Mapped[str] = mapped_column(String(URI), index=True)
    activity_id: Mapped[str] = mapped_column(String(URI), default="")


class Mute(UUIDv7AuditBase):
    """A member's mute of an account (Mastodon's mute, docs.joinmastodon.org/methods/accounts/#mute):
    private to the member, never federated. Its notes leave the member's home timeline and, with
    ``notifications``, its notifications go too; follows are untouched. ``expires_at`` None: for good."""

    __tablename__ = "ap_mute"
    __table_args__ = (UniqueConstraint("actor", "target", name="uq_ap_mute_pair"),)

    actor: Mapped[str] = mapped_column(String(URI), index=True)
    target: Mapped[str] = mapped_column(String(URI), index=True)
    notifications: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class DomainBlock(UUIDv7AuditBase):
    __tablename__ = "ap_domain_block"

    domain: Mapped[str] = mapped_column(String(255), unique=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    # "suspend" refuses the domain outright; "limit" (Mastodon's silence) keeps it federating but
    # out of sight of members who don't follow its accounts.
    severity: Mapped[str] = mapped_column(String(16), default="suspend", server_default="suspend")


class Delivery(UUIDv7AuditBase):
    __tablename__ = "ap_delivery"
    __table_args__ = (UniqueConstraint("activity_id", "inbox", name="uq_ap_delivery_target"),)

    activity_id: Mapped[UUID] = mapped_column(ForeignKey("ap_activity.id", ondelete="CASCADE"), index=True)
    inbox: Mapped[str] = mapped_column(String(URI))
    host: Mapped[str] = mapped_column(String(255), index=True)
    signer: Mapped[str] = mapped_column(String(URI))  # the local actor whose key signs
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    tries: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_try: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    bypass_availability: Mapped[bool] = mapped_column(Boolean, default=False)


class Host(UUIDv7AuditBase):
    __tablename__ = "ap_host"

    host: Mapped[str] = mapped_column(String(255), unique=True)
    signature_spec: Mapped[str] = mapped_column(String(16), default="")  # "", "cavage", "rfc9421"
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    unavailable_until: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_success: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class Notification(UUIDv7AuditBase):
    __tablename__ = "ap_notification"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # follow|follow_request|like|boost|mention|reply
    actor: Mapped[str] = mapped_column(String(URI))
    object_id: Mapped[str] = mapped_column(String(URI), default="")
    read: Mapped[bool] = mapped_column(Boolean, default=False)


class Report(UUIDv7AuditBase):
    """A report for the moderators: a Flag received from another server, or one a member made.

    ``target`` is the reported account, ``object_ids`` the reported notes (ids of our stored
    copies); ``reporter`` is the actor who reported (a remote instance or person, or the member's
    actor). A member's report about a remote account may be forwarded to its server as a Flag
    from the instance actor (``forwarded_activity`` is that Flag's id).
    """

    __tablename__ = "ap_report"

    origin: Mapped[str] = mapped_column(String(8))  # "remote" (a received Flag) | "local" (a member)
    activity_id: Mapped[str] = mapped_column(String(URI), default="", index=True)  # the received Flag's id
    reporter: Mapped[str] = mapped_column(String(URI))
    reporter_user_id: Mapped[UUID | None] = mapped_column(ForeignKey("account_user.id", ondelete="SET NULL"),
                                                          default=None, index=True)
    target: Mapped[str] = mapped_column(String(URI), index=True)
    object_ids: Mapped[list[str]] = mapped_column(JsonB, default=list)
    comment: Mapped[str] = mapped_column(Text, default="")  # plain text
    forwarded_activity: Mapped[str] = mapped_column(String(URI), default="")
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open|resolved
    resolved_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    resolved_by_id: Mapped[UUID | None] = mapped_column(ForeignKey("account_user.id", ondelete="SET NULL"),
                                                        default=None)


class Hashtag(UUIDv7AuditBase):
    """A note's hashtag (AS2 ``tag`` of type ``Hashtag``, Mastodon's extension), lower-cased
    without its ``#``: the index the tag timeline reads (federation/activitypub/hashtags.py)."""

    __tablename__ = "ap_hashtag"
    __table_args__ = (UniqueConstraint("name", "object_id", name="uq_ap_hashtag_name_object"),)

    object_id: Mapped[UUID] = mapped_column(ForeignKey("ap_object.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))


class MediaAttachment(UUIDv7AuditBase):
    """An image a member uploaded for a note (the Mastodon API's ``POST /api/v2/media``), stored
    re-encoded under ``DATA_DIR/media/<sha256>-<width>.<ext>`` as the market's images are. It
    belongs to its uploader until a note carries it (``object_id``); the note's AS2 document lists
    it as a ``Document`` with ``name`` as its alt text (federation/mastodon/media.py)."""

    __tablename__ = "ap_media"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)
    object_id: Mapped[UUID | None] = mapped_column(ForeignKey("ap_object.id", ondelete="SET NULL"), default=None,
                                                   index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(8))  # "jpeg" | "png" | "webp": also the extension
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    widths: Mapped[list[int]] = mapped_column(JsonB, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
