"""ForgeFed: public repositories as ``Repository`` actors, pushes as ``Push`` activities, stars as
``Like`` (design/forgefed.md).

- Every **public** repository is a ``Repository`` actor at ``/ap/repos/<repo id>`` (inbox, outbox,
  followers, likes, forks, ``cloneUri``, a key from the keypair registry published at
  ``<actor>/main-key``), and has a companion ``Service`` actor at ``<actor>/service``
  (``acct:owner.repo@host``), because Mastodon follows only Person/Service/Group/... actors.
  A private or absent repository has no actor, key, collection, branch or commit here: 404, as
  if it never existed (its rows stay, unused, until it is public again).
- Each accepted push or API ref change on a branch sends a ``Push`` from the repository to its
  followers (newest-first ``Commit``s, ``hashBefore``/``hashAfter``, ``target`` = the ``Branch``),
  a ``Create{Note}`` ("pushed 3 commits to owner/repo:main" with a link) from the pusher to their
  followers, and an ``Announce`` of that Note from the companion Service to its followers.
  Deleted refs and tags send nothing.
- The inboxes take ``Follow``/``Undo{Follow}`` (auto-accepted) and ``Like``/``Undo{Like}`` as
  stars (``ap_like`` rows; Forgejo's ``startTime`` is tolerated, routes.py gives its id-less
  activities an id).

Forge and federation are siblings that must not import each other: the forge side is reached
through :class:`ForgeDirectory`, which the composition root installs (app/forgefed.py) together
with the push subscription.
"""

from __future__ import annotations

import html
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.caching import ANONYMOUS_OPT
from app.jobs import JobContext
from app.settings import Settings
from federation.activitypub.as2 import iso, wants_as2
from federation.activitypub.contexts import AS2, PUBLIC, SECURITY_V1
from federation.activitypub.core import PAGE_SIZE, Federation
from federation.activitypub.models import Activity, Actor, APObject, Follow, Like
from federation.activitypub.urls import Urls, main_key_id

log = logging.getLogger("rose_ash.federation.forgefed")

FORGEFED_NS = "https://forgefed.org/ns"
ZERO_OID = "0" * 40
MAX_PUSH_COMMITS = 20  # Commits embedded in a Push; totalItems has the real count
MAX_NOTE_COMMITS = 5  # commit lines in the pusher's Note
FEDERATED_SOURCES = frozenset({"push", "api"})  # not mirror syncs, not the reconciler


# --- the forge, as federation sees it ---------------------------------------------------------


class RepoInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A public repository (a private one is never handed out)."""

    id: str
    owner: str
    name: str
    description: str = ""
    default_branch: str = "main"
    created: datetime | None = None


class CommitInfo(msgspec.Struct, frozen=True, kw_only=True):
    hash: str
    author_name: str
    author_email: str
    authored: datetime
    committer_name: str
    committer_email: str
    committed: datetime
    message: str


class RefChange(msgspec.Struct, frozen=True):
    ref: str
    old: str
    new: str


class RepoPush(msgspec.Struct, frozen=True, kw_only=True):
    """What federation needs of the forge's push event."""

    repo_id: str
    actor_id: str | None
    source: str
    changes: list[RefChange]


class ForgeDirectory(Protocol):
    """Read-only access to public repositories (the composition root implements it over forge)."""

    async def public_repo(self, session: AsyncSession, repo_id: str) -> RepoInfo | None: ...

    async def public_repo_by_name(self, session: AsyncSession, owner: str, name: str) -> RepoInfo | None: ...

    async def has_branch(self, session: AsyncSession, repo_id: str, branch: str) -> bool: ...

    async def commits(self, settings: Settings, repo_id: str, old: str, new: str, ref: str,
                      limit: int) -> tuple[list[CommitInfo], int]:
        """The commits ``old..new`` brought to ``ref``, newest first (at most ``limit``), and their count."""
        ...

    async def commit(self, settings: Settings, repo_id: str, sha: str) -> CommitInfo | None: ...


_DIRECTORY: list[ForgeDirectory] = []


def use_forge(directory: ForgeDirectory | None) -> None:
    _DIRECTORY.clear()
    if directory is not None:
        _DIRECTORY.append(directory)


def forge_directory() -> ForgeDirectory | None:
    return _DIRECTORY[0] if _DIRECTORY else None


def _valid_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def public_repo(session: AsyncSession, repo_id: str) -> RepoInfo | None:
    directory = forge_directory()
    if directory is None or not _valid_uuid(repo_id):
        return None
    return await directory.public_repo(session, repo_id)


