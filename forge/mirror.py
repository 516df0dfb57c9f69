"""The built-in mirror client, on the git CLI (design/forge.md §3.5).

* :func:`ls_remote` lists a remote's heads, tags and HEAD.
* :func:`clone_repository` creates a repository here from a remote (HEAD and default branch
  included); if the remote cannot be reached or the fetch fails, nothing is left behind: no row,
  no directory.
* :func:`pull` fetches a remote into ``refs/mirror-incoming/<mirror-id>/*`` (hidden by
  ``transfer.hideRefs``) and applies the differences to the real refs through
  :meth:`RepoService.update_refs_cas`, after the repository's push policy has judged them, so a
  mirror obeys the same fast-forward, tag and protection rules as a push and keeps the database
  ref mirror and the ``forge.push`` events in step.
* :func:`push` pushes to another forge with ``git push --atomic --porcelain`` and one
  ``--force-with-lease=<ref>:<expected>`` per ref: the lease is the remote's compare-and-swap.

Credentials travel only in the child's environment (``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n``
with ``http.extraHeader``), never in argv, URLs or logs, and every error text is scrubbed of them.
Remote URLs are user input: https only (http too when ``federation_allow_private_addresses`` is
set, for tests); the host is resolved in Python, every address checked with the federation
address policy, and git is pinned to the checked address with ``http.curloptResolve`` and
refuses redirects.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from app.settings import Settings
from domains.account.models import User
from forge.mirror_models import MIRROR_DIRECTIONS, ForgeMirror
from forge.models import ForgeRepo
from forge.policy import Command, decide
from forge.services import RefConflict, RefUpdate, RepoService, branch_name_problem
from forge.storage import GitError, RepoStore, run_git

SYNC_JOB = "forge.mirror.sync"
STAGING = "refs/mirror-incoming"
NETWORK_DEADLINE = 900.0
LOW_SPEED_LIMIT = 1000  # bytes per second ...
LOW_SPEED_TIME = 60  # ... for this many seconds, and git gives up
MIN_INTERVAL = 60
MAX_INTERVAL = 7 * 24 * 3600
MAX_ERROR_CHARS = 4000

__all__ = [
    "SYNC_JOB",
    "GitRemote",
    "MirrorError",
    "MirrorService",
    "MirrorSyncPayload",
    "PushResult",
    "RemoteRefs",
    "SyncReport",
    "build_remote",
    "clone_repository",
    "import_repository",
    "ls_remote",
    "mirror_view",
    "pull",
    "push",
    "push_all",
    "push_command",
    "summarize_push",
]


class MirrorError(Exception):
    """The remote could not be reached, refused us, or the URL is not allowed. Never holds a secret."""


class MirrorSyncPayload(msgspec.Struct, frozen=True):
    mirror_id: str
    generation: int = 0
    # True for the self-rescheduling chain; a one-shot run (manual "sync now", a push) never reschedules.
    chain: bool = False


# -- remotes: URL policy, pinning and credentials ---------------------------------------------------------
@dataclass(frozen=True)
class GitRemote:
    """A checked remote: the URL git gets, and the config it gets through the environment."""

    url: str
    config: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...] = ()

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        env["GIT_TERMINAL_PROMPT"] = "0"
        env["GIT_ASKPASS"] = "/bin/false"
        env["GIT_CONFIG_COUNT"] = str(len(self.config))
        for n, (key, value) in enumerate(self.config):
            env[f"GIT_CONFIG_KEY_{n}"] = key
            env[f"GIT_CONFIG_VALUE_{n}"] = value
        return env

    def scrub(self, text: str) -> str:
        """``text`` without any credential (git never prints them, but be sure)."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "[redacted]")
        return text


