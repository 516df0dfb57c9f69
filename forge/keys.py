"""The forge's surrogate keys, built here only: its public pages are tagged with them and every
change to a repository (settings, creation, deletion, pushes) purges them."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from fragments.purge import SurrogateKey

__all__ = ["INDEX", "owner", "repo", "repo_pages"]

INDEX: Final = SurrogateKey("forge")  # /forge and every page that lists repositories


def repo(repo_id: UUID | str) -> SurrogateKey:
    return SurrogateKey(f"forge-repo-{repo_id}")


def owner(user_id: UUID | str) -> SurrogateKey:
    """The owner's page (/forge/<owner>), keyed by the user's id so a rename keeps it."""
    return SurrogateKey(f"forge-user-{user_id}")


def repo_pages(repo_id: UUID | str, owner_id: UUID | str | None = None) -> list[SurrogateKey]:
    """What a change to one repository purges; its owner's page too when the listing may change."""
    return [INDEX, repo(repo_id), *([owner(owner_id)] if owner_id else [])]