async def public_repo_by_name(session: AsyncSession, owner: str, name: str) -> RepoInfo | None:
    directory = forge_directory()
    if directory is None or not owner or not name or len(owner) > 40 or len(name) > 100:
        return None
    return await directory.public_repo_by_name(session, owner, name)


# --- documents --------------------------------------------------------------------------------


def forgefed_context() -> list[Any]:
    return [AS2, SECURITY_V1, FORGEFED_NS]


def web_url(fed: Federation, repo: RepoInfo) -> str:
    return f"{fed.urls.base}/forge/{quote(repo.owner)}/{quote(repo.name)}"


def service_username(repo: RepoInfo) -> str:
    """The companion Service's ``preferredUsername``: usernames have no dot, so ``owner.repo`` is unambiguous."""
    return f"{repo.owner}.{repo.name}"


def branch_id(repo_uri: str, branch: str) -> str:
    return f"{repo_uri}/branches/{quote(branch, safe='/')}"


def commit_id(repo_uri: str, sha: str) -> str:
    return f"{repo_uri}/commits/{sha}"


def _public_key(actor_uri: str, pem: str) -> dict[str, str]:
    return {"id": main_key_id(actor_uri), "owner": actor_uri, "publicKeyPem": pem}


async def local_repo_actor(fed: Federation, repo_id: str, service: bool) -> Actor | None:
    """The actor row of a public repository (or its companion Service), made with its key on first use."""
    repo = await public_repo(fed.session, repo_id)
    if repo is None:
        return None
    uri = fed.urls.repo_service(repo_id) if service else fed.urls.repo(repo_id)
    await fed.keys.ensure("repository", repo_id, "rsa-2048", fed.urls.path(main_key_id(fed.urls.repo(repo_id))))
    kind, username = ("Service", service_username(repo)) if service else ("Repository", "")
    actor = await fed._upsert_local(uri, kind, username, f"{repo.owner}/{repo.name}")
    if actor.url != web_url(fed, repo) or actor.username != username:
        actor.url, actor.username = web_url(fed, repo), username
        await fed.session.flush()
    return actor


async def repository_document(fed: Federation, repo: RepoInfo, actor: Actor) -> dict[str, Any]:
    kp = await fed.local_key(actor)
    uri = actor.uri
    doc: dict[str, Any] = {
        "@context": forgefed_context(),
        "id": uri,
        "type": "Repository",
        "name": f"{repo.owner}/{repo.name}",
        "summary": html.escape(repo.description),
        "url": web_url(fed, repo),
        "inbox": f"{uri}/inbox",
        "outbox": f"{uri}/outbox",
        "followers": f"{uri}/followers",
        "likes": f"{uri}/likes",
        "forks": f"{uri}/forks",
        "endpoints": {"sharedInbox": fed.urls.shared_inbox},
        "cloneUri": f"{web_url(fed, repo)}.git",
        "publicKey": _public_key(uri, kp.public_pem if kp else ""),
    }
    if repo.created is not None:
        doc["published"] = iso(repo.created)
    return doc


async def service_document(fed: Federation, repo: RepoInfo, actor: Actor) -> dict[str, Any]:
    doc = await fed.actor_document(actor)
    doc["summary"] = (f"<p>Pushes to {html.escape(repo.owner)}/{html.escape(repo.name)}. "
                      f"ForgeFed Repository: {html.escape(fed.urls.repo(repo.id))}</p>")
    doc["publicKey"] = _public_key(actor.uri, doc["publicKey"]["publicKeyPem"])
    doc["discoverable"] = True
    doc.pop("liked", None)
    return doc


def commit_document(repo_uri: str, c: CommitInfo) -> dict[str, Any]:
    summary, _sep, body = c.message.partition("\n")
    return {
        "id": commit_id(repo_uri, c.hash),
        "type": "Commit",
        "context": repo_uri,
        "attributedTo": f"mailto:{c.author_email}",
        "created": iso(c.authored),
        "committedBy": f"mailto:{c.committer_email}",
        "committed": iso(c.committed),
        "hash": c.hash,
        "summary": html.escape(summary),
        "description": {"mediaType": "text/plain", "content": body.strip("\n")},
    }


def branch_document(repo_uri: str, branch: str) -> dict[str, Any]:
    return {"id": branch_id(repo_uri, branch), "type": "Branch", "context": repo_uri, "name": branch,
            "ref": f"refs/heads/{branch}"}


# --- stars ------------------------------------------------------------------------------------


