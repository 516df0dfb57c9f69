"""Newsletter contracts: form inputs, the import report, the Ghost member shapes, job payloads."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

SLUG_RE_TEXT = r"^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$"


class ListForm(msgspec.Struct, kw_only=True):
    name: str = ""
    slug: str = ""
    description: str = ""
    sender_name: str = ""
    visibility: str = "public"
    subscribe_on_signup: str | None = None  # a checkbox: sent at all means on


class SubscribeForm(msgspec.Struct, kw_only=True):
    email: str = ""
    name: str = ""


class CampaignForm(msgspec.Struct, kw_only=True):
    list_id: str = ""
    subject: str = ""
    post_id: str = ""  # a published post, or empty for a Markdown issue
    markdown: str = ""


class ImportForm(msgspec.Struct, kw_only=True):
    csv: str = ""


class ImportRow(msgspec.Struct, kw_only=True, frozen=True):
    """One line of a CSV import: ``added``, ``exists``, ``duplicate`` or ``malformed``."""

    line: int
    email: str
    outcome: str
    detail: str = ""


class ImportResult(msgspec.Struct, kw_only=True):
    rows: list[ImportRow]

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.rows if r.outcome == outcome)


class SendBatch(msgspec.Struct, frozen=True, kw_only=True):
    """The payload of ``newsletter.send-batch``: one batch of one campaign's recipients."""

    campaign_id: UUID
    batch: int


class Progress(msgspec.Struct, kw_only=True):
    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    unsubscribed: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.sending + self.sent + self.failed + self.unsubscribed

    @property
    def open(self) -> int:
        return self.queued + self.sending


# --- Ghost's export: newsletters, members and who receives which (Ghost 5/6 tables) ------------

GhostId = str | int


class GhostNewsletter(msgspec.Struct, kw_only=True):
    id: GhostId
    name: str | None = None
    slug: str | None = None
    description: str | None = None
    sender_name: str | None = None
    status: str | None = "active"
    visibility: str | None = "members"
    subscribe_on_signup: bool | int | None = True


class GhostMember(msgspec.Struct, kw_only=True):
    id: GhostId
    email: str | None = None
    name: str | None = None
    status: str | None = None
    subscribed: bool | int | None = None  # Ghost 3/4: one newsletter, this flag


class GhostMemberNewsletter(msgspec.Struct, kw_only=True):
    member_id: GhostId
    newsletter_id: GhostId


class GhostMembersData(msgspec.Struct, kw_only=True):
    newsletters: list[GhostNewsletter] = msgspec.field(default_factory=list)
    members: list[GhostMember] = msgspec.field(default_factory=list)
    members_newsletters: list[GhostMemberNewsletter] = msgspec.field(default_factory=list)


class GhostMembersReport(msgspec.Struct, kw_only=True):
    lists_created: int = 0
    lists_updated: int = 0
    subscriptions_added: int = 0
    subscriptions_kept: int = 0
    skipped: list[str] = msgspec.field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"newsletters: {self.lists_created} created, {self.lists_updated} updated",
            f"members' subscriptions: {self.subscriptions_added} added, {self.subscriptions_kept} already there",
            *(f"skipped: {s}" for s in self.skipped),
        ]


def ghost_data(raw: Any) -> GhostMembersData:
    """The members part of a decoded Ghost export (wrapped ``{"db": [...]}`` or bare)."""
    if isinstance(raw, dict) and isinstance(raw.get("db"), list) and raw["db"]:
        raw = raw["db"][0]
    data = raw.get("data", {}) if isinstance(raw, dict) else {}
    wanted = {k: data.get(k) or [] for k in ("newsletters", "members", "members_newsletters")} \
        if isinstance(data, dict) else {}
    return msgspec.convert(wanted, GhostMembersData, strict=False)
