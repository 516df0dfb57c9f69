"""Mastodon's client API entities (docs.joinmastodon.org/entities/), with every field the apps
dereference without guarding (design note ../shared/design/mastodon-api.md §3 and §4).

Rules the apps rely on: ids are strings, datetimes ISO 8601 with ``Z``, lists never null, HTML
fields sanitised. Optional fields that are absent stay absent (``msgspec.UNSET``), never null.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Field(msgspec.Struct, kw_only=True):
    name: str
    value: str  # HTML
    verified_at: str | None = None


class Account(msgspec.Struct, kw_only=True):
    id: str
    username: str
    acct: str  # ``alice`` for a member here, ``alice@host`` elsewhere
    url: str
    uri: str
    display_name: str
    note: str  # HTML
    avatar: str
    avatar_static: str
    header: str
    header_static: str
    locked: bool
    bot: bool
    group: bool
    discoverable: bool | None
    created_at: str  # a date, at midnight
    last_status_at: str | None  # a date
    statuses_count: int
    followers_count: int
    following_count: int
    fields: list[Field] = msgspec.field(default_factory=list)
    emojis: list[Any] = msgspec.field(default_factory=list)
    noindex: bool = False
    roles: list[Any] = msgspec.field(default_factory=list)


class Source(msgspec.Struct, kw_only=True):
    privacy: str
    sensitive: bool
    language: str | None
    note: str  # plain text
    fields: list[Field]
    follow_requests_count: int


class CredentialAccount(Account, kw_only=True):
    source: Source


class Mention(msgspec.Struct, kw_only=True):
    id: str
    username: str
    acct: str
    url: str


class Tag(msgspec.Struct, kw_only=True):
    name: str
    url: str


class Application(msgspec.Struct, kw_only=True):
    name: str
    website: str | None = None


class Status(msgspec.Struct, kw_only=True):
    id: str
    uri: str
    url: str | None
    created_at: str
    account: Account
    content: str  # HTML; "" for a boost's wrapper
    visibility: str  # public | unlisted | private | direct
    sensitive: bool
    spoiler_text: str
    media_attachments: list[Any]
    mentions: list[Mention]
    tags: list[Tag]
    emojis: list[Any]
    reblogs_count: int
    favourites_count: int
    replies_count: int
    in_reply_to_id: str | None
    in_reply_to_account_id: str | None
    reblog: Status | None
    poll: None
    card: None
    language: str | None
    edited_at: str | None
    favourited: bool
    reblogged: bool
    muted: bool
    bookmarked: bool
    pinned: bool
    filtered: list[Any] = msgspec.field(default_factory=list)
    # The source text: only in the answer to DELETE, for "delete and redraft".
    text: str | msgspec.UnsetType = msgspec.UNSET


class Notification(msgspec.Struct, kw_only=True):
    id: str
    type: str  # mention | reblog | favourite | follow | follow_request
    created_at: str
    account: Account
    status: Status | None
    group_key: str


class Relationship(msgspec.Struct, kw_only=True):
    id: str
    following: bool
    showing_reblogs: bool
    notifying: bool
    followed_by: bool
    blocking: bool
    blocked_by: bool
    muting: bool
    muting_notifications: bool
    requested: bool
    requested_by: bool
    domain_blocking: bool
    endorsed: bool
    note: str
    languages: list[str] | None = None


class Context(msgspec.Struct, kw_only=True):
    ancestors: list[Status]
    descendants: list[Status]


class App(msgspec.Struct, kw_only=True):
    """``POST /api/v1/apps``'s answer (the CredentialApplication entity)."""

    id: str
    name: str
    website: str | None
    redirect_uri: str
    redirect_uris: list[str]
    client_id: str
    client_secret: str
    client_secret_expires_at: int
    scopes: list[str]
    vapid_key: str = ""


# --- Instance (v2 and v1) ----------------------------------------------------------------------


class Thumbnail(msgspec.Struct, kw_only=True):
    url: str


class StatusLimits(msgspec.Struct, kw_only=True):
    max_characters: int
    max_media_attachments: int
    characters_reserved_per_url: int


class MediaLimits(msgspec.Struct, kw_only=True):
    supported_mime_types: list[str]
    image_size_limit: int
    image_matrix_limit: int
    video_size_limit: int
    video_frame_rate_limit: int
    video_matrix_limit: int


class PollLimits(msgspec.Struct, kw_only=True):
    max_options: int
    max_characters_per_option: int
    min_expiration: int
    max_expiration: int


class AccountLimits(msgspec.Struct, kw_only=True):
    max_featured_tags: int
    max_pinned_statuses: int = 0


class Translation(msgspec.Struct, kw_only=True):
    enabled: bool


class Urls(msgspec.Struct, kw_only=True):
    """``configuration.urls``: no ``streaming`` until streaming exists (clients would connect)."""


class Configuration(msgspec.Struct, kw_only=True):
    urls: Urls
    accounts: AccountLimits
    statuses: StatusLimits
    media_attachments: MediaLimits
    polls: PollLimits
    translation: Translation


class Registrations(msgspec.Struct, kw_only=True):
    enabled: bool
    approval_required: bool
    message: str | None


class Contact(msgspec.Struct, kw_only=True):
    email: str
    account: Account | None


class Rule(msgspec.Struct, kw_only=True):
    id: str
    text: str
    hint: str = ""


class Users(msgspec.Struct, kw_only=True):
    active_month: int


class Usage(msgspec.Struct, kw_only=True):
    users: Users


class ApiVersions(msgspec.Struct, kw_only=True):
    mastodon: int


class InstanceV2(msgspec.Struct, kw_only=True):
    domain: str
    title: str
    version: str
    source_url: str
    description: str
    usage: Usage
    thumbnail: Thumbnail
    languages: list[str]
    configuration: Configuration
    registrations: Registrations
    contact: Contact
    rules: list[Rule]
    api_versions: ApiVersions


class UrlsV1(msgspec.Struct, kw_only=True):
    """v1's ``urls``: ``streaming_api`` left out until streaming exists."""


class Stats(msgspec.Struct, kw_only=True):
    user_count: int
    status_count: int
    domain_count: int


class InstanceV1(msgspec.Struct, kw_only=True):
    uri: str
    title: str
    short_description: str
    description: str
    email: str
    version: str
    urls: UrlsV1
    stats: Stats
    thumbnail: str
    languages: list[str]
    registrations: bool
    approval_required: bool
    invites_enabled: bool
    configuration: Configuration
    contact_account: Account | None
    rules: list[Rule]
