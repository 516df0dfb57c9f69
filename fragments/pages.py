"""Rendering whole pages composed from fragments, with the route class's headers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from app.caching import (
    DEGRADED_CACHE_CONTROL,
    CachePolicy,
    conditional_response,
    render_state,
    route_opt,
)
from fragments.registry import _env, resolve_placeholders

__all__ = ["public_get", "render_page"]


async def render_page(
    request: Request[Any, Any, Any],
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    keys: Iterable[str] = (),
    policy: CachePolicy = CachePolicy.PUBLIC,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response[bytes]:
    """Render ``template``, fill in its inline fragments and answer with ``policy``'s headers.

    The page's ``Surrogate-Key`` is ``keys`` plus the keys of every fragment it inlined. If an
    inlined fragment fell back, the page is kept by the edge for 15 s only and gets no ETag.
    """
    html = _env(request).get_template(template).render({"request": request, **(context or {})})
    html = await resolve_placeholders(request, html)
    degraded = bool(render_state(request.scope).fallbacks) and policy in (CachePolicy.PUBLIC, CachePolicy.EMBED)
    return conditional_response(
        request, html, policy, surrogate_keys=keys, status_code=status_code, headers=headers,
        cache_control=DEGRADED_CACHE_CONTROL if degraded else None,
    )


def public_get(path: str | list[str], **kwargs: Any) -> Callable[[Any], HTTPRouteHandler]:
    """``@get`` for a public page: no session, no user, no CSRF cookie, guarded by the middleware."""
    opt = {**route_opt(CachePolicy.PUBLIC), **kwargs.pop("opt", {})}
    return get(path, opt=opt, **kwargs)