async def star(fed: Federation, object_uri: str, actor_uri: str, activity_id: str) -> None:
    """A remote ``Like`` of a repository: one star per (actor, repository)."""
    found = fed.urls.local_repo(object_uri)
    if found is None or found[1]:
        return  # the companion Service is no repository to star
    repo_actor = await fed.local_actor(fed.urls.repo(found[0]))
    if repo_actor is None:
        return  # private or gone: as if it did not exist
    exists = await fed.session.scalar(select(Like).where(Like.actor == actor_uri, Like.object_id == repo_actor.uri))
    if exists is None:
        fed.session.add(Like(actor=actor_uri, object_id=repo_actor.uri, activity_id=activity_id))
        await fed.session.flush()


# --- pushes -----------------------------------------------------------------------------------


def _plural(n: int) -> str:
    return f"{n} commit" if n == 1 else f"{n} commits"


def _note_html(fed: Federation, repo: RepoInfo, branch: str, commits: Sequence[CommitInfo], total: int,
               link: str) -> str:
    web = web_url(fed, repo)
    where = f"{html.escape(repo.owner)}/{html.escape(repo.name)}:{html.escape(branch)}"
    lines = [f'pushed <a href="{html.escape(link)}">{_plural(total)}</a> to <a href="{html.escape(web)}">{where}</a>']
    for c in commits[:MAX_NOTE_COMMITS]:
        summary = c.message.partition("\n")[0]
        lines.append(f'<a href="{html.escape(web)}/commit/{c.hash}">{c.hash[:10]}</a> {html.escape(summary[:200])}')
    if total > MAX_NOTE_COMMITS:
        lines.append(f"… and {total - MAX_NOTE_COMMITS} more")
    return "<p>" + "<br>".join(lines) + "</p>"


async def federate_push(ctx: JobContext, push: RepoPush) -> None:
    """Send the ``Push``, the pusher's ``Create{Note}`` and the Service's ``Announce`` for one push."""
    directory = forge_directory()
    if directory is None or push.source not in FEDERATED_SOURCES or not push.actor_id:
        return
    branches = [c for c in push.changes if c.ref.startswith("refs/heads/") and c.new != ZERO_OID]
    if not branches:
        return
    async with ctx.sessionmaker() as session:
        repo = await public_repo(session, push.repo_id)
    if repo is None:
        return  # private repositories never federate
    # git runs with no transaction open
    found = [(c, *await directory.commits(ctx.settings, repo.id, c.old, c.new, c.ref, MAX_PUSH_COMMITS))
             for c in branches]
    client = ctx.services.get("federation_client") if ctx.services else None
    async with ctx.sessionmaker() as session, session.begin():
        fed = Federation(session, ctx.settings, client)
        try:
            await _publish(fed, repo, push, found)
        finally:
            await fed.aclose()


async def _publish(fed: Federation, repo: RepoInfo, push: RepoPush,
                   found: Sequence[tuple[RefChange, list[CommitInfo], int]]) -> None:
    from domains.account.services import AccountService
    from federation.activitypub.outbox import Outbox

    repo_actor = await fed.local_actor(fed.urls.repo(repo.id))
    service = await fed.local_actor(fed.urls.repo_service(repo.id))
    user = await AccountService(fed.session).get_active(push.actor_id) if push.actor_id else None
    if repo_actor is None or service is None or user is None:
        return
    pusher = await fed.local_actor_for_user(user)
    outbox = Outbox(fed)
    web = web_url(fed, repo)
    for change, commits, total in found:
        if not total:
            continue
        branch = change.ref.removeprefix("refs/heads/")
        push_doc: dict[str, Any] = {
            "@context": forgefed_context(),
            "type": "Push",
            "attributedTo": pusher.uri,
            "context": repo_actor.uri,
            "target": branch_document(repo_actor.uri, branch),
            "hashAfter": change.new,
            "summary": f"<p>{html.escape(user.username)} pushed {_plural(total)} to "
                       f"{html.escape(repo.owner)}/{html.escape(repo.name)}:{html.escape(branch)}</p>",
            "to": [repo_actor.followers_url, pusher.followers_url],
            "cc": [PUBLIC],
            "object": {"type": "OrderedCollection", "totalItems": total,
                       "orderedItems": [commit_document(repo_actor.uri, c) for c in commits]},
            "published": iso(datetime.now(UTC)),
        }
        if change.old != ZERO_OID:
            push_doc["hashBefore"] = change.old
        activity = await outbox._record(repo_actor, push_doc)
        # Forge peers follow the repository; Mastodon would drop a Push, so it goes nowhere else.
        await outbox._send(repo_actor, activity, await outbox._followers(repo_actor))
        link = f"{web}/compare/{change.old}...{change.new}" if change.old != ZERO_OID else \
            f"{web}/commit/{change.new}"
        note = await _pusher_note(fed, pusher, _note_html(fed, repo, branch, commits, total, link), link)
        await outbox.send_create(pusher, note)
        await outbox.boost(service, note)
        log.info("federated push to %s/%s:%s (%d commits)", repo.owner, repo.name, branch, total)


