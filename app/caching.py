"""Route classes and their exact headers, weak ETags and conditional GET (design/fragments.md §2, §5).

Kernel code: the security headers (app/headers.py) and the session guard read a route's class, and
the fragments package and the domains build on it.

Litestar's ``CacheControlHeader`` has no ``stale-if-error`` field and Litestar evaluates no
``If-None-Match``, so both live here. Every page and fragment answer goes through
:func:`conditional_response`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from litestar import Request, Response
from litestar.types import Scope

from app import access

__all__ = [
    "ANONYMOUS_OPT",
    "BROWSER_REVALIDATES",
    "CACHEABLE",
    "CACHE_CONTROL",
    "DEGRADED_CACHE_CONTROL",
    "DOWNGRADED_CACHE_CONTROL",
    "FALLBACK_CACHE_CONTROL",
    "HTML",
    "CachePolicy",
    "RenderState",
    "add_surrogate_keys",
    "conditional_response",
    "etag_matches",
    "note_identity_read",
    "policy_headers",
    "render_state",
    "route_opt",
    "weak_etag",
]

HTML = "text/html"


class CachePolicy(StrEnum):
    """The route classes of design/fragments.md §2."""

    PUBLIC = "public"
    SHARED_FRAGMENT = "shared_fragment"
    PERSONAL = "personal"
    EMBED = "embed"
    PRIVATE = "private"
    ACTION = "action"


# Browsers get ``max-age=0, must-revalidate`` on public pages and shared fragments: they may keep a
# copy but ask (If-None-Match, a cheap 304) before every reuse, so a member never sees a page from
# before their own edit. Only the edge keeps copies (``s-maxage``), and the edge is purged on writes.
BROWSER_REVALIDATES = "max-age=0, must-revalidate"
_EDGE = "s-maxage=300, stale-while-revalidate=600, stale-if-error=86400"
CACHE_CONTROL: Mapping[CachePolicy, str] = {
    CachePolicy.PUBLIC: f"public, {BROWSER_REVALIDATES}, {_EDGE}",
    CachePolicy.SHARED_FRAGMENT: f"public, {BROWSER_REVALIDATES}, {_EDGE}",
    CachePolicy.PERSONAL: "private, no-cache",
    CachePolicy.EMBED: "public, max-age=300, s-maxage=3600, stale-while-revalidate=86400, stale-if-error=86400",
    CachePolicy.PRIVATE: "private, no-store",
    CachePolicy.ACTION: "no-store",
}
# A page that inlined a fragment which fell back: the edge keeps it only briefly (§6).
DEGRADED_CACHE_CONTROL = f"public, {BROWSER_REVALIDATES}, s-maxage=15"
# A fragment answering with its fallback markup (§6).
FALLBACK_CACHE_CONTROL = "no-store"
# What the guard turns a public response into when its handler looked at the session (§2).
DOWNGRADED_CACHE_CONTROL = "private, no-store"

CACHEABLE = frozenset({CachePolicy.PUBLIC, CachePolicy.SHARED_FRAGMENT, CachePolicy.EMBED})

POLICY_OPT_KEY = "cache_policy"
# ``opt=`` keys of a route whose answer never depends on who asks: no session is loaded, nobody is
# authenticated and no CSRF cookie is set, so its public responses carry no ``Set-Cookie``
# (tests/fragments/test_public_cookies.py walks the route table for it).
ANONYMOUS_OPT: Mapping[str, Any] = {"skip_session": True, "exclude_from_auth": True, "exclude_from_csrf": True}
_STATE_KEY = "rose_ash.fragments"


def route_opt(policy: CachePolicy) -> dict[str, Any]:
    """``opt=`` for a route handler of this class.

    Public, shared and embed handlers skip the session and authentication middleware (so
    ``request.user`` is never even looked up) and the CSRF middleware (so no cookie is set);
    those opt keys apply to this handler (this method) only, never to a POST at the same path.
    """
    # Cacheable answers are the same for everybody; a personal fragment shows the session's member,
    # or its signed-out fallback, so every class here is reachable by anyone (app/access.py).
    opt: dict[str, Any] = {POLICY_OPT_KEY: policy, **access.public()}
    if policy in CACHEABLE:
        opt.update(ANONYMOUS_OPT)
    return opt


def policy_of(scope: Scope) -> CachePolicy | None:
    handler = scope.get("route_handler")
    if handler is None:
        return None
    value = handler.opt.get(POLICY_OPT_KEY)
    return value if isinstance(value, CachePolicy) else None


def policy_headers(policy: CachePolicy) -> dict[str, str]:
    headers = {"Cache-Control": CACHE_CONTROL[policy]}
    if policy is CachePolicy.PERSONAL:
        headers["Vary"] = "Cookie"
    elif policy is CachePolicy.EMBED:
        headers["Access-Control-Allow-Origin"] = "*"
        headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return headers


class RenderState:
    """Per-request bookkeeping: surrogate keys of everything rendered, fallbacks, session touches."""

    __slots__ = ("counter", "db", "deferred_etag", "fallbacks", "keys", "pending", "touched")

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.fallbacks: list[str] = []
        self.touched: list[str] = []
        self.pending: dict[str, tuple[str, dict[str, str]]] = {}
        self.counter = 0
        # Set when conditional_response saw unfilled fragment placeholders: the middleware then
        # computes the ETag (and any 304) from the assembled body.
        self.deferred_etag = False
        # The database session the request's fragments share (fragments/registry.py).
        self.db: Any = None


def render_state(scope: Scope) -> RenderState:
    raw: Any = scope
    state = raw.get(_STATE_KEY)
    if not isinstance(state, RenderState):
        state = RenderState()
        raw[_STATE_KEY] = state
    return state


def add_surrogate_keys(scope: Scope, keys: Iterable[str]) -> None:
    render_state(scope).keys.update(k for k in keys if k)


def note_identity_read(scope: Scope, what: str) -> None:
    """Record that this request looked at ``what`` (session, user, auth): public answers must not."""
    touched = render_state(scope).touched
    if what not in touched:
        touched.append(what)


def weak_etag(*parts: str | bytes) -> str:
    """``W/"<16 hex of blake2b>"`` over the parts (a version seed, or the body)."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return f'W/"{digest.hexdigest()}"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag[:2] in ("W/", "w/") else tag


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2 weak comparison of ``If-None-Match`` (a comma list, or ``*``) with ``etag``."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = _opaque(etag)
    return any(_opaque(candidate) == ours for candidate in if_none_match.split(",") if candidate.strip())


