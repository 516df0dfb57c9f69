"""JSON shapes of the forge API (Gitea's field names, ``/api/v1``)."""

from __future__ import annotations

from datetime import datetime

import msgspec


class CreateRepoOption(msgspec.Struct, kw_only=True):
    """Gitea ``CreateRepoOption`` (the subset we honour)."""

    name: str
    description: str = ""
    private: bool = False
    default_branch: str = "main"


class RepoOwner(msgspec.Struct, kw_only=True):
    id: str
    login: str
    username: str


class RepoPermissions(msgspec.Struct, kw_only=True):
    admin: bool
    push: bool
    pull: bool


class RepositoryRead(msgspec.Struct, kw_only=True):
    """Gitea ``Repository`` (the subset we fill)."""

    id: str
    owner: RepoOwner
    name: str
    full_name: str
    description: str
    private: bool
    empty: bool
    default_branch: str
    clone_url: str
    html_url: str
    created_at: datetime
    updated_at: datetime
    permissions: RepoPermissions
