"""Push policy as pure functions (design/forge.md §3.2), used by the pre-receive hook.

Nothing here touches git, the database or the network: the hook hands in the commands git
received, the policy the app resolved before spawning receive-pack, and a callable that answers
"is ``old`` an ancestor of ``new``?" (``git merge-base --is-ancestor``, run against the
quarantined objects). Keep this module stdlib-only: the hook imports it once per push.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

ZERO_OID = "0" * 40
ZERO_OID_256 = "0" * 64
ALLOWED_PREFIXES = ("refs/heads/", "refs/tags/")
_BAD_CHARS = set(" ~^:?*[\\\x7f") | {chr(c) for c in range(0x20)}


@dataclass(frozen=True)
class Protection:
    """Branches matching ``pattern`` (exact or fnmatch glob) refuse force pushes and, unless allowed, deletion."""

    pattern: str
    allow_deletion: bool = False

    def matches(self, branch: str) -> bool:
        return branch == self.pattern or fnmatch.fnmatchcase(branch, self.pattern)


@dataclass(frozen=True)
class PushPolicy:
    default_branch: str = "main"
    allow_force_push: bool = False
    protected: tuple[Protection, ...] = ()
    tags_immutable: bool = True
    # Non-empty: every ref change is refused with this reason (a pull mirror is read-only to pushes).
    read_only: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PushPolicy:
        raw = json.loads(text) if text else {}
        return cls(
            default_branch=str(raw.get("default_branch", "main")),
            allow_force_push=bool(raw.get("allow_force_push", False)),
            protected=tuple(Protection(str(p["pattern"]), bool(p.get("allow_deletion", False)))
                            for p in raw.get("protected", ())),
            tags_immutable=bool(raw.get("tags_immutable", True)),
            read_only=str(raw.get("read_only", "")),
        )

    def protection_for(self, branch: str) -> Protection | None:
        return next((p for p in self.protected if p.matches(branch)), None)


@dataclass(frozen=True)
class Command:
    """One ``<old> <new> <ref>`` line of a push (githooks(5), pre-receive)."""

    old: str
    new: str
    ref: str

    @property
    def is_create(self) -> bool:
        return is_zero(self.old)

    @property
    def is_delete(self) -> bool:
        return is_zero(self.new)


@dataclass(frozen=True)
class Rejection:
    ref: str
    reason: str


@dataclass
class Decision:
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.rejections


def is_zero(oid: str) -> bool:
    return oid in (ZERO_OID, ZERO_OID_256) or (bool(oid) and set(oid) == {"0"})


def check_ref_format(name: str) -> bool:
    """Python port of git's ``check_refname_format`` (git-check-ref-format(1)) without flags."""
    if not name or name == "@" or name.endswith("/") or name.startswith("/") or name.endswith("."):
        return False
    if ".." in name or "@{" in name or "//" in name:
        return False
    if any(ch in _BAD_CHARS for ch in name):
        return False
    components = name.split("/")
    if len(components) < 2:
        return False
    return all(comp and not comp.startswith(".") and not comp.endswith(".lock") for comp in components)


def parse_commands(lines: Iterable[str]) -> list[Command]:
    commands = []
    for line in lines:
        parts = line.strip().split(" ", 2)
        if len(parts) == 3:
            commands.append(Command(*parts))
    return commands


def decide(commands: Sequence[Command], policy: PushPolicy, is_ancestor: Callable[[str, str], bool]) -> Decision:
    """Check every command; a push is accepted only when no command is rejected."""
    decision = Decision()
    for cmd in commands:
        reason = _check(cmd, policy, is_ancestor)
        if reason:
            decision.rejections.append(Rejection(cmd.ref, reason))
    return decision


def _check(cmd: Command, policy: PushPolicy, is_ancestor: Callable[[str, str], bool]) -> str | None:
    ref = cmd.ref
    if policy.read_only:
        return policy.read_only
    if not ref.startswith(ALLOWED_PREFIXES):
        return "only refs/heads/* and refs/tags/* may be pushed here"
    if not check_ref_format(ref):
        return "funny refname (see git check-ref-format)"
    if ref.startswith("refs/tags/"):
        if cmd.is_create:
            return None
        if policy.tags_immutable:
            return "tags cannot be deleted" if cmd.is_delete else "tags cannot be moved (delete is also refused)"
        return None
    branch = ref.removeprefix("refs/heads/")
    protection = policy.protection_for(branch)
    if cmd.is_delete:
        if branch == policy.default_branch:
            return f"the default branch '{branch}' cannot be deleted"
        if protection is not None and not protection.allow_deletion:
            return f"protected branch '{branch}' cannot be deleted"
        return None
    if cmd.is_create or is_ancestor(cmd.old, cmd.new):
        return None
    if protection is not None:
        return f"non-fast-forward update of protected branch '{branch}' refused"
    if not policy.allow_force_push:
        return "non-fast-forward updates are refused on branches (pull and merge or rebase first)"
    return None