def _check_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> None:
    """The federation address policy (federation.md §9) when that package is present."""
    try:
        from federation.activitypub.safe_fetch import check_address
    except ImportError:  # pragma: no cover - TODO: drop the fallback once federation/activitypub always ships
        if allow_private and ip.is_loopback:  # the test allowance: this machine only
            return
        if not ip.is_global or ip.is_multicast or ip.is_reserved:
            raise MirrorError(f"The remote's address is not allowed: {ip} is not public") from None
        return
    try:
        check_address(ip, allow_private=allow_private)
    except Exception as exc:  # BlockedAddressError
        raise MirrorError(f"The remote's address is not allowed: {exc}") from None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise MirrorError(f"Cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def build_remote(url: str, token: str | None, *, allow_private: bool) -> GitRemote:
    """Check ``url`` (scheme, no userinfo, every resolved address) and pin git to one checked address."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MirrorError("That is not a valid URL.") from None
    schemes = {"https", "http"} if allow_private else {"https"}
    if parts.scheme not in schemes:
        raise MirrorError("Only https:// remotes are allowed.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise MirrorError("Put the token in the token field, not in the URL.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host or parts.query or parts.fragment or any(c in url for c in "\r\n\t "):
        raise MirrorError("That is not a valid URL.")
    if not allow_private and (host == "localhost" or host.endswith((".localhost", ".local", ".internal"))):
        raise MirrorError(f"The host {host} is not allowed.")
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = await asyncio.to_thread(_resolve, host, port)
    if not addresses:
        raise MirrorError(f"Cannot resolve {host}.")
    for address in addresses:
        _check_address(ipaddress.ip_address(address.split("%", 1)[0]), allow_private)
    pinned = addresses[0]
    pin = f"[{pinned}]" if ":" in pinned else pinned
    config: list[tuple[str, str]] = [
        ("protocol.allow", "never"),
        ("protocol.https.allow", "always"),
        *([("protocol.http.allow", "always")] if allow_private else []),
        ("http.followRedirects", "false"),
        ("http.curloptResolve", f"{host}:{port}:{pin}"),
        ("http.lowSpeedLimit", str(LOW_SPEED_LIMIT)),
        ("http.lowSpeedTime", str(LOW_SPEED_TIME)),
        ("credential.helper", ""),
        ("core.askPass", "/bin/false"),
    ]
    secrets: tuple[str, ...] = ()
    if token:
        if any(c in token for c in "\r\n\0"):
            raise MirrorError("The token contains invalid characters.")
        config.append(("http.extraHeader", f"Authorization: token {token}"))
        secrets = (token, base64.b64encode(token.encode()).decode())
    return GitRemote(url=url, config=tuple(config), secrets=secrets)


async def _git_remote(remote: GitRemote, store: RepoStore, args: list[str], *, git_dir: str | None = None,
                      deadline: float = NETWORK_DEADLINE, check: bool = True) -> tuple[int, bytes, bytes]:
    """Run a network git command; errors are raised as :class:`MirrorError`, scrubbed."""
    store.config.ensure_state()
    argv = ([f"--git-dir={git_dir}"] if git_dir else []) + args
    env = remote.env(store.git_env())
    try:
        return await run_git(argv, env=env, cwd=store.config.tmp_dir, deadline=deadline, check=check)
    except GitError as exc:
        raise MirrorError(remote.scrub(_last_lines(exc.stderr) or f"git {args[0]} failed")) from None
    except TimeoutError:
        raise MirrorError(f"git {args[0]} timed out after {deadline:g}s") from None


def _last_lines(text: str, n: int = 4) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " / ".join(lines[-n:])[:MAX_ERROR_CHARS]


# -- ls-remote -------------------------------------------------------------------------------------------
@dataclass
class RemoteRefs:
    refs: dict[str, str] = field(default_factory=dict)
    head: str | None = None  # the branch HEAD points at, e.g. "main"


async def ls_remote(remote: GitRemote, store: RepoStore) -> RemoteRefs:
    _code, out, _err = await _git_remote(remote, store, [
        "ls-remote", "--symref", remote.url, "HEAD", "refs/heads/*", "refs/tags/*"], deadline=120.0)
    result = RemoteRefs()
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("ref: "):
            target, _, name = line[5:].partition("\t")
            if name == "HEAD" and target.startswith("refs/heads/"):
                result.head = target.removeprefix("refs/heads/")
            continue
        oid, _, name = line.partition("\t")
        if name.startswith(("refs/heads/", "refs/tags/")) and not name.endswith("^{}"):
            result.refs[name] = oid
    return result


# -- pull --------------------------------------------------------------------------------------------------
@dataclass
class SyncReport:
    applied: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    @property
    def error(self) -> str:
        return "; ".join(self.rejected)[:MAX_ERROR_CHARS]


async def fetch_to_staging(remote: GitRemote, store: RepoStore, repo_id: uuid.UUID, staging: str) -> dict[str, str]:
    """``git fetch --prune --no-tags`` every head and tag into ``staging`` (no database work)."""
    await _git_remote(remote, store, [
        "fetch", "--prune", "--no-tags", "--no-write-fetch-head", "--quiet", remote.url,
        f"+refs/heads/*:{staging}/heads/*", f"+refs/tags/*:{staging}/tags/*",
    ], git_dir=str(store.locate(repo_id)))
    _code, out, _err = await store.git(repo_id, "for-each-ref", "--format=%(objectname) %(refname)", staging)
    incoming: dict[str, str] = {}
    for line in out.decode().splitlines():
        oid, _, name = line.partition(" ")
        incoming["refs/" + name.removeprefix(staging + "/")] = oid
    return incoming


async def drop_staging(store: RepoStore, repo_id: uuid.UUID, staging: str) -> None:
    _code, out, _err = await store.git(repo_id, "for-each-ref", "--format=%(refname)", staging, check=False)
    names = out.decode().split()
    if names:
        await store.git(repo_id, "update-ref", "--stdin", check=False,
                        input="".join(f"delete {n}\n" for n in names).encode())


async def apply_incoming(service: RepoService, repo: ForgeRepo, incoming: Mapping[str, str], *,
                         actor_id: uuid.UUID | None = None) -> SyncReport:
    """Judge the differences with the repository's push policy, then apply them in one CAS transaction."""
    _code, out, _err = await service.store.git(repo.id, "for-each-ref", "--format=%(objectname) %(refname)",
                                              "refs/heads", "refs/tags")
    current = {name: oid for oid, _, name in (ln.partition(" ") for ln in out.decode().splitlines())}
    commands: list[Command] = []
    for name in sorted(set(incoming) | set(current)):
        old, new = current.get(name), incoming.get(name)
        if old == new:
            continue
        commands.append(Command(old or "0" * 40, new or "0" * 40, name))
    ancestry: dict[tuple[str, str], bool] = {}
    for cmd in commands:
        if cmd.ref.startswith("refs/heads/") and not cmd.is_create and not cmd.is_delete:
            rc, _o, _e = await service.store.git(repo.id, "merge-base", "--is-ancestor", cmd.old, cmd.new, check=False)
            ancestry[(cmd.old, cmd.new)] = rc == 0
    policy = await service.push_policy(repo)
    decision = decide(commands, policy, lambda old, new: ancestry.get((old, new), False))
    refused = {r.ref: r.reason for r in decision.rejections}
    report = SyncReport(rejected=[f"{ref}: {reason}" for ref, reason in refused.items()])
    updates = [RefUpdate(c.ref, None if c.is_delete else c.new, None if c.is_create else c.old)
               for c in commands if c.ref not in refused]
    if updates:
        try:
            # The service re-checks the same policy under its own code path (a second net).
            await service.update_refs_cas(repo, updates, actor_id=actor_id, source="mirror", policy=policy)
        except RefConflict as exc:
            report.rejected.append(f"refs changed during the sync, retried next time: {exc}")
            return report
        except InputProblems as exc:
            report.rejected.append(str(exc))
            return report
        report.applied = [u.ref for u in updates]
    return report


async def pull(service: RepoService, repo: ForgeRepo, remote: GitRemote, *, mirror_id: str = "adhoc",
               actor_id: uuid.UUID | None = None) -> SyncReport:
    """Fetch and apply in one call (the job splits the two so no transaction spans the network)."""
    staging = f"{STAGING}/{mirror_id}"
    try:
        incoming = await fetch_to_staging(remote, service.store, repo.id, staging)
        return await apply_incoming(service, repo, incoming, actor_id=actor_id)
    finally:
        await drop_staging(service.store, repo.id, staging)


async def clone_repository(service: RepoService, owner: User, name: str, remote: GitRemote, *,
                           description: str = "", private: bool = False) -> ForgeRepo:
    """Create ``owner/name`` from ``remote``: refs, HEAD and the default branch follow the remote.

    The remote is listed first, so an unreachable one creates nothing; any later failure deletes
    the new row and its directory before the error propagates.
    """
    listing = await ls_remote(remote, service.store)
    default_branch = listing.head or ("main" if "refs/heads/main" in listing.refs else
                                      next((r.removeprefix("refs/heads/") for r in sorted(listing.refs)
                                            if r.startswith("refs/heads/")), "main"))
    if branch_name_problem(default_branch):
        default_branch = "main"
    repo = await service.create(owner, name, description=description, private=private, default_branch=default_branch)
    staging = f"{STAGING}/clone"
    try:
        incoming = await fetch_to_staging(remote, service.store, repo.id, staging)
        updates = [RefUpdate(ref, oid, None) for ref, oid in sorted(incoming.items())]
        if updates:
            await service.update_refs_cas(repo, updates, actor_id=owner.id, source="mirror")
        await drop_staging(service.store, repo.id, staging)
    except BaseException:
        await service.delete(repo)
        raise
    return repo


async def import_repository(service: RepoService, settings: Settings, owner: User, name: str, url: str,
                            token: str | None, *, mirror: bool = False, interval_seconds: int = 3600,
                            description: str = "", private: bool = False) -> ForgeRepo:
    """Clone ``url`` into ``owner/name`` and, with ``mirror``, keep pulling it on a schedule.

    Raises :class:`InputProblems` with the keys ``name``, ``url``, ``interval`` (422, or 409 for a
    taken name); whatever failed, no row and no directory are left (the caller rolls back).
    """
    if mirror and not MIN_INTERVAL <= interval_seconds <= MAX_INTERVAL:
        raise InputProblems({"interval": f"Use between {MIN_INTERVAL} and {MAX_INTERVAL} seconds."})
    try:
        remote = await build_remote(url, token, allow_private=settings.federation_allow_private_addresses)
    except MirrorError as exc:
        raise InputProblems({"url": str(exc)}) from None
    if await service.get_by_owner_and_name(owner.username, name) is not None:
        raise InputProblems({"name": "You already have a repository with that name."}, status=409)
    try:
        repo = await clone_repository(service, owner, name, remote, description=description, private=private)
    except MirrorError as exc:
        raise InputProblems({"url": str(exc)}) from None
    except RefConflict as exc:
        raise InputProblems({"url": f"The remote's refs could not be applied: {exc}"}, status=409) from None
    if mirror:
        try:
            await MirrorService(service.db, service.store, settings).add(
                repo, direction="pull", remote_url=url, token=token, interval_seconds=interval_seconds)
        except BaseException:
            service.store.delete(repo.id)
            raise
    return repo


# -- push --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PushResult:
    ref: str
    flag: str  # git push --porcelain: " " ff, "+" forced, "-" deleted, "*" new, "!" rejected, "=" up to date
    summary: str

    @property
    def ok(self) -> bool:
        return self.flag != "!"


def push_command(remote: GitRemote, updates: Sequence[tuple[str, str | None, str | None]]) -> list[str]:
    """argv for ``git push``: ``updates`` are (ref, local oid or None to delete, expected remote oid or None).

    Only refs, object ids and the URL: credentials are in :meth:`GitRemote.env`.
    """
    args = ["push", "--atomic", "--porcelain", "--no-verify"]
    for ref, _new, expected in updates:
        args.append(f"--force-with-lease={ref}:{expected or ''}")
    args.append(remote.url)
    for ref, new, _expected in updates:
        args.append(f"{new}:{ref}" if new else f":{ref}")
    return args


def parse_porcelain(out: str) -> list[PushResult]:
    results = []
    for line in out.splitlines():
        if len(line) < 2 or line[1] != "\t":
            continue
        flag, rest = line[0], line[2:]
        spec, _, summary = rest.partition("\t")
        results.append(PushResult(spec.rpartition(":")[2], flag, summary))
    return results


async def push(store: RepoStore, repo_id: uuid.UUID, remote: GitRemote,
               updates: Sequence[tuple[str, str | None, str | None]]) -> list[PushResult]:
    """One atomic push of ``updates``; per-ref results from ``--porcelain`` (rejections are ``!``)."""
    if not updates:
        return []
    _code, out, err = await _git_remote(remote, store, push_command(remote, updates),
                                        git_dir=str(store.locate(repo_id)), check=False)
    results = parse_porcelain(out.decode(errors="replace"))
    if not results:
        raise MirrorError(remote.scrub(_last_lines(err.decode(errors="replace")) or "git push failed"))
    return results


async def push_all(store: RepoStore, repo_id: uuid.UUID, remote: GitRemote) -> list[PushResult]:
    """Make the remote's heads and tags equal ours (creations, updates and deletions), leased on what it has."""
    listing = await ls_remote(remote, store)
    _code, out, _err = await store.git(repo_id, "for-each-ref", "--format=%(objectname) %(refname)",
                                       "refs/heads", "refs/tags")
    local = {name: oid for oid, _, name in (ln.partition(" ") for ln in out.decode().splitlines())}
    updates: list[tuple[str, str | None, str | None]] = []
    for ref in sorted(set(local) | set(listing.refs)):
        ours, theirs = local.get(ref), listing.refs.get(ref)
        if ours != theirs:
            updates.append((ref, ours, theirs))
    return await push(store, repo_id, remote, updates)


# -- credentials at rest -----------------------------------------------------------------------------------
def _aead(secret_key: str) -> AESGCM:
    return AESGCM(hashlib.sha256(b"rose-ash forge mirror credential\0" + secret_key.encode()).digest())


def seal_token(secret_key: str, token: str, context: str) -> bytes:
    nonce = os.urandom(12)
    return b"\x01" + nonce + _aead(secret_key).encrypt(nonce, token.encode(), context.encode())


def open_token(secret_key: str, blob: bytes | None, context: str) -> str | None:
    if not blob:
        return None
    if blob[:1] != b"\x01":
        raise MirrorError("The stored credential has an unknown format.")
    try:
        return _aead(secret_key).decrypt(blob[1:13], blob[13:], context.encode()).decode()
    except InvalidTag:
        raise MirrorError("The stored credential cannot be decrypted (was SECRET_KEY changed?).") from None


def _context(repo_id: uuid.UUID, direction: str, url: str) -> str:
    return f"{repo_id}\0{direction}\0{url}"


# -- configuration (web form, API) -------------------------------------------------------------------------
class MirrorService:
    def __init__(self, db: AsyncSession, store: RepoStore, settings: Settings) -> None:
        self.db = db
        self.store = store
        self.settings = settings

    async def list_for(self, repo: ForgeRepo) -> list[ForgeMirror]:
        rows = await self.db.execute(select(ForgeMirror).where(ForgeMirror.repo_id == repo.id)
                                     .order_by(ForgeMirror.direction, ForgeMirror.remote_url))
        return list(rows.scalars().all())

    async def get(self, repo: ForgeRepo, mirror_id: str) -> ForgeMirror | None:
        try:
            mid = uuid.UUID(mirror_id)
        except ValueError:
            return None
        mirror = await self.db.get(ForgeMirror, mid)
        return mirror if mirror is not None and mirror.repo_id == repo.id else None

    async def add(self, repo: ForgeRepo, *, direction: str, remote_url: str, token: str | None,
                  interval_seconds: int = 3600) -> ForgeMirror:
        """Validate and save a pull mirror or push target, and queue its first sync (which reschedules itself)."""
        errors: dict[str, str] = {}
        if direction not in MIRROR_DIRECTIONS:
            errors["direction"] = "Choose pull or push."
        if not MIN_INTERVAL <= interval_seconds <= MAX_INTERVAL:
            errors["interval"] = f"Use between {MIN_INTERVAL} and {MAX_INTERVAL} seconds."
        if len(remote_url) > 2000:
            errors["remote_url"] = "That URL is too long."
        else:
            try:
                await build_remote(remote_url, token, allow_private=self.settings.federation_allow_private_addresses)
            except MirrorError as exc:
                errors["remote_url"] = str(exc)
        if errors:
            raise InputProblems(errors)
        existing = (await self.db.execute(select(ForgeMirror).where(
            ForgeMirror.repo_id == repo.id, ForgeMirror.direction == direction, ForgeMirror.remote_url == remote_url,
        ))).scalar_one_or_none()
        if existing is not None:
            raise InputProblems({"remote_url": "That mirror already exists."}, status=409)
        mirror = ForgeMirror(repo_id=repo.id, direction=direction, remote_url=remote_url,
                             interval_seconds=interval_seconds, generation=1, last_error="",
                             credential=seal_token(self.settings.secret_key, token,
                                                   _context(repo.id, direction, remote_url)) if token else None)
        self.db.add(mirror)
        await self.db.flush()
        from forge.mirror_jobs import schedule_mirror  # the job module imports this one

        await schedule_mirror(self.db, mirror)
        return mirror

    async def remove(self, repo: ForgeRepo, mirror_id: str) -> bool:
        mirror = await self.get(repo, mirror_id)
        if mirror is None:
            return False
        from forge.mirror_jobs import unschedule_mirror

        await unschedule_mirror(self.db, mirror.id)
        await self.db.delete(mirror)
        await self.db.flush()
        return True

    async def schedule_now(self, repo: ForgeRepo, mirror_id: str) -> None:
        """Sync now and restart the schedule from here: the mirror's recurring job moves to now under a
        new generation, so a schedule whose run died after repeated failures is re-armed too."""
        mirror = await self.get(repo, mirror_id)
        if mirror is None:
            raise MirrorError("No such mirror.")
        mirror.generation += 1
        await self.db.flush()
        from forge.mirror_jobs import schedule_mirror

        await schedule_mirror(self.db, mirror)

    def token_of(self, mirror: ForgeMirror) -> str | None:
        return open_token(self.settings.secret_key, mirror.credential,
                          _context(mirror.repo_id, mirror.direction, mirror.remote_url))

    async def remote_of(self, mirror: ForgeMirror) -> GitRemote:
        return await build_remote(mirror.remote_url, self.token_of(mirror),
                                  allow_private=self.settings.federation_allow_private_addresses)


def mirror_view(mirror: ForgeMirror) -> dict[str, object]:
    """The JSON shape of a mirror (never its credential)."""
    return {
        "id": str(mirror.id), "direction": mirror.direction, "remote_url": mirror.remote_url,
        "interval": mirror.interval_seconds, "enabled": mirror.enabled, "has_credential": mirror.credential is not None,
        "last_sync_at": mirror.last_sync_at.isoformat() if mirror.last_sync_at else None,
        "last_error": mirror.last_error,
    }


def summarize_push(results: Iterable[PushResult]) -> str:
    return "; ".join(f"{r.ref}: {r.summary}" for r in results if not r.ok)[:MAX_ERROR_CHARS]

