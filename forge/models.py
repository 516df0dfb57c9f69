"""Forge tables: repositories, collaborators, branch protection and the database mirror of refs.

Repositories are addressed on disk by id (``RepoStore.locate``), never by name, so a rename or a
transfer changes only these rows (design/forge.md §3.4). ``forge_repo_ref`` mirrors
``git for-each-ref refs/heads refs/tags`` and ``ForgeRepo.ref_version`` is bumped on every change
(§3.3): the UI and the API read refs from here without touching disk.
"""

from __future__ import annotations

from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domains.account.models import User

# Collaborator permissions, weakest first. "admin" may change settings and collaborators.
PERMISSIONS = ("read", "write", "admin")


class ForgeRepo(UUIDv7AuditBase):
    __tablename__ = "forge_repo"
    __table_args__ = (UniqueConstraint("owner_id", "lower_name", name="uq_forge_repo_owner_lower_name"),)

    owner_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # Names are unique per owner regardless of case, as on Gitea.
    lower_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    is_private: Mapped[bool] = mapped_column(Boolean, default=False)
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    # The owner may allow non-fast-forward pushes to branches that no protection rule covers.
    allow_force_push: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped whenever the ref mirror changes; the ETag of branch and tag listings.
    ref_version: Mapped[int] = mapped_column(Integer, default=0)
    # Archived: read-only to pushes and API writes (Gitea's "archived"), still readable.
    is_archived: Mapped[bool] = mapped_column(Boolean, default=False)
    # Gitea topics, space-separated, lower case (``PUT /repos/{o}/{r}/topics``).
    topics: Mapped[str] = mapped_column(Text, default="")

    owner: Mapped[User] = relationship(lazy="raise", foreign_keys=[owner_id])
    collaborators: Mapped[list[ForgeCollaborator]] = relationship(
        back_populates="repo", cascade="all, delete-orphan", lazy="raise", passive_deletes=True
    )
    protections: Mapped[list[ForgeBranchProtection]] = relationship(
        back_populates="repo", cascade="all, delete-orphan", lazy="raise", passive_deletes=True
    )
    refs: Mapped[list[ForgeRepoRef]] = relationship(
        back_populates="repo", cascade="all, delete-orphan", lazy="raise", passive_deletes=True
    )


class ForgeCollaborator(UUIDv7AuditBase):
    __tablename__ = "forge_collaborator"
    __table_args__ = (UniqueConstraint("repo_id", "user_id", name="uq_forge_collaborator_repo_user"),)

    repo_id: Mapped[UUID] = mapped_column(ForeignKey("forge_repo.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("account_user.id", ondelete="CASCADE"), index=True)
    permission: Mapped[str] = mapped_column(String(16), default="read")

    repo: Mapped[ForgeRepo] = relationship(back_populates="collaborators", lazy="raise")
    user: Mapped[User] = relationship(lazy="raise")


class ForgeBranchProtection(UUIDv7AuditBase):
    """A rule for branches matching ``pattern`` (an exact name or an fnmatch glob such as ``release/*``).

    A protected branch never accepts a non-fast-forward push, whatever ``ForgeRepo.allow_force_push``
    says, and may not be deleted unless ``allow_deletion``.
    """

    __tablename__ = "forge_branch_protection"
    __table_args__ = (UniqueConstraint("repo_id", "pattern", name="uq_forge_branch_protection_repo_pattern"),)

    repo_id: Mapped[UUID] = mapped_column(ForeignKey("forge_repo.id", ondelete="CASCADE"), index=True)
    pattern: Mapped[str] = mapped_column(String(255))
    allow_deletion: Mapped[bool] = mapped_column(Boolean, default=False)

    repo: Mapped[ForgeRepo] = relationship(back_populates="protections", lazy="raise")


class ForgeRepoRef(UUIDv7AuditBase):
    """One ref (``refs/heads/*`` or ``refs/tags/*``) as git last reported it."""

    __tablename__ = "forge_repo_ref"
    __table_args__ = (UniqueConstraint("repo_id", "name", name="uq_forge_repo_ref_repo_name"),)

    repo_id: Mapped[UUID] = mapped_column(ForeignKey("forge_repo.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(1024))
    oid: Mapped[str] = mapped_column(String(64))
    # For annotated tags, the object the tag points at (``%(*objectname)``); None otherwise.
    peeled: Mapped[str | None] = mapped_column(String(64), default=None)

    repo: Mapped[ForgeRepo] = relationship(back_populates="refs", lazy="raise")