async def _pusher_note(fed: Federation, pusher: Actor, content: str, link: str) -> APObject:
    oid = uuid.uuid4()
    to, cc = [PUBLIC], [pusher.followers_url]
    note = APObject(id=oid, ap_id=fed.urls.object(oid), type="Note", local=True, attributed_to=pusher.uri,
                    content=content, url=link, visibility="public", to=to, cc=cc, mentions=[],
                    published=datetime.now(UTC))
    fed.session.add(note)
    await fed.session.flush()
    return note


# --- HTTP -------------------------------------------------------------------------------------


async def _repo_and_actor(fed: Federation, rid: uuid.UUID, service: bool) -> tuple[RepoInfo, Actor]:
    repo = await public_repo(fed.session, str(rid))
    actor = await local_repo_actor(fed, str(rid), service) if repo is not None else None
    if repo is None or actor is None:
        raise NotFoundException()
    return repo, actor


def _key_document(actor_uri: str, pem: str) -> dict[str, Any]:
    return {"@context": [SECURITY_V1], "id": main_key_id(actor_uri), "type": "CryptographicKey", "owner": actor_uri,
            "publicKeyPem": pem}


async def _actor_response(rid: uuid.UUID, service: bool, request: Request[Any, Any, Any], db_session: AsyncSession,
                          settings: Settings) -> Response[Any]:
    from federation.activitypub.routes import _actor_vary, _limits, _require_signed_get, as2

    async with Federation(db_session, settings, limits=_limits(request)) as fed:
        repo, actor = await _repo_and_actor(fed, rid, service)
        if not wants_as2(request.headers.get("accept")):
            return Redirect(web_url(fed, repo).removeprefix(fed.urls.base))
        await _require_signed_get(request, fed, None, optional=True)
        doc = await (service_document if service else repository_document)(fed, repo, actor)
        return as2(doc, vary=_actor_vary(settings))


