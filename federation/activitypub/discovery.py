"""WebFinger (RFC 7033), host-meta (XRD and JSON) and NodeInfo 2.1/2.0."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

import msgspec
from litestar import Response, Router, get
from litestar.exceptions import HTTPException, NotFoundException
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.settings import Settings
from domains.account.models import User
from federation.activitypub.core import Federation
from federation.activitypub.models import APObject
from federation.activitypub.urls import DOMAIN_ACTORS, Urls

OPT = {"exclude_from_csrf": True, "skip_session": True, "exclude_from_auth": True, **access.public()}
CORS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"}
NODEINFO_21 = "http://nodeinfo.diaspora.software/ns/schema/2.1"
NODEINFO_20 = "http://nodeinfo.diaspora.software/ns/schema/2.0"
INSTANCE_REL = "https://www.w3.org/ns/activitystreams#Application"


def _json(data: dict[str, Any], media_type: str = "application/json") -> Response[bytes]:
    return Response(msgspec.json.encode(data), media_type=media_type, headers=CORS)


@get("/.well-known/webfinger", cache_control=None, opt=OPT)
async def webfinger(db_session: AsyncSession, settings: Settings, resource: str = "") -> Response[bytes]:
    resource = unquote(resource).strip()
    if not resource:
        raise HTTPException(status_code=400, detail="resource is required")
    if len(resource) > 2048 or any(ord(c) < 32 or c == "\x7f" for c in resource):
        raise HTTPException(status_code=400, detail="resource must be an acct: URI or a URL (RFC 7033 §4.1)")
    urls = Urls(settings.base_url)
    repo = await _repository_jrd(db_session, settings, resource)
    if repo is not None:
        return repo
    name: str | None = None
    if resource.startswith("acct:"):
        user, sep, host = resource[5:].lstrip("@").partition("@")
        if not sep or host.lower() != urls.host:
            raise NotFoundException("not a local account")
        name = user
    elif urls.is_local(resource):
        found = urls.local_actor(resource)
        if found is None:
            raise NotFoundException()
        name = found[1]
    else:
        raise NotFoundException("not a local resource")
    async with Federation(db_session, settings) as fed:
        if name in DOMAIN_ACTORS:
            actor = await fed.local_service_actor(name)
            profile = settings.base_url + "/"
        else:
            member = await fed.user_by_name(name)
            if member is None:
                raise NotFoundException("no such account")
            actor = await fed.local_actor_for_user(member)
            profile = actor.uri
    return _json({
        "subject": f"acct:{actor.username}@{urls.host}",
        "aliases": [actor.uri],
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": actor.uri},
            {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": profile},
        ],
    }, "application/jrd+json")


async def _repository_jrd(db_session: AsyncSession, settings: Settings, resource: str) -> Response[bytes] | None:
    """A public repository's actors (design/forgefed.md §6), or None when ``resource`` names none:

    - ``acct:@repo@owner@host`` (Forgejo's form, ``modules/webfinger.ParseWebfingerRepo``; also
      without the leading ``@``) → the ``Repository`` actor;
    - ``acct:owner.repo@host`` → the companion ``Service`` (usernames have no dot), which Mastodon
      can follow;
    - the actors' own URLs and the repository's web page ``/forge/owner/repo``.

    A private repository answers 404, exactly like an absent one.
    """
    from federation.activitypub.forgefed import public_repo, public_repo_by_name, service_username, web_url

    urls = Urls(settings.base_url)
    repo, service = None, False
    if resource.startswith("acct:"):
        local, _sep, host = resource[5:].lstrip("@").rpartition("@")
        if host.lower() != urls.host or not local:
            return None
        if "@" in local:
            name, _sep, owner = local.partition("@")
            repo = await public_repo_by_name(db_session, owner, name)
        elif "." in local:
            owner, _sep, name = local.partition(".")
            repo, service = await public_repo_by_name(db_session, owner, name), True
        else:
            return None
    elif urls.local_repo(resource) is not None and not resource.endswith("/main-key"):
        repo_id, service = urls.local_repo(resource) or ("", False)
        repo = await public_repo(db_session, repo_id)
    elif urls.is_local(resource) and resource[len(urls.base):].startswith("/forge/"):
        parts = resource[len(urls.base):].split("/")
        if len(parts) != 4:
            return None
        repo = await public_repo_by_name(db_session, parts[2], parts[3].removesuffix(".git"))
    else:
        return None
    if repo is None:
        raise NotFoundException("no such repository")
    async with Federation(db_session, settings) as fed:
        actor = await fed.local_actor(urls.repo_service(repo.id) if service else urls.repo(repo.id))
        if actor is None:
            raise NotFoundException("no such repository")
        page = web_url(fed, repo)
    subject = f"acct:{service_username(repo)}@{urls.host}" if service else \
        f"acct:@{repo.name}@{repo.owner}@{urls.host}"
    return _json({
        "subject": subject,
        "aliases": [actor.uri, page],
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": actor.uri},
            {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": page},
        ],
    }, "application/jrd+json")


@get("/.well-known/host-meta", cache_control=None, opt=OPT)
async def host_meta(settings: Settings) -> Response[str]:
    template = escape(f"{settings.base_url}/.well-known/webfinger?resource={{uri}}", {'"': "&quot;"})
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n'
            f'  <Link rel="lrdd" template="{template}"/>\n</XRD>\n')
    return Response(body, media_type="application/xrd+xml", headers=CORS)


@get("/.well-known/host-meta.json", cache_control=None, opt=OPT)
async def host_meta_json(settings: Settings) -> Response[bytes]:
    template = f"{settings.base_url}/.well-known/webfinger?resource={{uri}}"
    return _json({"links": [{"rel": "lrdd", "template": template}]})


@get("/.well-known/nodeinfo", cache_control=None, opt=OPT)
async def nodeinfo_index(settings: Settings) -> Response[bytes]:
    urls = Urls(settings.base_url)
    return _json({"links": [
        {"rel": NODEINFO_21, "href": f"{settings.base_url}/nodeinfo/2.1"},
        {"rel": NODEINFO_20, "href": f"{settings.base_url}/nodeinfo/2.0"},
        {"rel": INSTANCE_REL, "href": urls.instance},
    ]})


async def _nodeinfo(db_session: AsyncSession, settings: Settings, version: str) -> Response[bytes]:
    users = await db_session.scalar(select(func.count()).select_from(User).where(User.is_active)) or 0
    posts = await db_session.scalar(select(func.count()).select_from(APObject).where(
        APObject.local, APObject.deleted.is_(False))) or 0
    software: dict[str, Any] = {"name": "rose-ash", "version": "0.1.0"}
    if version == "2.1":
        software["homepage"] = settings.base_url + "/"
    schema = NODEINFO_21 if version == "2.1" else NODEINFO_20
    return _json({
        "version": version,
        "software": software,
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": ["atom1.0", "rss2.0"]},
        "openRegistrations": settings.signup_open,
        "usage": {"users": {"total": users, "activeMonth": users, "activeHalfyear": users}, "localPosts": posts},
        "metadata": {"nodeName": "Rose Ash", "instanceActor": Urls(settings.base_url).instance},
    }, f'application/json; profile="{schema}#"')


@get("/nodeinfo/2.1", cache_control=None, opt=OPT)
async def nodeinfo_21(db_session: AsyncSession, settings: Settings) -> Response[bytes]:
    return await _nodeinfo(db_session, settings, "2.1")


@get("/nodeinfo/2.0", cache_control=None, opt=OPT)
async def nodeinfo_20(db_session: AsyncSession, settings: Settings) -> Response[bytes]:
    return await _nodeinfo(db_session, settings, "2.0")


router = Router(path="/", route_handlers=[webfinger, host_meta, host_meta_json, nodeinfo_index, nodeinfo_21,
                                          nodeinfo_20])
