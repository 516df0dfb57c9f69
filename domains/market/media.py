"""``/media/<sha256>-<width>.<ext>``: the stored copies of uploaded images.

A name is derived from the content (domains/market/services/media.py), so its bytes never change:
browsers and the edge may keep it for a year (``immutable``), and the ETag is the name itself.
The handler reads only the file (no database, no session), so it is as cheap as a static file.
The names are SHA-256 digests: a draft product's images cannot be found by guessing.
"""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Request, Response
from litestar.exceptions import NotFoundException

from app.caching import CachePolicy, conditional_response
from app.settings import Settings
from domains.market.services.media import CONTENT_TYPES, MEDIA_NAME, media_dir
from fragments.pages import public_get

__all__ = ["IMMUTABLE", "media_handlers"]

IMMUTABLE = "public, max-age=31536000, immutable"


@public_get("/media/{name:str}", name="market:media")
async def media_file(request: Request[Any, Any, Any], settings: Settings, name: str) -> Response[bytes]:
    match = MEDIA_NAME.match(name)
    if match is None:
        raise NotFoundException("No such image.")
    path = anyio.Path(media_dir(settings.data_dir) / name)
    try:
        body = await path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise NotFoundException("No such image.") from None
    return conditional_response(request, body, CachePolicy.PUBLIC, etag=f'"{name}"', cache_control=IMMUTABLE,
                                media_type=CONTENT_TYPES[match.group("ext")],
                                headers={"X-Content-Type-Options": "nosniff"})


media_handlers = [media_file]
