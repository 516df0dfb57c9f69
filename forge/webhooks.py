"""Webhooks in Gitea's format (issue 19 item 3).

Per repository; events ``push``, ``create``, ``delete``, ``repository``, ``status``. The bodies are
Gitea's payload structs (``modules/structs/hook.go``: ``PushPayload``, ``CreatePayload``,
``DeletePayload``, ``RepositoryPayload``, ``CommitStatusPayload``) and the headers those of
Gitea's deliverer (``services/webhook/deliver.go``): ``X-Gitea-Event``/``-Event-Type``,
``X-Gitea-Delivery`` (a UUID), ``X-Gitea-Signature`` (hex HMAC-SHA256 of the body keyed with the
hook's secret), the GitHub-compatible ``X-Hub-Signature-256: sha256=<hex>`` and
``X-Hub-Signature: sha1=<hex>``, ``X-GitHub-Event``/``-Delivery`` and the ``X-Gogs-*`` twins.

Nothing is sent while a request or a push runs: an event writes one
:class:`~forge.gitea_models.ForgeWebhookDelivery` row (the exact headers and body) and one durable
``forge.webhook.deliver`` job per hook in the caller's transaction; the job POSTs through
:class:`app.safe_http.SafeClient` (addresses checked at connect time, no redirects followed, capped
response, deadline) and records each attempt on the row. A 2xx ends it; anything else (a 3xx
included: a redirect is never followed, so one to a private address goes nowhere), a timeout or
a refused connection is retried with the queue's exponential backoff until ``MAX_ATTEMPTS``; a
blocked address is final at once. Pushes reach here through their own ``forge.push`` subscriber
job, so a hanging target never holds up a push.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import msgspec
from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from app.jobs import JobContext, PermanentFailure, job_handler
from app.safe_http import BlockedAddressError, FetchError, SafeClient, check_url
from app.settings import Settings
from domains.account.models import User
from forge.events import PushEvent, on_push
from forge.gitea.shapes import RepositoryJSON, UserJSON, repo_json, ts, user_json
from forge.gitea_models import HOOK_EVENTS, ForgeWebhook, ForgeWebhookDelivery
from forge.models import ForgeRepo
from forge.policy import ZERO_OID
from forge.runtime import runtime_for
from forge.services import RepoService
from forge.storage import RepoStore

log = logging.getLogger("rose_ash.forge.webhooks")

DELIVER_JOB = "forge.webhook.deliver"
MAX_ATTEMPTS = 6
MAX_HOOKS_PER_REPO = 20
MAX_PAYLOAD_COMMITS = 20  # Gitea's setting.Webhook.... default PagingNum is 10; 20 keeps pushes whole more often
RESPONSE_EXCERPT = 4096
CONTENT_TYPES = ("json", "form")


# -- payload structs (Gitea modules/structs/hook.go) ----------------------------------------------------
class PayloadUser(msgspec.Struct, kw_only=True):
    name: str
    email: str
    username: str


class PayloadCommitVerification(msgspec.Struct, kw_only=True):
    verified: bool = False
    reason: str = "gpg.error.not_signed_commit"
    signature: str = ""
    signer: None = None
    payload: str = ""


class PayloadCommit(msgspec.Struct, kw_only=True):
    id: str
    message: str
    url: str
    author: PayloadUser
    committer: PayloadUser
    verification: PayloadCommitVerification | None
    timestamp: str
    added: list[str]
    removed: list[str]
    modified: list[str]


class PushPayload(msgspec.Struct, kw_only=True):
    ref: str
    before: str
    after: str
    compare_url: str
    commits: list[PayloadCommit]
    total_commits: int
    head_commit: PayloadCommit | None
    repository: RepositoryJSON
    pusher: UserJSON | None
    sender: UserJSON | None


class CreatePayload(msgspec.Struct, kw_only=True):
    sha: str
    ref: str
    ref_type: str
    repository: RepositoryJSON
    sender: UserJSON | None


class DeletePayload(msgspec.Struct, kw_only=True):
    ref: str
    ref_type: str
    pusher_type: str
    repository: RepositoryJSON
    sender: UserJSON | None


class RepositoryPayload(msgspec.Struct, kw_only=True):
    action: str
    repository: RepositoryJSON
    organization: None
    sender: UserJSON | None


class CommitStatusPayload(msgspec.Struct, kw_only=True):
    commit: PayloadCommit | None
    context: str
    created_at: str
    description: str
    id: int
    repository: RepositoryJSON
    sender: UserJSON | None
    sha: str
    state: str
    target_url: str
    updated_at: str


class DeliverPayload(msgspec.Struct, frozen=True):
    delivery_id: str


# -- hooks -----------------------------------------------------------------------------------------
def url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why a hook URL is refused at creation, or None.

    Scheme, credentials, port and host name are checked as the safe client will; a host that is
    a literal IP must be public. Names are resolved only at delivery, where the safe client
    checks every address it connects to (so a name that resolves to 10.x is refused then).
    """
    if not url or len(url) > 2048:
        return "Enter the URL the events are sent to (2,048 characters at most)."
    try:
        parsed = check_url(url, allow_private=allow_private)
    except BlockedAddressError as exc:
        return f"This address is not allowed: {exc}."
    except FetchError:
        return "Enter a valid http or https URL."
    # A literal private IP was refused by check_url (check_address); a name is checked at connect.
    return None if parsed.host else "Enter a valid http or https URL."


