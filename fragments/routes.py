"""``/f/<name>``, ``/f/me/<name>``, ``/embed/<name>``, ``/embed/<name>/frame``, ``/embed/loader.js``, ``/embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.exceptions import NotFoundException

from app.caching import (
    FALLBACK_CACHE_CONTROL,
    CachePolicy,
    conditional_response,
    etag_matches,
    route_opt,
    weak_etag,
)
from fragments.keys import EMBED_LOADER, EMBEDS
from fragments.pages import render_page
from fragments.registry import Fragment, close_fragment_session, registry, render_fragment

__all__ = ["LOADER_PATH", "router"]

LOADER_PATH = Path(__file__).resolve().parent.parent / "static" / "js" / "embed-loader.js"
JS = "text/javascript"
FRAME_CSP = "frame-ancestors *"


def _params(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if isinstance(v, str)}


async def serve(request: Request[Any, Any, Any], spec: Fragment, policy: CachePolicy, *,
                link_base: str = "", headers: dict[str, str] | None = None) -> Response[bytes]:
    """Answer a fragment URL: its 200 (or 304), or its fallback as a 200 with ``no-store``."""
    inm = request.headers.get("if-none-match")
    try:
        rendered = await render_fragment(request, spec, _params(request), inline=False, link_base=link_base,
                                         if_none_match=lambda etag: etag_matches(inm, etag))
    finally:
        await close_fragment_session(request)
    if not rendered.ok:
        return conditional_response(request, rendered.html, policy, cache_control=FALLBACK_CACHE_CONTROL,
                                    headers=headers)
    return conditional_response(request, rendered.html, policy, etag=rendered.etag,
                                surrogate_keys=rendered.keys, headers=headers)


def _shared(name: str) -> Fragment:
    spec = registry.get(name)
    if spec is None or spec.policy is not CachePolicy.SHARED_FRAGMENT:
        raise NotFoundException(f"No fragment {name!r}.")
    return spec


def _embed(name: str) -> Fragment:
    spec = registry.embed(name)
    if spec is None:
        raise NotFoundException(f"No embed {name!r}.")
    return spec


@get("/f/{name:str}", opt=route_opt(CachePolicy.SHARED_FRAGMENT), name="fragment:shared", include_in_schema=False)
async def shared_fragment(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    return await serve(request, _shared(name), CachePolicy.SHARED_FRAGMENT)


@get("/f/{area:str}/{name:str}", opt=route_opt(CachePolicy.SHARED_FRAGMENT), name="fragment:shared-area",
     include_in_schema=False)
async def shared_area_fragment(request: Request[Any, Any, Any], area: str, name: str) -> Response[bytes]:
    return await serve(request, _shared(f"{area}.{name}"), CachePolicy.SHARED_FRAGMENT)


@get("/f/me/{name:str}", opt=route_opt(CachePolicy.PERSONAL), name="fragment:personal", include_in_schema=False)
async def personal_fragment(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    spec = registry.get(f"me.{name}")
    if spec is None:
        raise NotFoundException(f"No personal fragment {name!r}.")
    return await serve(request, spec, CachePolicy.PERSONAL)


def _base_url(request: Request[Any, Any, Any]) -> str:
    return str(request.app.state["settings"].base_url)


@get("/embed/{name:str}", opt=route_opt(CachePolicy.EMBED), name="embed:script", include_in_schema=False)
async def embed(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    return await serve(request, _embed(name), CachePolicy.EMBED, link_base=_base_url(request))


@get("/embed/{name:str}/frame", opt=route_opt(CachePolicy.EMBED), name="embed:frame", include_in_schema=False)
async def embed_frame(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    spec = _embed(name)
    base = _base_url(request)
    inner = await serve(request, spec, CachePolicy.EMBED, link_base=base)
    if inner.status_code != 200:  # a 304 from the seed
        inner.headers["Content-Security-Policy"] = FRAME_CSP
        return inner
    body = inner.content if isinstance(inner.content, bytes) else b""
    env = request.app.template_engine.engine  # type: ignore[union-attr]
    html = env.get_template("fragments/_embed_frame.html").render(
        spec=spec, body=body.decode(), base_url=base)
    fallback = "no-store" in inner.headers.get("Cache-Control", "")
    return conditional_response(
        request, html, CachePolicy.EMBED, headers={"Content-Security-Policy": FRAME_CSP},
        surrogate_keys=inner.headers.get("Surrogate-Key", "").split(),
        etag=None if fallback or not inner.headers.get("ETag") else weak_etag("frame", inner.headers["ETag"]),
        cache_control=FALLBACK_CACHE_CONTROL if fallback else None,
    )


_loader_cache: dict[str, bytes] = {}


@get("/embed/loader.js", opt=route_opt(CachePolicy.EMBED), name="embed:loader", include_in_schema=False)
async def embed_loader(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = _loader_cache.get("js")
    if body is None:
        body = _loader_cache["js"] = LOADER_PATH.read_bytes()
    return conditional_response(request, body, CachePolicy.EMBED, surrogate_keys=(EMBED_LOADER,), media_type=JS)


@get("/embed", opt=route_opt(CachePolicy.PUBLIC), name="embed:index", include_in_schema=False)
async def embed_index(request: Request[Any, Any, Any]) -> Response[bytes]:
    """For site owners: how to put each embeddable fragment on their site, with a live preview."""
    embeds = [spec for spec in registry if spec.embed]
    return await render_page(request, "fragments/embed_index.html", {"embeds": embeds}, keys=(EMBEDS,))


router = Router(path="/", route_handlers=[
    shared_fragment, shared_area_fragment, personal_fragment, embed, embed_frame, embed_loader, embed_index,
])