@get("/ap/repos/{rid:uuid}", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def repository_actor(rid: uuid.UUID, request: Request[Any, Any, Any], db_session: AsyncSession,
                           settings: Settings) -> Response[Any]:
    return await _actor_response(rid, False, request, db_session, settings)


@get("/ap/repos/{rid:uuid}/service", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def repository_service_actor(rid: uuid.UUID, request: Request[Any, Any, Any], db_session: AsyncSession,
                                   settings: Settings) -> Response[Any]:
    return await _actor_response(rid, True, request, db_session, settings)


REPO_COLLECTIONS = ("outbox", "followers", "likes", "forks", "main-key")
SERVICE_COLLECTIONS = ("outbox", "followers", "following", "main-key")


async def _collection(rid: uuid.UUID, service: bool, which: str, request: Request[Any, Any, Any],
                      db_session: AsyncSession, settings: Settings, page: int | None) -> Response[bytes]:
    from federation.activitypub.routes import _collection as collection_doc
    from federation.activitypub.routes import _limits, _page, _require_signed_get, as2

    if which not in (SERVICE_COLLECTIONS if service else REPO_COLLECTIONS):
        raise NotFoundException()
    page = _page(page)
    async with Federation(db_session, settings, limits=_limits(request)) as fed:
        _repo, actor = await _repo_and_actor(fed, rid, service)
        if which == "main-key":
            kp = await fed.local_key(actor)
            return as2(_key_document(actor.uri, kp.public_pem if kp else ""))
        await _require_signed_get(request, fed, None)
        cid = f"{actor.uri}/{which}"
        offset = ((page or 1) - 1) * PAGE_SIZE
        items: list[Any] = []
        cond: Any
        if which == "outbox":  # what the actor published: Pushes, or the Service's Announces
            cond = (Activity.actor_uri == actor.uri) & (Activity.direction == "out") & Activity.type.in_(
                ("Push", "Announce"))
            total = await db_session.scalar(select(func.count()).select_from(Activity).where(cond)) or 0
            if page is not None:
                items = [a.raw for a in (await db_session.scalars(select(Activity).where(cond).order_by(
                    Activity.created_at.desc()).offset(offset).limit(PAGE_SIZE))).all()]
        elif which == "followers":
            cond = (Follow.followee == actor.uri) & (Follow.state == "accepted")
            total = await db_session.scalar(select(func.count()).select_from(Follow).where(cond)) or 0
            if page is not None:
                items = list((await db_session.scalars(select(Follow.follower).where(cond).order_by(
                    Follow.created_at.desc()).offset(offset).limit(PAGE_SIZE))).all())
        elif which == "likes":
            cond = Like.object_id == actor.uri
            total = await db_session.scalar(select(func.count()).select_from(Like).where(cond)) or 0
            if page is not None:
                likes = (await db_session.scalars(select(Like).where(cond).order_by(
                    Like.created_at.desc()).offset(offset).limit(PAGE_SIZE))).all()
                items = [{"type": "Like", "actor": like.actor, "object": actor.uri} for like in likes]
        else:  # forks, following: none yet
            total = 0
        return as2(collection_doc(cid, total, page, items), vary="Accept, Signature")


@get("/ap/repos/{rid:uuid}/{which:str}", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def repository_collection(rid: uuid.UUID, which: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                                settings: Settings, page: int | None = None) -> Response[bytes]:
    return await _collection(rid, False, which, request, db_session, settings, page)


@get("/ap/repos/{rid:uuid}/service/{which:str}", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def service_collection(rid: uuid.UUID, which: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                             settings: Settings, page: int | None = None) -> Response[bytes]:
    return await _collection(rid, True, which, request, db_session, settings, page)


@get("/ap/repos/{rid:uuid}/branches/{branch:path}", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def branch_view(rid: uuid.UUID, branch: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                      settings: Settings) -> Response[bytes]:
    from federation.activitypub.routes import _limits, _require_signed_get, as2

    branch = branch.lstrip("/")
    async with Federation(db_session, settings, limits=_limits(request)) as fed:
        _repo, actor = await _repo_and_actor(fed, rid, False)
        directory = forge_directory()
        if directory is None or not branch or not await directory.has_branch(db_session, str(rid), branch):
            raise NotFoundException()
        await _require_signed_get(request, fed, None)
        return as2({"@context": forgefed_context(), **branch_document(actor.uri, branch)})


@get("/ap/repos/{rid:uuid}/commits/{sha:str}", cache_control=None, opt=dict(ANONYMOUS_OPT))
async def commit_view(rid: uuid.UUID, sha: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                      settings: Settings) -> Response[bytes]:
    from federation.activitypub.routes import _limits, _require_signed_get, as2

    if len(sha) not in (40, 64) or any(ch not in "0123456789abcdef" for ch in sha):
        raise NotFoundException()
    async with Federation(db_session, settings, limits=_limits(request)) as fed:
        _repo, actor = await _repo_and_actor(fed, rid, False)
        await _require_signed_get(request, fed, None)
        await db_session.commit()  # no transaction stays open while git runs
    directory = forge_directory()
    found = await directory.commit(settings, str(rid), sha) if directory is not None else None
    if found is None:
        raise NotFoundException()
    return as2({"@context": forgefed_context(), **commit_document(actor.uri, found)})


MAX_INBOX_BODY = 1_048_576
MACHINE = {"exclude_from_csrf": True, "skip_session": True, **access.machine()}  # HTTP signatures


async def _repo_inbox(rid: uuid.UUID, service: bool, request: Request[Any, Any, Any], db_session: AsyncSession,
                      settings: Settings) -> Response[bytes]:
    from federation.activitypub.routes import _inbox

    urls = Urls(settings.base_url)
    if await public_repo(db_session, str(rid)) is None:
        raise NotFoundException()
    return await _inbox(request, db_session, settings, urls.repo_service(rid) if service else urls.repo(rid))


@post("/ap/repos/{rid:uuid}/inbox", status_code=202, request_max_body_size=MAX_INBOX_BODY, opt=MACHINE)
async def repository_inbox(rid: uuid.UUID, request: Request[Any, Any, Any], db_session: AsyncSession,
                           settings: Settings) -> Response[bytes]:
    return await _repo_inbox(rid, False, request, db_session, settings)


@post("/ap/repos/{rid:uuid}/service/inbox", status_code=202, request_max_body_size=MAX_INBOX_BODY, opt=MACHINE)
async def service_inbox(rid: uuid.UUID, request: Request[Any, Any, Any], db_session: AsyncSession,
                        settings: Settings) -> Response[bytes]:
    return await _repo_inbox(rid, True, request, db_session, settings)


router = Router(path="/", opt=access.public(), route_handlers=[
    repository_actor, repository_service_actor, repository_collection, service_collection, branch_view,
    commit_view, repository_inbox, service_inbox,
])