def conditional_response(
    request: Request[Any, Any, Any],
    body: bytes | str,
    policy: CachePolicy,
    *,
    etag: str | None = None,
    surrogate_keys: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
    cache_control: str | None = None,
    status_code: int = 200,
    media_type: str = HTML,
) -> Response[bytes]:
    """The 200 (or 304) answer for a GET of a page or fragment of route class ``policy``.

    ``etag`` is a validator computed from a version seed; without one the body is hashed.
    ``cache_control`` overrides the policy's (fallbacks, degraded pages). A ``no-store``
    answer gets no ETag and is never a 304; a 304 carries the 200's headers and no body.
    """
    raw = body.encode() if isinstance(body, str) else body
    out = policy_headers(policy)
    if cache_control is not None:
        out["Cache-Control"] = cache_control
    if policy in CACHEABLE and render_state(request.scope).touched:
        # The handler looked at who is asking: never cacheable, never a 304 (the guard logs it).
        out["Cache-Control"] = DOWNGRADED_CACHE_CONTROL
    out.update(headers or {})
    keys = sorted(set(surrogate_keys) | render_state(request.scope).keys)
    no_store = "no-store" in out["Cache-Control"]
    if policy in CACHEABLE and keys and not no_store:
        out["Surrogate-Key"] = " ".join(keys)
    degraded = out["Cache-Control"] == DEGRADED_CACHE_CONTROL
    state = render_state(request.scope)
    if state.pending:  # a template called fragment(): the middleware fills it in, then validates
        state.deferred_etag = not no_store and not degraded and status_code == 200
        return Response(content=raw, status_code=status_code, headers=out, media_type=media_type)
    if not no_store and not degraded and status_code == 200:
        out["ETag"] = etag or weak_etag(raw)
        if request.method in ("GET", "HEAD") and etag_matches(request.headers.get("if-none-match"), out["ETag"]):
            return Response(content=b"", status_code=304, headers=out, media_type=media_type)
    return Response(content=raw, status_code=status_code, headers=out, media_type=media_type)
