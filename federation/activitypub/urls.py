"""The URL scheme of local ActivityPub ids, and the checks every URL read from a peer goes through.

Ids are stable:

- user ``alice``: ``{base}/@alice`` (Person; the profile page negotiates HTML or AS2), with
  ``/inbox``, ``/outbox``, ``/followers``, ``/following``, ``/liked`` under it;
- domain actors ``blog``, ``market``, ``events`` (Service), ``forge`` and the instance actor
  ``instance`` (Application): ``{base}/ap/actors/<name>`` with the same sub-paths;
- shared inbox ``{base}/inbox``; objects ``{base}/ap/objects/<uuid>``; activities
  ``{base}/ap/activities/<uuid>``; key ids ``<actor>#main-key``;
- public forge repositories (ForgeFed, :mod:`federation.activitypub.forgefed`): the ``Repository``
  ``{base}/ap/repos/<repo uuid>`` and its companion ``Service`` ``{base}/ap/repos/<repo uuid>/service``,
  addressed by id so a rename keeps them; their key ids are ``<actor>/main-key``, a key document of
  its own (Fedify, for one, cannot read a ``Repository`` to find a key embedded in it).

Every id is built from the origin the instance serves now (``BASE_URL``), key ids included: a
local actor's key id is derived from its URI (:func:`main_key_id`), never read back from where
the key was stored, so serving on a new origin moves the key ids with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit
from uuid import UUID

# Service actor name -> ActivityPub type: the installed domains' declared actors (app/kit.py
# ``Domain.actor``; blog, market, events, forge and the instance itself), filled in place when an
# app is built, so every module that imported the dict sees them.
DOMAIN_ACTORS: dict[str, str] = {}


def use_service_actors(actors: Mapping[str, str]) -> None:
    DOMAIN_ACTORS.clear()
    DOMAIN_ACTORS.update(actors)


MAX_URL = 2048  # the URI columns' width

LocalKind = Literal["user", "service"]


def host_of(uri: str) -> str:
    """``host`` or ``host:port`` of a URL (IPv6 literals bracketed); never raises.

    URLs come from remote documents and inbox bodies, so an unparseable one (a port out of range,
    a broken IPv6 literal) gets its raw authority instead: still the same string each time for the
    same origin, still covered by a block of its domain, and never equal to a valid host.
    """
    try:
        parts = urlsplit(uri)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        netloc = uri.partition("://")[2].split("/", 1)[0].rpartition("@")[2]
        return netloc.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


_NEVER_IN_URL = frozenset('"<>\\`')


def http_url(url: str) -> str:
    """``url`` if it is a well-formed http(s) URL with a host, else "" (ids and links read from
    remote documents: a port out of range or a broken IPv6 literal is no URL at all)."""
    if not url.startswith(("https://", "http://")) or len(url) > MAX_URL:
        return ""
    try:
        parts = urlsplit(url)
        _port = parts.port
    except ValueError:
        return ""
    # RFC 3986 section 2: quotes, angle brackets, backslash and backtick never appear unencoded in
    # a URL; they only ever arrive to break out of an HTML attribute the URL is put in.
    if not parts.hostname or any(c.isspace() or ord(c) < 32 or c in _NEVER_IN_URL for c in url):
        return ""
    return url


# A local repository's actors: the Repository and its companion Service.
REPO_ACTOR = re.compile(r"/ap/repos/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(/service)?$")


def main_key_id(actor_uri: str) -> str:
    """The id of the key a local actor publishes and signs with (derived, never stored)."""
    if REPO_ACTOR.search(actor_uri):
        return f"{actor_uri}/main-key"
    return f"{actor_uri}#main-key"


@dataclass(frozen=True)
class Urls:
    base: str

    @property
    def host(self) -> str:
        return host_of(self.base)

    def user(self, username: str) -> str:
        return f"{self.base}/@{username}"

    def service(self, name: str) -> str:
        return f"{self.base}/ap/actors/{name}"

    @property
    def instance(self) -> str:
        return self.service("instance")

    @property
    def shared_inbox(self) -> str:
        return f"{self.base}/inbox"

    def object(self, oid: UUID | str) -> str:
        return f"{self.base}/ap/objects/{oid}"

    def tag(self, name: str) -> str:
        """A hashtag's page (the hub's ``/social/tags/<tag>``), what a note's tag links name."""
        return f"{self.base}/social/tags/{quote(name)}"

    def activity(self, aid: UUID | str) -> str:
        return f"{self.base}/ap/activities/{aid}"

    def repo(self, repo_id: UUID | str) -> str:
        return f"{self.base}/ap/repos/{repo_id}"

    def repo_service(self, repo_id: UUID | str) -> str:
        return f"{self.repo(repo_id)}/service"

    def local_repo(self, uri: str) -> tuple[str, bool] | None:
        """``(repo id, is the companion Service)`` for a local repository actor URI (key ids too)."""
        if not self.is_local(uri):
            return None
        path = uri[len(self.base):].split("#")[0].removesuffix("/main-key")
        found = REPO_ACTOR.fullmatch(path)
        return (found.group(1), bool(found.group(2))) if found else None

    def is_local(self, uri: str) -> bool:
        return uri == self.base or uri.startswith(self.base + "/")

    def path(self, uri: str) -> str:
        """A local URI without the origin (``/@alice#main-key``), as keys are stored; any other URI
        unchanged."""
        return uri[len(self.base):] if uri.startswith(self.base + "/") else uri

    def local_actor(self, uri: str) -> tuple[LocalKind, str] | None:
        """``("user", username)`` or ``("service", name)`` for a local actor URI."""
        if not self.is_local(uri):
            return None
        path = uri[len(self.base):].split("#")[0]
        if path.startswith("/@") and "/" not in path[2:] and len(path) > 2:
            return "user", path[2:]
        prefix = "/ap/actors/"
        if path.startswith(prefix) and path[len(prefix):] in DOMAIN_ACTORS:
            return "service", path[len(prefix):]
        return None
