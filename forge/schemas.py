"""The forge's msgspec Structs: what its web forms hold (read with ``app.forms.parse_form``) and the
JSON shapes of its API (Gitea's field names, ``/api/v1``).

Form fields stay strings where the handler answers bad input with its own message (a checkbox
sends ``on``; an interval that is not a number gets "Enter a number of seconds."), so every
status code and message is the one the pages always gave.
"""

from __future__ import annotations

import msgspec

CHECKED = "on"  # what a checked HTML checkbox sends


# -- web forms --------------------------------------------------------------------------------------
class NewRepoForm(msgspec.Struct, kw_only=True):
    """``/forge/new``: a new repository, or a clone of ``import_url`` (kept pulling with ``mirror``)."""

    name: str = ""
    description: str = ""
    visibility: str = "public"
    default_branch: str = ""
    import_url: str = ""
    import_token: str = ""
    mirror: str = ""


class RepoSettingsForm(msgspec.Struct, kw_only=True):
    description: str = ""
    visibility: str = "public"
    default_branch: str | None = None  # None: keep the repository's
    allow_force_push: str = ""


class CollaboratorForm(msgspec.Struct, kw_only=True):
    username: str = ""
    permission: str = "write"


class ProtectionForm(msgspec.Struct, kw_only=True):
    pattern: str = ""
    allow_deletion: str = ""


class MirrorForm(msgspec.Struct, kw_only=True):
    direction: str = "pull"
    remote_url: str = ""
    token: str = ""
    interval: str = "3600"
    follow_force: str = ""


class MirrorChoiceForm(msgspec.Struct, kw_only=True):
    mirror_id: str = ""
    follow_force: str = ""  # the force-push toggle of a pull mirror: "on" or ""


class DeleteRepoForm(msgspec.Struct, kw_only=True):
    confirm: str = ""


# -- JSON API ---------------------------------------------------------------------------------------

class CreateRepoOption(msgspec.Struct, kw_only=True):
    """Gitea ``CreateRepoOption`` (the subset we honour)."""

    name: str
    description: str = ""
    private: bool = False
    default_branch: str = "main"
    # Clients such as py-gitea send null for what they leave out.
    auto_init: bool | None = False
    license: str | None = None
    gitignores: str | None = None
    readme: str | None = None


class EditRepoOption(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Gitea ``EditRepoOption`` (the subset we honour; unknown fields are ignored)."""

    name: str | None = None
    description: str | None = None
    private: bool | None = None
    default_branch: str | None = None
    archived: bool | None = None


class CollaboratorOption(msgspec.Struct, kw_only=True):
    permission: str = "write"


class MigrateRepoOption(msgspec.Struct, kw_only=True):
    """Gitea ``MigrateRepoOptions``: clone ``clone_addr`` into a new repository of the caller."""

    clone_addr: str
    repo_name: str
    auth_token: str | None = None
    # Gitea's alternative to a token: HTTP Basic (on Rose Ash and Gitea the password may be a token).
    auth_username: str | None = None
    auth_password: str | None = None
    mirror: bool = False
    private: bool = False
    description: str = ""
    mirror_interval: str | None = None


class CreatePushMirrorOption(msgspec.Struct, kw_only=True):
    """Gitea ``CreatePushMirrorOption``; ``remote_password`` is the peer's access token."""

    remote_address: str
    remote_username: str | None = None
    remote_password: str | None = None
    interval: str | None = None
    sync_on_commit: bool = True


class PayloadUser(msgspec.Struct, kw_only=True):
    name: str
    email: str
    username: str = ""


class PayloadCommit(msgspec.Struct, kw_only=True):
    id: str
    message: str
    url: str
    author: PayloadUser | None
    committer: PayloadUser | None
    timestamp: str | None


class BranchRead(msgspec.Struct, kw_only=True):
    """Gitea ``Branch`` (no pull requests or required checks here: those fields are fixed)."""

    name: str
    commit: PayloadCommit
    protected: bool
    user_can_push: bool
    effective_branch_protection_name: str
    required_approvals: int = 0
    enable_status_check: bool = False
    status_check_contexts: list[str] = []
    user_can_merge: bool = False


class TagCommit(msgspec.Struct, kw_only=True):
    url: str
    sha: str
    created: str | None


class TagRead(msgspec.Struct, kw_only=True):
    name: str
    message: str
    id: str
    commit: TagCommit
    zipball_url: str
    tarball_url: str
