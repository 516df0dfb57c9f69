"""The federation facade: local actors and their documents, remote actors, fetching without
holding write locks, and key resolution. The URL scheme is :mod:`federation.activitypub.urls`;
AS2 value helpers are :mod:`federation.activitypub.as2` (both re-exported here for callers)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import quote, urlsplit
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import lost_snapshot, wrote_in_transaction
from app.limits import KEY_REFETCH, PROCESS_LIMITER, Limiter
from app.safe_http import AS2_ACCEPT, BlockedAddressError, FetchError, SafeClient
from app.settings import Settings
from domains.account.models import User
from federation.activitypub.as2 import (
    as_list,
    id_of,
    ids_of,
    image_url,
    iso,
    page_url,
    parse_time,
    public_addressing,
    wants_as2,
)
from federation.activitypub.contexts import emitted_context
from federation.activitypub.models import Actor
from federation.activitypub.sanitize import plain_text, sanitize_html
from federation.activitypub.signatures import ResolvedKey, SignatureAuth, SigningKey
from federation.activitypub.urls import (
    DOMAIN_ACTORS,
    MAX_URL,
    LocalKind,
    Urls,
    host_of,
    http_url,
    main_key_id,
    use_service_actors,
)
from federation.keys import KeyPair, KeyRegistry

__all__ = [
    "DOMAIN_ACTORS",
    "MAX_URL",
    "PAGE_SIZE",
    "Federation",
    "LocalKind",
    "NeedsFetch",
    "Urls",
    "as_list",
    "host_of",
    "http_url",
    "id_of",
    "ids_of",
    "iso",
    "page_url",
    "parse_time",
    "public_addressing",
    "use_service_actors",
    "wants_as2",
]

log = logging.getLogger("rose_ash.federation")

# Repository: ForgeFed repositories (a peer's, or another Rose Ash's) can be followed too.
ACTOR_TYPES = frozenset({"Person", "Service", "Application", "Group", "Organization", "Repository"})
REMOTE_ACTOR_TTL = timedelta(hours=24)
KEY_REFRESH_INTERVAL = timedelta(seconds=60)
PAGE_SIZE = 20

# Re-runs of one unit of work that may each discover another document to fetch (actor, object,
# its author, a mention...); a real activity needs three or four.
MAX_FETCH_ROUNDS = 8

T = TypeVar("T")
KeyOwner = Literal["user", "actor", "instance"]
ACTOR_KEY_OWNERS: frozenset[str] = frozenset(get_args(KeyOwner))


class NeedsFetch(Exception):
    """A remote document is needed while the transaction holds write locks.

    :meth:`Federation.settle` catches it, rolls the transaction back, fetches the document with
    no lock held and runs the work again; anywhere else it is a programming error.
    """

    def __init__(self, uri: str) -> None:
        super().__init__(f"{uri} must be fetched before the transaction writes")
        self.uri = uri


# Decrypted private keys by key row (a rotated key is a new row, so entries never go stale).
_SIGNING_KEYS: dict[UUID, SigningKey] = {}


class Federation:
    """Per-request (or per-job) facade over the session, settings and the outbound client."""

    def __init__(self, session: AsyncSession, settings: Settings, client: SafeClient | None = None, *,
                 limits: Limiter | None = None) -> None:
        self.session = session
        # Where rate limits are counted: the app's shared store in requests, else this process.
        self.limits = limits or PROCESS_LIMITER
        self.settings = settings
        self.urls = Urls(settings.base_url)
        self.keys = KeyRegistry(session, settings.secret_key)
        self._client = client
        self._own_client = client is None
        # Documents fetched in this unit of work (a request or a job run), by requested URL.
        self._fetched: dict[str, tuple[str, dict[str, Any]] | FetchError] = {}

    @property
    def client(self) -> SafeClient:
        if self._client is None:
            self._client = SafeClient(allow_private=self.settings.federation_allow_private_addresses)
        return self._client

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Federation:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # --- local actors -------------------------------------------------------------------

    async def user_by_name(self, username: str) -> User | None:
        from domains.account.schemas import USERNAME_RE, normalise_username
        from domains.account.services import AccountService

        if not USERNAME_RE.match(normalise_username(username)):  # no query for what can't be a name (a NUL)
            return None
        user = await AccountService(self.session).by_username(username)
        return user if user is not None and user.is_active else None

    async def local_actor_for_user(self, user: User) -> Actor:
        """The member's actor. Read-only: the row and key are made when the account is saved
        (:func:`provision_on_user_saved`); only an account made some other way gets them here."""
        uri = self.urls.user(user.username)
        actor = await self._local_row(uri)
        if actor is None:  # an account made with a bare session: make its actor now
            log.info("creating local actor %s on first use", uri)
            actor = await self.provision_user(user)
        return actor

    async def local_service_actor(self, name: str) -> Actor:
        """A domain actor or the instance actor. Read-only once :func:`provision_service_actors`
        has run (at startup)."""
        if name not in DOMAIN_ACTORS:
            raise KeyError(name)
        uri = self.urls.service(name)
        actor = await self._local_row(uri)
        if actor is None:  # startup provisioning missed it (the database was not migrated yet)
            log.info("creating local actor %s on first use", uri)
            actor = await self.provision_service(name)
        return actor

    async def local_actor(self, uri: str) -> Actor | None:
        """The local actor for a URI, or None (a private or absent repository's actors included)."""
        repo = self.urls.local_repo(uri)
        if repo is not None and not uri.endswith("/main-key"):
            from federation.activitypub.forgefed import local_repo_actor

            return await local_repo_actor(self, *repo)
        found = self.urls.local_actor(uri)
        if found is None:
            return None
        kind, name = found
        if kind == "service":
            return await self.local_service_actor(name)
        user = await self.user_by_name(name)
        return await self.local_actor_for_user(user) if user is not None else None

    async def _local_row(self, uri: str) -> Actor | None:
        found: Actor | None = await self.session.scalar(select(Actor).where(Actor.uri == uri, Actor.local))
        return found

    async def provision_user(self, user: User) -> Actor:
        """Create or refresh a member's actor row and signing key (on sign-up and profile edits)."""
        uri = self.urls.user(user.username)
        await self._ensure_key("user", str(user.id), uri)
        return await self._upsert_local(uri, "Person", user.username, user.name, user_id=user.id)

    async def provision_service(self, name: str) -> Actor:
        uri = self.urls.service(name)
        owner_type: Literal["instance", "actor"] = "instance" if name == "instance" else "actor"
        await self._ensure_key(owner_type, name, uri)
        display = self.urls.host if name == "instance" else name.capitalize()
        return await self._upsert_local(uri, DOMAIN_ACTORS[name], name, display)

    async def _ensure_key(self, owner_type: KeyOwner, owner_id: str, uri: str) -> KeyPair:
        """The owner's signing key, made under the key id's path (so no origin is stored with it)."""
        return await self.keys.ensure(owner_type, owner_id, "rsa-2048", self.urls.path(main_key_id(uri)))

    async def local_key(self, actor: Actor) -> KeyPair | None:
        """A local actor's current signing key, found by its owner (whatever id it is stored under)."""
        if actor.user_id is not None:
            return await self.keys.current("user", str(actor.user_id), "rsa-2048")
        repo = self.urls.local_repo(actor.uri)
        if repo is not None:  # a repository and its companion Service sign with the repository's key
            return await self.keys.current("repository", repo[0], "rsa-2048")
        return await self.keys.current(*_service_key_owner(actor.username), "rsa-2048")

    async def _upsert_local(self, uri: str, type_: str, username: str, name: str, *,
                            user_id: UUID | None = None) -> Actor:
        """The local actor's row, with the key id derived from its URI on the current origin."""
        key_id = main_key_id(uri)
        actor = await self._local_row(uri)
        if actor is None:
            actor = Actor(uri=uri, local=True, user_id=user_id, type=type_, username=username, domain=self.urls.host,
                          name=name, inbox=f"{uri}/inbox", shared_inbox=self.urls.shared_inbox,
                          outbox=f"{uri}/outbox", followers_url=f"{uri}/followers",
                          following_url=f"{uri}/following", url=uri, key_id=key_id)
            try:
                async with self.session.begin_nested():  # a concurrent provisioner may win the insert
                    self.session.add(actor)
            except IntegrityError:
                found = await self._local_row(uri)
                if found is None:
                    raise
                actor = found
        if actor.name != name:
            actor.name = name
        if actor.key_id != key_id:
            actor.key_id = key_id
        await self.session.flush()
        return actor

    async def signing_key(self, actor_uri: str) -> tuple[str, SigningKey]:
        """The key id and private key a local actor signs with (decrypted keys are cached)."""
        actor = await self._local_row(actor_uri)
        if actor is None:
            actor = await self.local_actor(actor_uri)
        if actor is None:
            raise KeyError(f"{actor_uri} is not a local actor")
        kp = await self.local_key(actor)
        if kp is None:
            raise KeyError(f"no key for {actor_uri}")
        key = _SIGNING_KEYS.get(kp.id)
        if key is None:
            key = self.keys.private_key(kp)
            if len(_SIGNING_KEYS) > 1024:
                _SIGNING_KEYS.clear()
            _SIGNING_KEYS[kp.id] = key
        return main_key_id(actor.uri), key

    async def instance_auth(self) -> SignatureAuth:
        key_id, key = await self.signing_key(self.urls.instance)
        return SignatureAuth(key_id, key)

    async def actor_document(self, actor: Actor) -> dict[str, Any]:
        kp = await self.local_key(actor)
        doc: dict[str, Any] = {
            "@context": emitted_context(),
            "id": actor.uri,
            "type": actor.type,
            "preferredUsername": actor.username,
            "name": actor.name,
            "summary": actor.summary,
            "url": actor.url,
            "inbox": actor.inbox,
            "outbox": actor.outbox,
            "followers": actor.followers_url,
            "following": actor.following_url,
            "liked": f"{actor.uri}/liked",
            "endpoints": {"sharedInbox": self.urls.shared_inbox},
            "manuallyApprovesFollowers": actor.manually_approves,
            "discoverable": actor.type == "Person",
            "publicKey": {"id": main_key_id(actor.uri), "owner": actor.uri,
                          "publicKeyPem": kp.public_pem if kp else ""},
        }
        if actor.user_id is not None:
            from domains.account.services import AccountService

            user = await AccountService(self.session).get_active(actor.user_id)
            if user is not None:
                doc["summary"] = sanitize_html(_paragraphs(user.bio))
                doc["published"] = iso(user.created_at)
        if actor.local and actor.icon_url:  # the member's avatar (federation.social.services.profile)
            doc["icon"] = {"type": "Image", "url": actor.icon_url}
        return doc

    # --- remote actors ------------------------------------------------------------------

    async def domain_blocked(self, *uris: str) -> bool:
        """Whether any of the URIs is on a blocked domain (subdomains and ports included; see
        :mod:`federation.activitypub.moderation`)."""
        from federation.activitypub.moderation import blocked_hosts

        return bool(await blocked_hosts(self.session, {host_of(u) for u in uris if u}))

    async def fetch_json(self, uri: str) -> tuple[str, dict[str, Any]]:
        """A signed (as the instance actor) guarded GET; returns (final url, document).

        Each URL is fetched at most once per unit of work (failures included). Never waits on
        the network while this transaction holds write locks: two instances each holding their
        own database's lock while fetching from the other would wait for each other (on SQLite,
        until the busy timeout). Then :class:`NeedsFetch` asks :meth:`settle` to fetch first.
        """
        known = self._fetched.get(uri)
        if known is None:
            if wrote_in_transaction(self.session):
                raise NeedsFetch(uri)
            await self.prefetch(uri)
            known = self._fetched[uri]
        if isinstance(known, FetchError):
            raise known
        return known

    async def prefetch(self, uri: str, *, clean: bool = False) -> None:
        """Fetch ``uri`` into this unit of work's documents, remembering a failure as well.

        ``clean``: the transaction has nothing of the caller's in it (see :meth:`settle`), so an
        instance actor made just now for the signature may be committed before the request.
        """
        if not http_url(uri):  # a key id, actor or object id from a hostile document
            self._fetched[uri] = FetchError(f"{uri[:200]!r} is not an http(s) URL with a valid host and port", 400)
            return
        if await self.domain_blocked(uri):  # a blocked server is not even asked
            self._fetched[uri] = FetchError(f"{host_of(uri)} is blocked on this server", 403)
            return
        if urlsplit(uri).path == "/.well-known/webfinger":  # RFC 7033 §4: a plain GET of a JRD
            auth, accept = None, "application/jrd+json, application/json"
        else:
            auth, accept = await self.instance_auth(), AS2_ACCEPT
        # The queries above may have flushed pending changes, or made the instance actor on
        # first use: then this transaction holds locks that must not wait on the network.
        if wrote_in_transaction(self.session):
            if not clean:
                raise NeedsFetch(uri)
            await self.session.commit()
        try:
            fetched = await self.client.get_json(uri, auth=auth, accept=accept)
        except FetchError as exc:
            self._fetched[uri] = exc
        else:
            self._fetched[uri] = (fetched.url, fetched.data)

    async def settle(self, work: Callable[[], Awaitable[T]], keep: Sequence[object] = ()) -> T:
        """Run ``work`` (reads, remote fetches, then writes) so that no fetch waits while the
        transaction holds write locks.

        When ``work`` needs a document only after it has written, the transaction is rolled
        back, the document fetched with no lock held, and ``work`` run again from the start
        (so it must load what it uses itself; ``keep`` lists loaded objects to refresh after a
        rollback). What the transaction wrote before (say, a token's last-used time written by
        authentication) is committed first, so a rollback here never throws it away. On SQLite,
        ``work`` is also run again when another writer committed between its reads and its first
        write (:func:`app.db.lost_snapshot`).
        """
        await self.session.flush()
        if wrote_in_transaction(self.session):
            await self.session.commit()
        for round_ in range(1, MAX_FETCH_ROUNDS + 1):
            try:
                result = await work()
                await self.session.flush()  # so a lost SQLite snapshot shows here, where it can be retried
                return result
            except NeedsFetch as need:
                await self.session.rollback()
                await self.prefetch(need.uri, clean=True)
                await self.session.rollback()  # end the read-only transaction the signing key used
            except OperationalError as exc:
                if not lost_snapshot(exc) or round_ == MAX_FETCH_ROUNDS:
                    raise
                log.info("settle: another writer committed first (SQLite snapshot lost); running again")
                await self.session.rollback()
            for obj in keep:
                if obj in self.session:
                    await self.session.refresh(obj)
        raise FetchError(f"gave up after fetching {MAX_FETCH_ROUNDS} remote documents", 422)

    async def fetch_object(self, uri: str) -> dict[str, Any]:
        """Fetch an object from its origin; its id must be on the final URL's origin."""
        final, data = await self.fetch_json(uri)
        oid = data.get("id")
        if not isinstance(oid, str) or not http_url(oid) or host_of(oid) != host_of(final) or \
                host_of(oid) != host_of(uri):
            raise FetchError(f"object fetched from {final} claims foreign id {oid!r}", 422)
        return data

    async def remote_actor(self, uri: str, *, refresh: bool = False) -> Actor:
        """The actor for ``uri`` (local row, cached remote row, or fetched)."""
        uri = uri.split("#")[0]
        local = await self.local_actor(uri)
        if local is not None:
            return local
        if self.urls.is_local(uri):
            raise FetchError(f"no local actor {uri}", 404)
        actor = await self.session.scalar(select(Actor).where(Actor.uri == uri))
        fresh = actor is not None and actor.fetched_at is not None and \
            actor.fetched_at > datetime.now(UTC) - REMOTE_ACTOR_TTL
        if actor is not None and (fresh or actor.gone) and not refresh:
            return actor
        final, data = await self.fetch_json(uri)
        return await self.store_actor(data, final, actor)

    async def store_actor(self, data: dict[str, Any], fetched_from: str, actor: Actor | None = None) -> Actor:
        uri = data.get("id")
        if not isinstance(uri, str) or not http_url(uri) or host_of(uri) != host_of(fetched_from):
            raise FetchError(f"actor document from {fetched_from} has a foreign or missing id", 422)
        if data.get("type") not in ACTOR_TYPES:
            raise FetchError(f"{uri} is not an actor", 422)
        inbox = data.get("inbox")
        if not isinstance(inbox, str) or not inbox:
            raise FetchError(f"actor {uri} has no inbox", 422)
        if actor is None:
            actor = await self.session.scalar(select(Actor).where(Actor.uri == uri))
        if actor is None:
            actor = Actor(uri=uri, local=False)
            self.session.add(actor)
        key = data.get("publicKey")
        keys = [k for k in as_list(key) if isinstance(k, dict)]
        main = next((k for k in keys if id_of(k.get("owner")) in ("", uri) and isinstance(k.get("publicKeyPem"), str)),
                    None)
        endpoints = data.get("endpoints") if isinstance(data.get("endpoints"), dict) else {}
        icon = data.get("icon")
        actor.type = str(data.get("type"))
        actor.username = plain_text(data.get("preferredUsername"), 255)
        actor.domain = host_of(uri)
        actor.name = plain_text(data.get("name"), 255)
        actor.summary = sanitize_html(data.get("summary"))
        actor.url = http_url(id_of(as_list(data.get("url"))[0]) if data.get("url") else uri)
        actor.icon_url = image_url(icon)
        actor.inbox = inbox
        actor.shared_inbox = str(endpoints.get("sharedInbox") or "") if isinstance(endpoints, dict) else ""
        actor.outbox = id_of(data.get("outbox"))
        actor.followers_url = id_of(data.get("followers"))
        actor.following_url = id_of(data.get("following"))
        actor.manually_approves = bool(data.get("manuallyApprovesFollowers"))
        if main is not None:
            actor.key_id = str(main.get("id") or f"{uri}#main-key")
            actor.public_key_pem = str(main["publicKeyPem"])
        actor.raw = data
        actor.fetched_at = datetime.now(UTC)
        actor.gone = False
        await self.session.flush()
        return actor

    async def resolve_key(self, key_id: str, refresh: bool) -> ResolvedKey | None:
        """keyId -> key document -> owner actor; the actor must publish that exact key id."""
        if not http_url(key_id):  # never a database query with a NUL or a fetch of a non-URL
            return None
        repo = self.urls.local_repo(key_id)
        if repo is not None:
            owner = self.urls.repo_service(repo[0]) if repo[1] else self.urls.repo(repo[0])
            repo_actor = await self.local_actor(owner)
            repo_key = await self.local_key(repo_actor) if repo_actor is not None else None
            if repo_key is None or main_key_id(owner) != key_id:
                return None
            return ResolvedKey(key_id, owner, repo_key.public_pem)
        local = self.urls.local_actor(key_id.split("#")[0])
        if local is not None:
            kp = await self._local_key_by_id(*local, key_id)
            return ResolvedKey(key_id, key_id.split("#")[0], kp.public_pem) if kp is not None else None
        cached = await self.session.scalar(select(Actor).where(Actor.key_id == key_id, Actor.local.is_(False)))
        if not refresh and cached is not None and cached.public_key_pem and not cached.gone:
            return ResolvedKey(key_id, cached.uri, cached.public_key_pem)
        own = await self.keys.by_key_id(key_id)
        if own is not None and own.owner_type in ACTOR_KEY_OWNERS:
            # A key id this instance published under an earlier origin: still ours, never fetched.
            return ResolvedKey(key_id, key_id.split("#")[0], own.public_pem)
        if refresh:
            # One re-fetch after a failed verification, rate-limited per key and per source host.
            recent = cached is not None and cached.fetched_at is not None and \
                cached.fetched_at > datetime.now(UTC) - KEY_REFRESH_INTERVAL
            if recent or not await self.limits.hit(KEY_REFETCH, host_of(key_id)):
                return None
        try:
            _final, doc = await self.fetch_json(key_id.split("#")[0])
            owner_uri = doc.get("id") if doc.get("type") in ACTOR_TYPES else id_of(doc.get("owner") or
                                                                                  doc.get("controller"))
            if not isinstance(owner_uri, str) or not owner_uri:
                return None
            if owner_uri == doc.get("id") and doc.get("type") in ACTOR_TYPES:
                actor = await self.store_actor(doc, _final)
            else:
                actor = await self.remote_actor(owner_uri, refresh=True)
        except FetchError as exc:
            log.warning("could not resolve key %s: %s", key_id, exc)
            return None
        if actor.key_id != key_id or not actor.public_key_pem:
            log.warning("key %s is not published by its owner %s (round trip failed)", key_id, actor.uri)
            return None
        return ResolvedKey(key_id, actor.uri, actor.public_key_pem)

    async def _local_key_by_id(self, kind: LocalKind, name: str, key_id: str) -> KeyPair | None:
        """The key a local key id names: an actor's main key is its owner's current key, derived
        from the current origin; any other id (a rotated key) is looked up as stored."""
        if kind == "service":
            if key_id == main_key_id(self.urls.service(name)):
                return await self.keys.current(*_service_key_owner(name), "rsa-2048")
        elif key_id == main_key_id(self.urls.user(name)):
            user = await self.user_by_name(name)
            return await self.keys.current("user", str(user.id), "rsa-2048") if user is not None else None
        return await self.keys.by_key_id(key_id, origin=self.urls.base)

    async def webfinger(self, handle: str) -> Actor:
        """Resolve ``user@host`` (or ``@user@host``, or an actor URL) to an actor."""
        handle = handle.strip()
        if handle.startswith(("http://", "https://")):
            return await self.remote_actor(handle)
        handle = handle.lstrip("@")
        user, sep, host = handle.partition("@")
        if not sep or not user or not host or "/" in host:
            raise FetchError("a handle looks like user@host", 400)
        if host.lower() == self.urls.host:
            local = await self.local_actor(self.urls.user(user)) or (
                await self.local_service_actor(user) if user in DOMAIN_ACTORS else None)
            if local is None:
                raise FetchError(f"no member @{user} here", 404)
            return local
        schemes = ["https", "http"] if self.settings.federation_allow_private_addresses else ["https"]
        failures: list[FetchError] = []
        for scheme in schemes:
            url = f"{scheme}://{host}/.well-known/webfinger?resource={quote(f'acct:{user}@{host}')}"
            try:
                _final, jrd = await self.fetch_json(url)
            except FetchError as exc:
                failures.append(exc)
                continue
            for link in as_list(jrd.get("links")):
                if isinstance(link, dict) and link.get("rel") == "self" and isinstance(link.get("href"), str) and \
                        "json" in str(link.get("type", "application/activity+json")):
                    return await self.remote_actor(link["href"])
            raise FetchError(f"{handle} has no ActivityPub account", 404)
        # RFC 7033 §4.2: 404 means the server knows no such account; anything else is the server's fault.
        if any(f.status in (404, 410) for f in failures):
            raise FetchError(f"there is no account {handle}", 404)
        blocked = next((f for f in failures if isinstance(f, BlockedAddressError) or f.status == 403), None)
        if blocked is not None:
            raise blocked
        raise FetchError(f"WebFinger lookup of {handle} failed: {failures[-1]}", 502)


def _service_key_owner(name: str) -> tuple[KeyOwner, str]:
    return ("instance" if name == "instance" else "actor"), name


def _paragraphs(text: str) -> str:
    from federation.activitypub.sanitize import text_to_html

    return text_to_html(text) if text else ""


