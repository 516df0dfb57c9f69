"""Uploading images from a Mastodon app (docs.joinmastodon.org/methods/media/):
``POST /api/v2/media`` (and v1), ``GET``/``PUT /api/v1/media/:id``, and the stored files at
``/social/media/<sha256>-<width>.<ext>``.

An upload goes through the market's image pipeline (domains/market/services/media.py,
:func:`process_image`): the *content* decides what it is (the file's name and declared type are
not consulted), only JPEG, PNG and WebP pass, decompression bombs are refused before decoding,
the image is turned upright, re-encoded without EXIF/XMP/GPS and resized to at most 1280 pixels
wide. It is processed before the answer, so the answer is 200 with its URLs (Mastodon answers
202 only while processing continues). Members' uploads are held to :data:`MEDIA_PIXELS` (far below
the market's staff cap: decoding costs memory by pixels, not bytes), decoded at most two at a time
(:data:`~federation.social.services.profile.IMAGE_WORK`) and limited to 30 per member per 30
minutes (Mastodon's own limit, federation/mastodon/throttle.py). An upload no note takes within
:data:`UNATTACHED_TTL` is removed by the recurring sweep (federation/mastodon/jobs.py).

The files are public by their content hash, as Mastodon's media URLs are (other servers fetch
them for the notes they receive); only images a member uploaded here are served, and only while
the upload waits for its note or its note stands: a deleted note's images answer 404.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import anyio.to_thread
from litestar import Request, Response, Router, get, post, put
from litestar.datastructures import UploadFile
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.responses import PRIVATE
from app.settings import Settings
from domains.market.schemas import MAX_IMAGE_BYTES
from domains.market.services.media import MEDIA_NAME, ImageRefused, media_file, process_image, write_atomically
from federation.activitypub.models import APObject, MediaAttachment
from federation.mastodon.api import base_url, mastodon_error, need, user_of
from federation.mastodon.attachments import (
    CONTENT_TYPES,
    MAX_DESCRIPTION,
    MEDIA_PIXELS,
    MediaEntity,
    entity,
    file_url,
)
from federation.mastodon.params import some_id
from federation.mastodon.throttle import MEDIA_UPLOADS, spend
from federation.oauth.cors import CORSMiddleware
from federation.social.services.profile import IMAGE_WORK

UPLOAD_BODY_LIMIT = MAX_IMAGE_BYTES + 64 * 1024  # the image and the form around it
UNATTACHED_TTL = timedelta(hours=24)  # Mastodon removes unattached uploads after a day as well
IMMUTABLE = "public, max-age=31536000, immutable"  # a name is its content's hash: it never changes



def _description(value: Any) -> str:
    if value is None or isinstance(value, UploadFile):
        return ""
    text = str(value).strip()
    if len(text) > MAX_DESCRIPTION:
        raise ClientException(f"Validation failed: description is too long (at most {MAX_DESCRIPTION} characters)",
                              status_code=422)
    if "\x00" in text:
        raise ClientException("Validation failed: description can't contain NUL characters", status_code=422)
    return text


async def _upload(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings) -> MediaEntity:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ClientException("Validation failed: file is missing (send it as multipart form data)", status_code=422)
    description = _description(form.get("description"))
    await spend(request, MEDIA_UPLOADS, "media uploads")
    data = await upload.read()
    if len(data) > MAX_IMAGE_BYTES:
        raise ClientException(f"File is too large: at most {MAX_IMAGE_BYTES // 1048576} MB", status_code=413)
    try:  # no name or declared type: the bytes alone say what this is
        processed = await anyio.to_thread.run_sync(lambda: process_image(data, max_pixels=MEDIA_PIXELS),
                                                   limiter=IMAGE_WORK)
    except ImageRefused as refused:
        raise ClientException(f"Validation failed: {refused.errors['image']}", status_code=422) from None
    for width, copy in processed.copies.items():
        path = media_file(settings.data_dir, processed.sha256, width, processed.format)
        if not path.exists():
            await anyio.to_thread.run_sync(write_atomically, path, copy)
    row = MediaAttachment(user_id=user_of(request).id, sha256=processed.sha256, format=processed.format,
                          width=processed.width, height=processed.height, widths=sorted(processed.copies),
                          description=description)
    db_session.add(row)
    await db_session.flush()
    answer = entity(row, base_url(settings))
    await db_session.commit()
    return answer


@post("/api/v2/media", opt=need("write:media"), status_code=200, request_max_body_size=UPLOAD_BODY_LIMIT,
      cache_control=PRIVATE)
async def upload_v2(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings) -> MediaEntity:
    return await _upload(request, db_session, settings)


@post("/api/v1/media", opt=need("write:media"), status_code=200, request_max_body_size=UPLOAD_BODY_LIMIT,
      cache_control=PRIVATE)
async def upload_v1(request: Request[Any, Any, Any], db_session: AsyncSession, settings: Settings) -> MediaEntity:
    return await _upload(request, db_session, settings)


async def _own(db_session: AsyncSession, request: Request[Any, Any, Any], media_id: str) -> MediaAttachment:
    """The member's upload; another's, or none, is 404."""
    mid = some_id(media_id, "id")
    row = await db_session.get(MediaAttachment, mid) if mid is not None else None
    if row is None or row.user_id != user_of(request).id:
        raise NotFoundException()
    return row


@get("/api/v1/media/{media_id:str}", opt=need("write:media"), cache_control=PRIVATE)
async def show(media_id: str, request: Request[Any, Any, Any], db_session: AsyncSession,
               settings: Settings) -> MediaEntity:
    """Mastodon asks ``write:media`` here too: it is the uploader's own check on processing."""
    return entity(await _own(db_session, request, media_id), base_url(settings))


