"""The git remote client, on the git CLI (design/forge.md §3.5): everything that talks to another
forge, and nothing about our database.

* :func:`build_remote` checks a remote URL and pins git to one checked address.
* :func:`ls_remote` lists a remote's heads, tags and HEAD.
* :func:`fetch_to_staging` fetches a remote's heads and tags into a hidden staging namespace
  (``refs/mirror-incoming/…``, hidden by ``transfer.hideRefs``); :func:`drop_staging` clears it.
* :func:`push` pushes with ``git push --porcelain`` (``--atomic`` by default) and one
  ``--force-with-lease=<ref>:<expected>`` per ref: the lease is the remote's compare-and-swap;
  :func:`push_mirror` makes the remote's heads and tags ours, leasing each ref on the value this
  mirror last pushed itself, so work done on the target is never overwritten.

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
import ipaddress
import re
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from forge.storage import GitError, RepoStore, run_git

STAGING = "refs/mirror-incoming"
NETWORK_DEADLINE = 900.0
LOW_SPEED_LIMIT = 1000  # bytes per second ...
LOW_SPEED_TIME = 60  # ... for this many seconds, and git gives up
MAX_ERROR_CHARS = 4000

__all__ = [
    "MAX_ERROR_CHARS",
    "NETWORK_DEADLINE",
    "STAGING",
    "GitRemote",
    "MirrorError",
    "MirrorPush",
    "PushResult",
    "RemoteRefs",
    "basic_credential",
    "build_remote",
    "drop_staging",
    "fetch_to_staging",
    "ls_remote",
    "parse_porcelain",
    "push",
    "push_command",
    "push_mirror",
    "summarize_push",
]


class MirrorError(Exception):
    """The remote could not be reached, refused us, or the URL is not allowed. Never holds a secret."""


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
        from app.safe_http import check_address
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


BASIC_PREFIX = "\0basic\0"


def basic_credential(username: str, password: str) -> str:
    """A user name and password as one credential string (stored sealed like a token).

    A token can never start with NUL (:func:`build_remote` refuses control characters), so the
    two kinds cannot be confused."""
    return f"{BASIC_PREFIX}{username}\0{password}"


async def build_remote(url: str, token: str | None, *, allow_private: bool) -> GitRemote:
    """Check ``url`` (scheme, no userinfo, every resolved address) and pin git to one checked address.

    ``token`` is sent as ``Authorization: token …``; a :func:`basic_credential` as HTTP Basic
    (Gitea's ``auth_username``/``auth_password``)."""
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
    if token and token.startswith(BASIC_PREFIX):
        username, _, password = token.removeprefix(BASIC_PREFIX).partition("\0")
        if any(c in username + password for c in "\r\n\0") or ":" in username:
            raise MirrorError("The user name or password contains invalid characters.")
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        config.append(("http.extraHeader", f"Authorization: Basic {basic}"))
        secrets = tuple(s for s in (password, basic, base64.b64encode(password.encode()).decode()) if s)
    elif token:
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


# -- staging: a remote's refs beside ours, hidden from clients ------------------------------------------
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


# -- push --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PushResult:
    ref: str
    flag: str  # git push --porcelain: " " ff, "+" forced, "-" deleted, "*" new, "!" rejected, "=" up to date
    summary: str  # git's summary, e.g. "[remote rejected] (pre-receive hook declined)", verbatim
    detail: str = ""  # the remote's own "remote: …" lines about this ref, verbatim

    @property
    def ok(self) -> bool:
        return self.flag != "!"

    @property
    def reason(self) -> str:
        text = self.summary
        if "(stale info)" in text:
            text += " (the target no longer holds what this mirror last pushed there; its work is kept)"
        return f"{text}: {self.detail}" if self.detail else text


def push_command(remote: GitRemote, updates: Sequence[tuple[str, str | None, str | None]], *,
                 atomic: bool = True) -> list[str]:
    """argv for ``git push``: ``updates`` are (ref, local oid or None to delete, expected remote oid or None).

    Each ref is leased (``--force-with-lease=<ref>:<expected>``, empty = must not exist): git
    sends the expected value as the old value of the receive-pack command, the remote's CAS.
    Only refs, object ids and the URL: credentials are in :meth:`GitRemote.env`.
    """
    args = ["push", "--porcelain", "--no-verify", *(["--atomic"] if atomic else [])]
    for ref, _new, expected in updates:
        args.append(f"--force-with-lease={ref}:{expected or ''}")
    args.append(remote.url)
    for ref, new, _expected in updates:
        args.append(f"{new}:{ref}" if new else f":{ref}")
    return args


def parse_porcelain(out: str, err: str = "") -> list[PushResult]:
    """Per-ref results of ``git push --porcelain``, each with the remote's own lines about it."""
    remote_lines = [ln.removeprefix("remote: ").strip() for ln in err.splitlines() if ln.startswith("remote: ")]
    remote_lines = [ln for ln in remote_lines if ln]
    results = []
    for line in out.splitlines():
        if len(line) < 2 or line[1] != "\t":
            continue
        flag, rest = line[0], line[2:]
        spec, _, summary = rest.partition("\t")
        ref = spec.rpartition(":")[2]
        detail = ""
        if flag == "!":
            mentions = re.compile(re.escape(ref) + r"(?![\w/.-])")
            about = [ln for ln in remote_lines if mentions.search(ln)]
            detail = " / ".join(about)[:MAX_ERROR_CHARS]
        results.append(PushResult(ref, flag, summary, detail))
    if len(results) == 1 and not results[0].ok and not results[0].detail and remote_lines:
        # One refused ref: whatever the remote said is about it.
        only = results[0]
        results[0] = PushResult(only.ref, only.flag, only.summary, " / ".join(remote_lines[-6:])[:MAX_ERROR_CHARS])
    return results


async def push(store: RepoStore, repo_id: uuid.UUID, remote: GitRemote,
               updates: Sequence[tuple[str, str | None, str | None]], *, atomic: bool = True) -> list[PushResult]:
    """One push of ``updates`` (atomic by default); per-ref results from ``--porcelain`` (rejections are ``!``)."""
    if not updates:
        return []
    _code, out, err = await _git_remote(remote, store, push_command(remote, updates, atomic=atomic),
                                        git_dir=str(store.locate(repo_id)), check=False)
    results = parse_porcelain(out.decode(errors="replace"), remote.scrub(err.decode(errors="replace")))
    if not results:
        raise MirrorError(remote.scrub(_last_lines(err.decode(errors="replace")) or "git push failed"))
    return results


MAX_SINGLE_RETRIES = 50


@dataclass
class MirrorPush:
    """The outcome of :func:`push_mirror`: per-ref results and what the target now holds from us."""

    results: list[PushResult] = field(default_factory=list)
    pushed: dict[str, str] = field(default_factory=dict)

    @property
    def error(self) -> str:
        return summarize_push(self.results)


async def push_mirror(store: RepoStore, repo_id: uuid.UUID, remote: GitRemote,
                      pushed: Mapping[str, str]) -> MirrorPush:
    """Make the target's heads and tags ours, leasing each ref on what WE last pushed there.

    ``pushed`` is ``{ref: oid}`` as this mirror last pushed and the target accepted. A ref the
    target changed since (work done on the target, or a ref it had before we came) fails its lease
    and is left alone; a ref we never pushed is never deleted. The target's listing is used only
    to adopt refs that already hold exactly our value (nothing to push), never as a lease. Refs are
    pushed together but not atomically; if some are refused, each refused one is tried alone, so
    one ref's refusal does not hold back the others and every refusal carries its own reason.
    """
    listing = await ls_remote(remote, store)
    _code, out, _err = await store.git(repo_id, "for-each-ref", "--format=%(objectname) %(refname)",
                                       "refs/heads", "refs/tags")
    local = {name: oid for oid, _, name in (ln.partition(" ") for ln in out.decode().splitlines())}
    outcome = MirrorPush(pushed=dict(pushed))
    updates: list[tuple[str, str | None, str | None]] = []
    for ref in sorted(set(local) | set(pushed)):
        ours, last, theirs = local.get(ref), pushed.get(ref), listing.refs.get(ref)
        if ours is not None and theirs == ours:
            outcome.pushed[ref] = ours  # already there: nothing to push
        elif ours is None and theirs is None:
            outcome.pushed.pop(ref, None)  # gone on both sides
        elif ours != last:
            updates.append((ref, ours, last))
        # else: unchanged here since we pushed it, but changed on the target: the target's work stays.
    if not updates:
        return outcome
    results = {r.ref: r for r in await push(store, repo_id, remote, updates, atomic=False)}
    refused = [u for u in updates if u[0] in results and not results[u[0]].ok]
    if len(updates) > 1 and refused:
        for update in refused[:MAX_SINGLE_RETRIES]:  # one at a time: collateral refusals clear up
            for result in await push(store, repo_id, remote, [update], atomic=False):
                results[result.ref] = result
    for ref, new, _expected in updates:
        found = results.get(ref)
        if found is None or not found.ok:
            continue
        if new is None:
            outcome.pushed.pop(ref, None)
        else:
            outcome.pushed[ref] = new
    outcome.results = [results[ref] for ref, _n, _e in updates if ref in results]
    return outcome


def summarize_push(results: Iterable[PushResult]) -> str:
    return "; ".join(f"{r.ref}: {r.reason}" for r in results if not r.ok)[:MAX_ERROR_CHARS]
