"""The fragment registry: one render function per fragment, behind its URL and the inline call.

A domain declares a fragment once::

    @fragment("events.upcoming", policy=CachePolicy.SHARED_FRAGMENT, embed="events")
    async def upcoming(ctx: FragmentContext) -> FragmentData:
        events = await EventService(ctx.db).upcoming(limit=ctx.int_param("limit", 5, maximum=20))
        return FragmentData({"events": events}, keys=("events",), seed=str(max_updated(events)))

It renders ``templates/fragments/events/upcoming.html`` and is served at ``/f/events/upcoming``
(dots in names are slashes in URLs; ``me.*`` fragments are the personal ones under ``/f/me/``),
inlined by pages with ``{{ fragment("events.upcoming", limit=5) }}``, and, with ``embed=``, at
``/embed/events``. :func:`render_fragment` is the only code path for all of them, so they cannot
differ. A failing or slow builder yields the fragment's fallback markup (design §6).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from jinja2 import Environment, TemplateNotFound, pass_context
from jinja2.runtime import Context
from litestar import Request
from markupsafe import Markup, escape
from sqlalchemy.ext.asyncio import AsyncSession

from app.caching import CachePolicy, add_surrogate_keys, render_state, weak_etag
from app.db import wrote_in_transaction
from app.metrics import FRAGMENT_FALLBACKS
from fragments.cache import CachedFragment, FragmentCache

__all__ = [
    "FAILURES",
    "Fragment",
    "FragmentContext",
    "FragmentData",
    "Rendered",
    "fragment",
    "fragment_url",
    "get",
    "inline_fragment",
    "registry",
    "render_fragment",
    "resolve_placeholders",
]

log = logging.getLogger("rose_ash.fragments")

INLINE_TIMEOUT = 0.3
ROUTE_TIMEOUT = 2.0
# A lower bound on every deadline; tests raise it so a cold, loaded machine does not make
# fragments fall back where a test does not expect it.
TIMEOUT_FLOOR = 0.0
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)?$")
PLACEHOLDER_RE = re.compile(r"<!--rose-ash-fragment:(\d+)-->")

# Failures per fragment name since start (logged as well); a metrics exporter can read this.
FAILURES: Counter[str] = Counter()


class FragmentData(msgspec.Struct, frozen=True):
    """What a builder returns: template context, surrogate keys and an optional version seed.

    With a ``seed`` the ETag is computed before rendering (a cheap 304); without one the
    rendered body is hashed.
    """

    context: dict[str, Any] = msgspec.field(default_factory=dict)
    keys: tuple[str, ...] = ()
    seed: str | None = None


@dataclass
class FragmentContext:
    """What a builder gets: the request, its string params, a database session and the user.

    ``user`` is only ever looked up for personal fragments; shared ones see ``None``.
    """

    request: Request[Any, Any, Any]
    spec: Fragment
    params: Mapping[str, str]
    link_base: str = ""
    used_request_session: AsyncSession | None = None

    @property
    def db(self) -> AsyncSession:
        """The database session for this fragment, opened on first use.

        On a GET or HEAD whose session has not written, the request's own session: no second
        connection checkout per page. It is read-only there, so a fragment that fails or times
        out mid-query costs nothing but that session's connection, which :func:`render_fragment`
        then invalidates (the handler is done with it by then; the next fragment reconnects).
        Otherwise (a form post answering with a fragment) a session of the fragments' own, so a
        failing fragment never breaks the handler's transaction and fragments never see its
        uncommitted writes; after a failure it is closed and the next fragment gets a fresh one.
        """
        request = self.request
        alchemy = request.app.state["alchemy"]
        if request.method in ("GET", "HEAD"):
            session: AsyncSession = alchemy.provide_session(request.app.state, request.scope)
            if not wrote_in_transaction(session):
                self.used_request_session = session
                return session
        state = render_state(request.scope)
        if state.db is None:
            state.db = alchemy.create_session_maker()()
        own: AsyncSession = state.db
        return own

    @property
    def user(self) -> Any:
        if self.spec.policy is not CachePolicy.PERSONAL:
            return None
        return self.request.scope.get("user")

    @property
    def settings(self) -> Any:
        return self.request.app.state["settings"]

    def int_param(self, name: str, default: int, *, minimum: int = 1, maximum: int = 50) -> int:
        try:
            value = int(self.params.get(name, default))
        except ValueError:
            value = default
        return max(minimum, min(maximum, value))


Builder = Callable[[FragmentContext], Awaitable[FragmentData]]


@dataclass
class Fragment:
    name: str
    policy: CachePolicy
    build: Builder
    template: str
    fallback_template: str | None
    embed: str | None = None
    title: str = ""
    description: str = ""
    params: dict[str, str] = field(default_factory=dict)
    inline_timeout: float = INLINE_TIMEOUT
    route_timeout: float = ROUTE_TIMEOUT
    # Whether a shared fragment is served from the cache (fragments/cache.py); False for one whose
    # content changes without a purge of its keys (a clock).
    cached: bool = True

    @property
    def url(self) -> str:
        return "/f/" + self.name.replace(".", "/")


@dataclass(frozen=True)
class Rendered:
    html: str
    keys: tuple[str, ...]
    etag: str | None
    ok: bool


class FragmentRegistry:
    def __init__(self) -> None:
        self._by_name: dict[str, Fragment] = {}

    def add(self, spec: Fragment, *, replace: bool = False) -> None:
        """Register ``spec``; a name already taken by another builder raises unless ``replace``.

        ``replace=True`` is how one domain takes over another's fragment (the cart owning
        ``me.cart-badge``): the takeover is spelled out where it happens, never an accident of
        import order. Registering the same builder again, or the same definition re-executed
        (a module reload: same module and qualified name), is not a second registration.
        """
        existing = self._by_name.get(spec.name)
        if existing is not None and not replace and not _same_definition(existing.build, spec.build):
            raise ValueError(
                f"fragment {spec.name!r} is already registered (by {_qualified(existing.build)}); "
                "pass replace=True to take it over"
            )
        if spec.embed and any(f.embed == spec.embed and f.name != spec.name for f in self._by_name.values()):
            raise ValueError(f"embed name {spec.embed!r} is taken")
        self._by_name[spec.name] = spec

    def get(self, name: str) -> Fragment | None:
        return self._by_name.get(name)

    def embed(self, embed_name: str) -> Fragment | None:
        return next((f for f in self._by_name.values() if f.embed == embed_name), None)

    def remove(self, name: str) -> None:
        self._by_name.pop(name, None)

    def __iter__(self) -> Iterator[Fragment]:
        return iter(sorted(self._by_name.values(), key=lambda f: f.name))


def _qualified(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _same_definition(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # Nested functions (a test's local builder) share a qualname across calls, so only a
    # module-level definition counts as "the same one" when the objects differ.
    if a is b:
        return True
    qualname = getattr(a, "__qualname__", "")
    return "<locals>" not in qualname and _qualified(a) == _qualified(b)


registry = FragmentRegistry()
get = registry.get


def fragment(
    name: str,
    *,
    policy: CachePolicy = CachePolicy.SHARED_FRAGMENT,
    template: str | None = None,
    fallback: str | None = None,
    embed: str | None = None,
    title: str = "",
    description: str = "",
    params: Mapping[str, str] | None = None,
    inline_timeout: float = INLINE_TIMEOUT,
    route_timeout: float = ROUTE_TIMEOUT,
    replace: bool = False,
    cached: bool = True,
) -> Callable[[Builder], Builder]:
    """Register ``fn`` as the builder of fragment ``name`` (``area.name``; ``me.*`` = personal).

    A name another builder holds raises ``ValueError`` naming the fragment, unless
    ``replace=True`` (a domain deliberately taking over a fragment, e.g. the cart's badge).

    ``template`` defaults to ``fragments/<area>/<name>.html`` and ``fallback`` to
    ``fragments/<area>/<name>_fallback.html`` when that exists, else ``fragments/_fallback.html``.
    ``params`` documents the accepted query params and their example values (shown on /embed).
    ``cached=False`` keeps a shared fragment out of the cache (fragments/cache.py): for one whose
    content changes without a purge of its surrogate keys.
    """
    if not NAME_RE.match(name):
        raise ValueError(f"bad fragment name {name!r}: lowercase 'area.name' or 'name'")
    personal = name.startswith("me.")
    if personal != (policy is CachePolicy.PERSONAL):
        raise ValueError(f"fragment {name!r}: personal fragments, and only they, are named 'me.*'")
    if policy not in (CachePolicy.SHARED_FRAGMENT, CachePolicy.PERSONAL):
        raise ValueError("a fragment is SHARED_FRAGMENT or PERSONAL (embeds are shared ones with embed=)")
    if embed and policy is CachePolicy.PERSONAL:
        raise ValueError("embeds are anonymous: a personal fragment cannot be embedded")
    path = name.replace(".", "/")

    def decorate(fn: Builder) -> Builder:
        registry.add(Fragment(
            name=name, policy=policy, build=fn,
            template=template or f"fragments/{path}.html",
            fallback_template=fallback or f"fragments/{path}_fallback.html",
            embed=embed, title=title or name,
            # The docstring, shown on the embed page: without its reStructuredText backticks.
            description=description or (fn.__doc__ or "").strip().replace("``", ""),
            params=dict(params or {}), inline_timeout=inline_timeout, route_timeout=route_timeout,
            cached=cached,
        ), replace=replace)
        return fn

    return decorate


def fragment_url(name: str, params: Mapping[str, Any] | None = None) -> str:
    from urllib.parse import urlencode

    query = urlencode(sorted((k, str(v)) for k, v in (params or {}).items()))
    return "/f/" + name.replace(".", "/") + (f"?{query}" if query else "")


def _env(request: Request[Any, Any, Any]) -> Environment:
    env: Environment = request.app.template_engine.engine  # type: ignore[union-attr]
    return env


def _csrf_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    from litestar.utils.scope.state import ScopeState

    token = ScopeState.from_scope(request.scope).csrf_token
    token = "" if token is None or token.__class__.__name__ == "EmptyType" else str(token)
    return {"csrf_token": token,
            "csrf_input": Markup('<input type="hidden" name="_csrf_token" value="{}" />').format(token)}


def _render_fallback(request: Request[Any, Any, Any], spec: Fragment, link_base: str) -> str:
    env = _env(request)
    names = [spec.fallback_template] if spec.fallback_template else []
    try:
        template = env.get_or_select_template([*names, "fragments/_fallback.html"])
        return template.render(fragment=spec, link_base=link_base, url=link_base + spec.url)
    except Exception:  # a broken fallback must still not break the page
        log.exception("fallback of fragment %s failed", spec.name)
        return f'<a class="fragment-unavailable" href="{escape(link_base)}/">{escape(spec.title)}</a>'


async def close_fragment_session(request: Request[Any, Any, Any]) -> None:
    """Close the fragments' shared session (after the last fragment, or after a failure)."""
    state = render_state(request.scope)
    session, state.db = state.db, None
    if session is None:
        return
    try:
        await session.close()
    except Exception:  # a connection broken by a cancelled query is discarded by the pool
        log.warning("closing the fragments' database session failed", exc_info=True)


async def render_fragment(
    request: Request[Any, Any, Any],
    spec: Fragment,
    params: Mapping[str, str] | None = None,
    *,
    inline: bool,
    link_base: str = "",
    if_none_match: Callable[[str], bool] | None = None,
) -> Rendered:
    """Build and render ``spec``; on error or timeout render its fallback (``ok=False``).

    ``if_none_match`` lets a route answer 304 from the seed before the template is rendered:
    when it returns True for the seed's ETag, ``html`` is empty.
    """
    ctx = FragmentContext(request=request, spec=spec, params=dict(params or {}), link_base=link_base)
    # Shared fragments come from the cache (fragments/cache.py); personal ones never do.
    cache: FragmentCache | None = request.app.state.get("fragment_cache")
    if spec.policy is not CachePolicy.SHARED_FRAGMENT or not spec.cached:
        cache = None
    # The builder and template are in the key with the release: what renders it is part of what it is.
    cache_key = (cache.key(f"{spec.name}|{spec.template}|{_qualified(spec.build)}", ctx.params, link_base)
                 if cache is not None else "")
    if cache is not None:
        hit = await cache.get(request.scope, cache_key)
        if hit is not None:
            if hit.etag and if_none_match is not None and if_none_match(hit.etag):
                return Rendered("", hit.keys, hit.etag, True)
            return Rendered(hit.html, hit.keys, hit.etag, True)
    epoch = cache.epoch if cache is not None else 0
    timeout = max(spec.inline_timeout if inline else spec.route_timeout, TIMEOUT_FLOOR)
    try:
        data = await asyncio.wait_for(spec.build(ctx), timeout)
        etag = weak_etag(spec.name, link_base, repr(sorted(ctx.params.items())), data.seed) if data.seed else None
        if etag and if_none_match is not None and if_none_match(etag):
            return Rendered("", data.keys, etag, True)
        context: dict[str, Any] = {**data.context, "params": ctx.params, "link_base": link_base,
                                   "fragment_spec": spec}
        if spec.policy is CachePolicy.PERSONAL:
            context.update(_csrf_context(request))
        html = _env(request).get_template(spec.template).render(context)
    except TemplateNotFound:
        raise
    except Exception as exc:
        FAILURES[spec.name] += 1
        FRAGMENT_FALLBACKS.labels(fragment=spec.name).inc()
        kind = "timed out" if isinstance(exc, TimeoutError) else "failed"
        log.error("fragment %s %s (%s): %r", spec.name, kind, "inline" if inline else "route", exc)
        if ctx.used_request_session is not None:
            await _discard(ctx.used_request_session)
        await close_fragment_session(request)
        return Rendered(_render_fallback(request, spec, link_base), (), None, False)  # never cached
    if cache is not None:
        await cache.put(request.scope, cache_key, CachedFragment(html, tuple(data.keys), etag), epoch)
    return Rendered(html, data.keys, etag, True)


async def _discard(session: AsyncSession) -> None:
    """Drop the request session's connection after a fragment failed with it (maybe mid-query)."""
    try:
        await session.invalidate()
    except Exception:
        log.warning("discarding the request's database session after a fragment failure failed", exc_info=True)


@pass_context
def inline_fragment(context: Context, name: str, **params: Any) -> Markup:
    """Jinja global ``fragment(name, **params)``: a placeholder the page renderer fills in.

    Templates render synchronously while builders are async, so the call records what to
    render and the page helper (or :class:`~fragments.middleware.FragmentMiddleware` for
    ordinary ``Template`` responses) awaits it, with the inline deadline, before anything is sent.
    """
    spec = registry.get(name)
    if spec is None:
        raise LookupError(f"no fragment named {name!r}")
    if spec.policy is CachePolicy.PERSONAL:
        raise ValueError(f"{name!r} is personal: put a hole (hx-get={spec.url!r}) in the page instead")
    request = context.get("request")
    if request is None:
        raise RuntimeError("fragment() needs 'request' in the template context")
    state = render_state(request.scope)
    state.counter += 1  # per request, so a page's bytes (and ETag) do not depend on other requests
    token = str(state.counter)
    state.pending[token] = (name, {k: str(v) for k, v in params.items()})
    # An int, so nothing to escape; Markup.format() costs ten times as much per placeholder.
    return Markup(f"<!--rose-ash-fragment:{state.counter}-->")  # noqa: S704


async def resolve_placeholders(request: Request[Any, Any, Any], html: str) -> str:
    """Render every fragment the page asked for and put it in place of its placeholder.

    Builders run one after another (they share the request's database session), each under
    its inline deadline. Their surrogate keys join the request's; fallbacks are recorded.
    """
    state = render_state(request.scope)
    if not state.pending:
        return html
    rendered: dict[str, str] = {}
    try:
        while state.pending:  # a fragment may itself inline fragments
            token, (name, params) = next(iter(state.pending.items()))
            del state.pending[token]
            spec = registry.get(name)
            assert spec is not None
            result = await render_fragment(request, spec, params, inline=True)
            if result.ok:
                add_surrogate_keys(request.scope, result.keys)
            else:
                state.fallbacks.append(name)
            rendered[token] = result.html
    finally:
        await close_fragment_session(request)
    for _ in range(4):  # nested placeholders
        html = PLACEHOLDER_RE.sub(lambda m: rendered.pop(m.group(1), ""), html)
        if not rendered:
            break
    return html