def parse_events(events: Sequence[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(e.strip() for e in (events or ["push"]) if e.strip()))
    unknown = [e for e in chosen if e not in HOOK_EVENTS]
    if unknown:
        raise InputProblems({"events": f"Unknown event(s): {', '.join(unknown)}. Use {', '.join(HOOK_EVENTS)}."})
    return chosen or ["push"]


async def create_hook(db: AsyncSession, settings: Settings, repo: ForgeRepo, *, url: str, secret: str = "",
                      content_type: str = "json", events: Sequence[str] | None = None, active: bool = True,
                      branch_filter: str = "*") -> ForgeWebhook:
    errors: dict[str, str] = {}
    if problem := url_problem(url, allow_private=settings.federation_allow_private_addresses):
        errors["url"] = problem
    if content_type not in CONTENT_TYPES:
        errors["content_type"] = "Use json or form."
    if len(secret) > 255 or len(branch_filter) > 255:
        errors["secret"] = "Use 255 characters at most."
    try:
        chosen = parse_events(events)
    except InputProblems as exc:
        errors.update(exc.errors)
        chosen = []
    count = len((await db.execute(select(ForgeWebhook.id).where(ForgeWebhook.repo_id == repo.id))).all())
    if count >= MAX_HOOKS_PER_REPO:
        errors["url"] = f"A repository may have {MAX_HOOKS_PER_REPO} webhooks at most."
    if errors:
        raise InputProblems(errors)
    hook = ForgeWebhook(repo_id=repo.id, url=url, secret=secret, content_type=content_type, events=" ".join(chosen),
                        active=active, branch_filter=branch_filter or "*")
    db.add(hook)
    await db.flush()
    return hook


async def update_hook(db: AsyncSession, settings: Settings, hook: ForgeWebhook, *, url: str | None = None,
                      secret: str | None = None, content_type: str | None = None,
                      events: Sequence[str] | None = None, active: bool | None = None,
                      branch_filter: str | None = None) -> ForgeWebhook:
    errors: dict[str, str] = {}
    if url is not None and (problem := url_problem(url, allow_private=settings.federation_allow_private_addresses)):
        errors["url"] = problem
    if content_type is not None and content_type not in CONTENT_TYPES:
        errors["content_type"] = "Use json or form."
    chosen: list[str] | None = None
    if events is not None:
        try:
            chosen = parse_events(events)
        except InputProblems as exc:
            errors.update(exc.errors)
    if errors:
        raise InputProblems(errors)
    if url is not None:
        hook.url = url
    if secret is not None:
        hook.secret = secret
    if content_type is not None:
        hook.content_type = content_type
    if chosen is not None:
        hook.events = " ".join(chosen)
    if active is not None:
        hook.active = active
    if branch_filter is not None:
        hook.branch_filter = branch_filter or "*"
    await db.flush()
    return hook


async def delete_hook(db: AsyncSession, hook: ForgeWebhook) -> None:
    """Delete a hook and its delivery log (what is still queued for it is then not sent)."""
    await db.execute(sa_delete(ForgeWebhookDelivery).where(ForgeWebhookDelivery.hook_id == hook.id))
    await db.delete(hook)
    await db.flush()


async def announce_deletion(service: RepoService, settings: Settings, repo: ForgeRepo, actor: User | None) -> int:
    """Queue ``repository`` (action ``deleted``) to the repository's hooks, before it goes
    (Gitea's notifier sends it from DeleteRepository); the deliveries outlive the hooks."""
    if not any(_wants(h, "repository", None) for h in await hooks_of(service.db, repo.id)):
        return 0
    repository = await repo_json(service, settings, repo, "admin")
    sender = await user_json(service.db, settings.base_url, actor) if actor is not None else None
    return await emit(service.db, repo.id, "repository", RepositoryPayload(
        action="deleted", repository=repository, organization=None, sender=sender))


async def hooks_of(db: AsyncSession, repo_id: uuid.UUID) -> list[ForgeWebhook]:
    return list((await db.execute(
        select(ForgeWebhook).where(ForgeWebhook.repo_id == repo_id).order_by(ForgeWebhook.created_at)
    )).scalars().all())


async def deliveries_of(db: AsyncSession, hook_id: uuid.UUID, limit: int = 30) -> list[ForgeWebhookDelivery]:
    return list((await db.execute(
        select(ForgeWebhookDelivery).where(ForgeWebhookDelivery.hook_id == hook_id)
        .order_by(ForgeWebhookDelivery.created_at.desc(), ForgeWebhookDelivery.id.desc()).limit(limit)
    )).scalars().all())


# -- enqueueing -------------------------------------------------------------------------------------
def signatures(secret: str, body: bytes) -> dict[str, str]:
    sha256 = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    sha1 = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return {"X-Gitea-Signature": sha256, "X-Gogs-Signature": sha256, "X-Hub-Signature-256": f"sha256={sha256}",
            "X-Hub-Signature": f"sha1={sha1}"}


def _headers(event: str, delivery: uuid.UUID, secret: str, body: bytes) -> dict[str, str]:
    # Gitea services/webhook/deliver.go: the event type header says "push" etc. for all three families.
    headers = {
        "User-Agent": "Rose-Ash-Hookshot (Gitea compatible)",
        "X-Gitea-Delivery": str(delivery), "X-Gitea-Event": event, "X-Gitea-Event-Type": event,
        "X-Gogs-Delivery": str(delivery), "X-Gogs-Event": event, "X-Gogs-Event-Type": event,
        "X-GitHub-Delivery": str(delivery), "X-GitHub-Event": event, "X-GitHub-Event-Type": event,
    }
    headers.update(signatures(secret, body))
    return headers


def _wants(hook: ForgeWebhook, event: str, branch: str | None) -> bool:
    if not hook.active or event not in hook.event_list:
        return False
    if branch is not None and hook.branch_filter not in ("", "*"):
        # Gitea matches the filter as a glob (gobwas/glob) against the branch name; fnmatch is close.
        return any(fnmatchcase(branch, pattern.strip()) for pattern in hook.branch_filter.strip("{}").split(","))
    return True


async def enqueue_delivery(db: AsyncSession, hook: ForgeWebhook, event: str, payload: msgspec.Struct | bytes) -> \
        ForgeWebhookDelivery:
    """Write the delivery (headers and body exactly as they will be sent) and its job."""
    body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    if hook.content_type == "form":
        from urllib.parse import urlencode

        body = urlencode({"payload": body.decode()}).encode()
    delivery_id = uuid.uuid4()
    headers = _headers(event, delivery_id, hook.secret, body)
    row = ForgeWebhookDelivery(hook_id=hook.id, url=hook.url, content_type=hook.content_type, delivery=delivery_id,
                               event=event, request_headers=json.dumps(headers), request_body=body.decode())
    db.add(row)
    await db.flush()
    await deliver.enqueue(db, DeliverPayload(str(row.id)), max_attempts=MAX_ATTEMPTS)
    return row


async def emit(db: AsyncSession, repo_id: uuid.UUID, event: str, payload: msgspec.Struct, *,
               branch: str | None = None) -> int:
    """Queue ``payload`` to every active hook of the repository that takes ``event``."""
    body = msgspec.json.encode(payload)
    count = 0
    for hook in await hooks_of(db, repo_id):
        if _wants(hook, event, branch):
            await enqueue_delivery(db, hook, event, body)
            count += 1
    return count


async def redeliver(db: AsyncSession, hook: ForgeWebhook, old: ForgeWebhookDelivery) -> ForgeWebhookDelivery:
    """Send an earlier delivery's body again, as a new delivery with a new id (as Gitea's "Redeliver")."""
    body = old.request_body.encode()
    if hook.content_type == "form":  # already encoded as form; send it unchanged
        delivery_id = uuid.uuid4()
        row = ForgeWebhookDelivery(hook_id=hook.id, url=hook.url, content_type=hook.content_type,
                                   delivery=delivery_id, event=old.event,
                                   request_headers=json.dumps(_headers(old.event, delivery_id, hook.secret, body)),
                                   request_body=old.request_body)
        db.add(row)
        await db.flush()
        await deliver.enqueue(db, DeliverPayload(str(row.id)), max_attempts=MAX_ATTEMPTS)
        return row
    return await enqueue_delivery(db, hook, old.event, body)


# -- payload builders --------------------------------------------------------------------------------
_LOG_FORMAT = "%x1e%H%x00%an%x00%ae%x00%cn%x00%ce%x00%cI%x00%B%x1f"


async def payload_commits(store: RepoStore, repo_id: uuid.UUID, web_base: str, old: str, new: str, ref: str,
                          limit: int = MAX_PAYLOAD_COMMITS) -> tuple[list[PayloadCommit], int]:
    """The commits a ref change brought in, newest first, with their changed paths; and how many there are.

    A creation counts what no other ref already had (``--exclude=<ref> --all``), as Gitea's
    ``PushCommits`` does for a new branch. HEAD is excluded too: ``--all`` adds it beside refs/, and
    on the first push of the default branch it names the very commits being counted.
    """
    if new == ZERO_OID:
        return [], 0
    spec = [new, f"^{old}"] if old != ZERO_OID else [new, "--not", f"--exclude={ref}", "--exclude=HEAD", "--all"]
    code, out, _err = await store.git(repo_id, "rev-list", "--count", *spec, check=False, deadline=30)
    total = int(out.strip() or 0) if code == 0 else 0
    code, out, _err = await store.git(repo_id, "log", f"--max-count={limit}", "--no-renames", "--name-status",
                                      f"--format={_LOG_FORMAT}", *spec, "--", check=False, deadline=30)
    if code != 0:
        return [], total
    commits: list[PayloadCommit] = []
    for record in out.decode(errors="replace").split("\x1e"):
        if not record.strip():
            continue
        head, _sep, files = record.partition("\x1f")
        parts = head.split("\x00", 6)
        if len(parts) != 7:
            continue
        oid, an, ae, cn, ce, cd, body = parts
        added: list[str] = []
        removed: list[str] = []
        modified: list[str] = []
        for line in files.splitlines():
            status, _tab, path = line.partition("\t")
            if not path:
                continue
            {"A": added, "D": removed}.get(status[:1], modified).append(path)
        commits.append(PayloadCommit(
            id=oid, message=body.rstrip("\n") + "\n", url=f"{web_base}/commit/{oid}",
            author=PayloadUser(name=an, email=ae, username=""), committer=PayloadUser(name=cn, email=ce, username=""),
            verification=None, timestamp=ts(datetime.fromisoformat(cd)), added=added, removed=removed,
            modified=modified,
        ))
    return commits, total


def payload_commit_of(c: Any, web_base: str) -> PayloadCommit:
    """A :class:`forge.contents.CommitObject` as a payload commit (no file lists)."""
    return PayloadCommit(
        id=c.sha, message=c.message + "\n", url=f"{web_base}/commit/{c.sha}",
        author=PayloadUser(name=c.author_name, email=c.author_email, username=""),
        committer=PayloadUser(name=c.committer_name, email=c.committer_email, username=""),
        verification=None, timestamp=ts(c.committed), added=[], removed=[], modified=[])


def _short(ref: str) -> tuple[str, str]:
    if ref.startswith("refs/tags/"):
        return ref.removeprefix("refs/tags/"), "tag"
    return ref.removeprefix("refs/heads/"), "branch"


@on_push
async def push_webhooks(ctx: JobContext, event: PushEvent) -> None:
    """Turn one accepted push into ``push``/``create``/``delete`` deliveries (Gitea's notifier:
    a new ref sends ``create`` and ``push``, a moved one ``push``, a deleted one ``delete``)."""
    settings: Settings = ctx.settings
    store = runtime_for(settings).store
    async with ctx.sessionmaker() as session, session.begin():
        repo = await session.get(ForgeRepo, uuid.UUID(event.repo_id))
        if repo is None:
            return
        hooks = [h for h in await hooks_of(session, repo.id) if h.active]
        if not hooks:
            return
        service = RepoService(session, store)
        repository = await repo_json(service, settings, repo, "admin")
        actor = await session.get(User, uuid.UUID(event.actor_id)) if event.actor_id else None
        sender = await user_json(session, settings.base_url, actor) if actor is not None else None
        web = repository.html_url
        for change in event.changes:
            name, ref_type = _short(change.ref)
            branch = name if ref_type == "branch" else None
            if change.old == ZERO_OID:
                await emit(session, repo.id, "create", CreatePayload(
                    sha=change.new, ref=name, ref_type=ref_type, repository=repository, sender=sender), branch=branch)
            if change.new == ZERO_OID:
                await emit(session, repo.id, "delete", DeletePayload(
                    ref=name, ref_type=ref_type, pusher_type="user", repository=repository, sender=sender),
                    branch=branch)
                continue
            commits, total = await payload_commits(store, repo.id, web, change.old, change.new, change.ref)
            compare = f"{web}/compare/{change.old}...{change.new}" if change.old != ZERO_OID and total else ""
            await emit(session, repo.id, "push", PushPayload(
                ref=change.ref, before=change.old, after=change.new, compare_url=compare, commits=commits,
                total_commits=total, head_commit=commits[0] if commits else None, repository=repository,
                pusher=sender, sender=sender), branch=branch)


# -- delivery ----------------------------------------------------------------------------------------
@job_handler(DELIVER_JOB, payload_type=DeliverPayload, max_attempts=MAX_ATTEMPTS)
async def deliver(ctx: JobContext, payload: DeliverPayload) -> None:
    settings: Settings = ctx.settings
    async with ctx.sessionmaker() as session:
        row = await session.get(ForgeWebhookDelivery, uuid.UUID(payload.delivery_id))
        if row is None or row.finished:
            return
        if row.hook_id is None and row.event != "repository":
            return  # the hook was deleted; only a repository's own deletion is still announced
        url, headers, body = row.url, json.loads(row.request_headers), row.request_body.encode()
        content_type = "application/json" if row.content_type == "json" else "application/x-www-form-urlencoded"
    status: int | None = None
    excerpt, error, permanent = "", "", False
    started = time.monotonic()
    client = SafeClient(allow_private=settings.federation_allow_private_addresses,
                        user_agent=headers.get("User-Agent", "Rose-Ash-Hookshot"))
    try:
        response, received = await client.post_read(url, body, content_type=content_type, headers=headers)
        status = response.status_code
        excerpt = received[:RESPONSE_EXCERPT].decode(errors="replace")
        if not 200 <= status < 300:
            error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    except BlockedAddressError as exc:
        error, permanent = f"Refused: {exc}", True
    except TimeoutError:
        error = "Timed out"
    except Exception as exc:  # every other network failure is one failed attempt
        error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        await client.aclose()
    duration = int((time.monotonic() - started) * 1000)
    ok = not error
    finished = ok or permanent or ctx.is_last_attempt
    async with ctx.sessionmaker() as session, session.begin():
        row = await session.get(ForgeWebhookDelivery, uuid.UUID(payload.delivery_id))
        if row is not None:
            row.attempts += 1
            row.response_status = status
            row.response_body = excerpt
            row.error = error
            row.duration_ms = duration
            row.delivered_at = datetime.now(UTC)
            row.succeeded = ok
            row.finished = finished
    if ok:
        return
    log.info("webhook delivery %s to %s failed (attempt %d): %s", payload.delivery_id, url, ctx.attempt, error)
    if permanent:
        raise PermanentFailure(error)
    # Any other failure: the queue retries with exponential backoff (app.jobs.backoff_delay).
    raise RuntimeError(error)


def describe(row: ForgeWebhookDelivery) -> dict[str, Any]:
    """A delivery for the settings page."""
    return {
        "row": row, "headers": json.loads(row.request_headers or "{}"),
        "state": "ok" if row.succeeded else ("failed" if row.finished else ("retrying" if row.attempts else "queued")),
    }