@put("/api/v1/media/{media_id:str}", opt=need("write:media"), cache_control=PRIVATE)
async def update(media_id: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                 settings: Settings) -> MediaEntity:
    """Change the alt text, while no note carries the image yet (a posted note's document has
    already gone out with it; Mastodon refuses the same)."""
    row = await _own(db_session, request, media_id)
    if row.object_id is not None:
        raise ClientException("Validation failed: the media is already on a post; edit the post instead",
                              status_code=422)
    form = await request.form() if request.content_type[0] != "application/json" else None
    params: Any = form if form is not None else (await request.json() or {})
    if not hasattr(params, "get"):
        raise ClientException("The JSON body must be an object.", status_code=400)
    if "description" in params:
        row.description = _description(params.get("description"))
    answer = entity(row, base_url(settings))
    await db_session.commit()
    return answer


@get("/social/media/{name:str}", opt=access.public())
async def media_file_route(name: str, db_session: AsyncSession, settings: Settings) -> Response[bytes]:
    """A stored copy of an image a member uploaded here; any other name is 404. An upload's id
    (the ``id`` of a note's attachment document) redirects to its largest copy while it stands."""
    match = MEDIA_NAME.fullmatch(name)
    if match is None:
        return await _by_upload_id(name, db_session, settings)
    sha, width, fmt = match.group("sha"), int(match.group("width")), match.group("ext")
    # An upload waiting for its note, or on a note that stands; a deleted note's images are gone.
    standing = or_(MediaAttachment.object_id.is_(None),
                   MediaAttachment.object_id.in_(select(APObject.id).where(APObject.deleted.is_(False))))
    known = await db_session.scalar(select(MediaAttachment.id).where(
        MediaAttachment.sha256 == sha, MediaAttachment.format == fmt, standing).limit(1))
    path = media_file(settings.data_dir, sha, width, fmt)
    if known is None or not path.is_file():
        raise NotFoundException()
    data = await anyio.to_thread.run_sync(path.read_bytes)
    return Response(data, media_type=CONTENT_TYPES[fmt], headers={"Cache-Control": IMMUTABLE, "ETag": f'"{name}"',
                                                                  "X-Content-Type-Options": "nosniff"})


async def _by_upload_id(name: str, db_session: AsyncSession, settings: Settings) -> Response[bytes]:
    try:
        upload_id = UUID(name)
    except ValueError:
        raise NotFoundException() from None
    row = await db_session.get(MediaAttachment, upload_id)
    standing = row is not None and (row.object_id is None or await db_session.scalar(select(APObject.id).where(
        APObject.id == row.object_id, APObject.deleted.is_(False))) is not None)
    if row is None or not standing:
        raise NotFoundException()
    return Response(b"", status_code=302, headers={"Location": file_url(base_url(settings), row),
                                                   "Cache-Control": "public, max-age=3600"})


router = Router(path="/", route_handlers=[upload_v2, upload_v1, show, update, media_file_route],
                middleware=[CORSMiddleware()], exception_handlers={HTTPException: mastodon_error})
