"""Forge tables behind the Gitea-compatible surface (issue 19 items 2-4): commit statuses, webhooks
with their delivery log, and the redirects a rename leaves behind.

Statuses are keyed by the full commit id, not by a ref: a status describes one commit, and a ref
moving on shows the new commit's statuses (Gitea ``models/git/commit_status.go``).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

# Gitea ``modules/structs/commit_status.go``: the states a client may post ("skipped" since Gitea 1.23;
# its swagger, which typed clients follow, lists it).
STATUS_STATES = ("pending", "success", "error", "failure", "warning", "skipped")
# Gitea's webhook event names we emit (``modules/webhook/type.go``: HookEventType).
HOOK_EVENTS = ("push", "create", "delete", "repository", "status")


class ForgeGiteaId(UUIDv7AuditBase):
    """Gitea's integer id of one of our objects (forge/gitea_ids.py)."""

    __tablename__ = "forge_gitea_id"
    __table_args__ = (
        UniqueConstraint("kind", "target", name="uq_forge_gitea_id_kind_target"),
        UniqueConstraint("kind", "number", name="uq_forge_gitea_id_kind_number"),
    )

    kind: Mapped[str] = mapped_column(String(16))
    # The object's UUID (a user, a repository, a hook...); no foreign key, the kinds live in many tables.
    target: Mapped[UUID] = mapped_column()
    number: Mapped[int] = mapped_column(Integer)


class ForgeCommitStatus(UUIDv7AuditBase):
    __tablename__ = "forge_commit_status"
    __table_args__ = (Index("ix_forge_commit_status_repo_sha", "repo_id", "sha"),)

    repo_id: Mapped[UUID] = mapped_column(ForeignKey("forge_repo.id", ondelete="CASCADE"))
    sha: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    context: Mapped[str] = mapped_column(String(255), default="default")
    description: Mapped[str] = mapped_column(Text, default="")
    target_url: Mapped[str] = mapped_column(Text, default="")
    # Who posted it; None once that account is gone (the status stays, as Gitea keeps it).
    creator_id: Mapped[UUID | None] = mapped_column(ForeignKey("account_user.id", ondelete="SET NULL"),
                                                    default=None)


class ForgeWebhook(UUIDv7AuditBase):
    """A Gitea-type webhook of one repository (Gitea ``models/webhook/webhook.go``: Webhook)."""

    __tablename__ = "forge_webhook"

    repo_id: Mapped[UUID] = mapped_column(ForeignKey("forge_repo.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    # "json" (application/json) or "form" (application/x-www-form-urlencoded payload=...).
    content_type: Mapped[str] = mapped_column(String(8), default="json")
    # The HMAC key of X-Gitea-Signature / X-Hub-Signature-256; never shown back (Gitea does not either).
    secret: Mapped[str] = mapped_column(Text, default="")
    # Space-separated event names from HOOK_EVENTS.
    events: Mapped[str] = mapped_column(String(255), default="push")
    branch_filter: Mapped[str] = mapped_column(String(255), default="*")
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    @property
    def event_list(self) -> list[str]:
        return self.events.split()


class ForgeWebhookDelivery(UUIDv7AuditBase):
    """One delivery (Gitea's HookTask): the request as sent and the last attempt's outcome."""

    __tablename__ = "forge_webhook_delivery"
    __table_args__ = (Index("ix_forge_webhook_delivery_hook_created", "hook_id", "created_at"),)

    # SET NULL, not CASCADE: a repository's "repository deleted" event outlives the hooks (deleted with
    # the repository) it is addressed to, so each delivery carries its own target.
    hook_id: Mapped[UUID | None] = mapped_column(ForeignKey("forge_webhook.id", ondelete="SET NULL"))
    url: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(8), default="json")
    # X-Gitea-Delivery: the id the receiver sees (a redelivery gets a new one, as on Gitea).
    delivery: Mapped[UUID] = mapped_column(unique=True)
    event: Mapped[str] = mapped_column(String(32))
    request_headers: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    request_body: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # None until an attempt got an HTTP answer.
    response_status: Mapped[int | None] = mapped_column(Integer, default=None)
    response_body: Mapped[str] = mapped_column(Text, default="")  # the first 4 KiB
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)
    # True once no further attempt will be made (success, or retries exhausted).
    finished: Mapped[bool] = mapped_column(Boolean, default=False)


class ForgeRepoRedirect(UUIDv7AuditBase):
    """An old ``owner/name`` of a renamed repository (Gitea ``models/repo/redirect.go``)."""

    __tablename__ = "forge_repo_redirect"
    __table_args__ = (UniqueConstraint("owner_id", "lower_name", name="uq_forge_repo_redirect_owner_name"),)

    owner_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"))
    lower_name: Mapped[str] = mapped_column(String(100))
    repo_id: Mapped[UUID] = mapped_column(ForeignKey("forge_repo.id", ondelete="CASCADE"), index=True)
