"""Media attachments both ways: our uploads as Mastodon ``MediaAttachment`` entities
(docs.joinmastodon.org/entities/MediaAttachment/) and as AS2 ``Document`` objects on a note
(ActivityStreams Vocabulary §3.3 ``Document``/``Image``; Mastodon reads ``name`` as the alt text,
docs.joinmastodon.org/spec/activitypub/#as), and any note's AS2 attachments back as entities.

No handlers here (federation/mastodon/media.py has them), so the renderer and the status
handler can use it without importing the API module.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar.exceptions import ClientException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import APObject, MediaAttachment

MAX_ATTACHMENTS = 4  # per note, as Mastodon
MAX_DESCRIPTION = 1500  # alt text characters, as Mastodon
# The pixel cap on members' uploads (the instance entity's image_matrix_limit says it to apps):
# decoding costs memory by pixels, not bytes, and a note's image is shown 1280 pixels wide.
MEDIA_PIXELS = 16_000_000
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
FILE_PATH = "/social/media/"


class MediaEntity(msgspec.Struct, kw_only=True):
    id: str
    type: str  # image | gifv | video | audio | unknown
    url: str | None
    preview_url: str | None
    remote_url: str | None
    description: str | None
    blurhash: str | None
    meta: dict[str, Any]


def file_url(base: str, row: MediaAttachment, width: int | None = None) -> str:
    """The stored copy at ``width`` (the largest without one)."""
    widths = row.widths or [row.width]
    chosen = max(widths) if width is None else min((w for w in widths if w >= width), default=max(widths))
    return f"{base}{FILE_PATH}{row.sha256}-{chosen}.{row.format}"


def _meta(width: int, height: int) -> dict[str, Any]:
    return {"width": width, "height": height, "size": f"{width}x{height}",
            "aspect": round(width / height, 6) if height else 1}


def _height(row: MediaAttachment, width: int) -> int:
    """The height of the copy ``width`` wide (``row.width`` is the upload's; copies keep its aspect)."""
    return max(1, round(row.height * width / row.width)) if row.width else row.height


def entity(row: MediaAttachment, base: str) -> MediaEntity:
    """``original`` is the largest copy we serve (the upload itself is never served: it may carry EXIF)."""
    widths = row.widths or [row.width]
    large, small = max(widths), min(widths)
    return MediaEntity(
        id=str(row.id), type="image", url=file_url(base, row), preview_url=file_url(base, row, small),
        remote_url=None, description=row.description or None, blurhash=None,
        meta={"original": _meta(large, _height(row, large)), "small": _meta(small, _height(row, small))})


def document(row: MediaAttachment, base: str) -> dict[str, Any]:
    """The AS2 attachment a note carries for ``row``: a ``Document`` (Mastodon's own type for
    images) with ``mediaType``, ``url``, ``name`` (the alt text, or null) and the pixel size. Its
    ``id`` names the upload (``/social/media/<upload id>`` redirects to the file), so the note's
    attachment is the same MediaAttachment, by id, as the upload an app made it from."""
    return {"id": f"{base}{FILE_PATH}{row.id}", "type": "Document", "mediaType": CONTENT_TYPES[row.format],
            "url": file_url(base, row),
            "name": row.description or None, "width": max(row.widths or [row.width]),
            "height": _height(row, max(row.widths or [row.width]))}


def _kind(media_type: str) -> str:
    major = media_type.split("/", 1)[0]
    return {"image": "image", "video": "video", "audio": "audio"}.get(major, "unknown")


def _url_of(value: Any) -> str | None:
    """An attachment's ``url``: a string, a ``Link`` (``href``) or a list of either, http(s) only."""
    for item in value if isinstance(value, list) else [value]:
        href = item.get("href") if isinstance(item, dict) else item
        if isinstance(href, str) and href.startswith(("https://", "http://")):
            return href
    return None


def _upload_id(doc: dict[str, Any]) -> str:
    """The upload id a local note's attachment names (:func:`document`); notes posted before
    attachments carried one get a stable stand-in, as remote ones do."""
    raw = doc.get("id")
    tail = raw.rsplit("/", 1)[-1] if isinstance(raw, str) and FILE_PATH in raw else ""
    try:
        return str(UUID(tail))
    except ValueError:
        return ""


def from_note(obj: APObject) -> list[MediaEntity]:
    """The entities of a note's AS2 attachments (ours or received), in their order."""
    raw = (obj.raw or {}).get("attachment")
    out: list[MediaEntity] = []
    for i, doc in enumerate(raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else []):
        if not isinstance(doc, dict) or doc.get("type") not in ("Document", "Image", "Video", "Audio"):
            continue
        url = _url_of(doc.get("url"))
        if url is None:
            continue
        media_type = doc.get("mediaType") if isinstance(doc.get("mediaType"), str) else ""
        width, height = doc.get("width"), doc.get("height")
        meta = {"original": _meta(width, height)} if isinstance(width, int) and isinstance(height, int) \
            and width > 0 and height > 0 else {}
        name = doc.get("name") if isinstance(doc.get("name"), str) else None
        out.append(MediaEntity(id=(_upload_id(doc) if obj.local else "") or f"{obj.id}-{i}",
                               type=_kind(str(media_type)), url=url, preview_url=url,
                               remote_url=None if obj.local else url,
                               description=(name or "")[:MAX_DESCRIPTION] or None,
                               blurhash=doc.get("blurhash") if isinstance(doc.get("blurhash"), str) else None,
                               meta=meta))
    return out


async def claim(session: AsyncSession, user_id: UUID, raw: Any) -> list[MediaAttachment]:
    """The uploads ``media_ids[]`` names, in that order: each the member's own and not yet on a
    note, at most :data:`MAX_ATTACHMENTS`; anything else is a 422 (nothing is written)."""
    if raw in (None, "", []):
        return []
    ids = raw if isinstance(raw, list) else [raw]
    if len(ids) > MAX_ATTACHMENTS:
        raise ClientException(f"Validation failed: at most {MAX_ATTACHMENTS} media attachments", status_code=422)
    wanted: list[UUID] = []
    for value in ids:
        try:
            wanted.append(UUID(str(value)))
        except ValueError:
            raise ClientException("Validation failed: media_ids must be ids of your uploads", status_code=422) from None
    rows = {r.id: r for r in (await session.scalars(select(MediaAttachment).where(
        MediaAttachment.id.in_(wanted), MediaAttachment.user_id == user_id))).all()}
    if len(set(wanted)) != len(wanted) or any(w not in rows or rows[w].object_id is not None for w in wanted):
        raise ClientException("Validation failed: media_ids must be ids of your uploads not yet on a post",
                              status_code=422)
    return [rows[w] for w in wanted]
