"""Product and logo images: checked, cleaned, resized and stored by content (issue 16 item 3).

An upload is accepted only if Pillow, reading the bytes, finds a JPEG, PNG or WebP image and the
file's name and declared type say the same; everything else is refused with a message saying what
it really is. Decompression bombs are refused before any pixel is decoded: a header that claims
more than :data:`~domains.market.schemas.MAX_IMAGE_PIXELS` pixels is refused by our own check,
and Pillow's ``MAX_IMAGE_PIXELS`` (set to the same cap, its warning made an error) stops any
decoder path ours does not see.

Accepted images are re-encoded (so EXIF, GPS, XMP and comments are gone; only the ICC colour
profile is kept), turned upright by their EXIF orientation first, and written at each width of
:data:`~domains.market.schemas.IMAGE_WIDTHS` no wider than the original as
``DATA_DIR/media/<sha256>-<width>.<ext>``, where ``sha256`` is the digest of the uploaded bytes:
the same photo uploaded twice is stored once. Files are written before the row commits; a rolled
back upload leaves files nobody links (harmless, and the next upload of the same bytes reuses them).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from uuid import UUID

import anyio.to_thread
from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from domains.market.models import Media
from domains.market.schemas import IMAGE_WIDTHS, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ImageRead

__all__ = [
    "CONTENT_TYPES", "MEDIA_NAME", "ImageRefused", "MediaService", "ProcessedImage", "media_dir", "media_file",
    "media_url", "process_image", "srcset", "write_atomically",
]

# Pillow's own guard at our cap (it warns above it and raises above twice it); the warning is
# turned into an error where we decode, so both limits refuse.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

FORMATS: Final = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}  # Pillow's name -> ours (and the extension)
CONTENT_TYPES: Final = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_EXTENSIONS: Final = {".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".png": "png", ".webp": "webp"}
_NAMES: Final = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP"}
MEDIA_NAME = re.compile(r"^(?P<sha>[0-9a-f]{64})-(?P<width>[1-9][0-9]{0,4})\.(?P<ext>jpeg|png|webp)$")
JPEG_QUALITY = 85
WEBP_QUALITY = 82


class ImageRefused(InputProblems):
    """An upload that is not an acceptable image; ``errors["image"]`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__({"image": message}, 422)


@dataclass(frozen=True)
class ProcessedImage:
    sha256: str
    format: str  # "jpeg" | "png" | "webp"
    width: int
    height: int
    byte_size: int
    copies: dict[int, bytes]  # width -> re-encoded bytes


def _claimed_format(filename: str, content_type: str) -> str | None:
    """The format the upload's name (or, without an extension, its declared type) claims."""
    suffix = Path(filename).suffix.lower()
    if suffix:
        if suffix not in _EXTENSIONS:
            raise ImageRefused(f"“{filename}” is not a JPEG, PNG or WebP file name: upload .jpg, .png or .webp images.")
        return _EXTENSIONS[suffix]
    declared = content_type.split(";", 1)[0].strip().lower()
    for ours, mime in CONTENT_TYPES.items():
        if declared == mime or (ours == "jpeg" and declared == "image/jpg"):
            return ours
    return None


def process_image(data: bytes, *, filename: str = "", content_type: str = "",
                  widths: tuple[int, ...] = IMAGE_WIDTHS, max_pixels: int = MAX_IMAGE_PIXELS) -> ProcessedImage:
    """Check ``data`` and make its cleaned, resized copies (CPU-bound: run it in a thread).

    ``max_pixels`` lowers the pixel cap for callers that take images from many members (the
    Mastodon API, avatars): decoding costs memory and CPU by pixel count, not file size. It
    cannot raise the cap above :data:`MAX_IMAGE_PIXELS`, which Pillow enforces on its own."""
    max_pixels = min(max_pixels, MAX_IMAGE_PIXELS)
    if not data:
        raise ImageRefused("The file is empty.")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRefused(f"The image is {len(data) / 1048576:.1f} MB; upload one of "
                           f"{MAX_IMAGE_BYTES // 1048576} MB at most.")
    claimed = _claimed_format(filename, content_type)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as probe:
                actual = FORMATS[str(probe.format)]
                width, height = probe.size
                if width * height > max_pixels:  # read from the header: nothing decoded yet
                    raise ImageRefused(_bomb(width, height, limit=max_pixels))
                probe.seek(0)  # an animation's first frame is the picture
                image = ImageOps.exif_transpose(probe)  # upright, as the camera meant it
                image.load()
                icc = probe.info.get("icc_profile")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # Pillow refused at its own limit, before our check could read the size: its
            # message names the pixel count ("Image size (100000000 pixels) exceeds ...").
            count = re.search(r"\((\d+) pixels\)", str(exc))
            raise ImageRefused(_bomb(0, 0, int(count.group(1)) if count else 0)) from None
        except UnidentifiedImageError:
            raise ImageRefused("This file is not a JPEG, PNG or WebP image.") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageRefused(f"The image could not be read (it may be damaged or cut short): {exc}.") from None
    if claimed is not None and claimed != actual:
        name = f"“{filename}”" if filename else "The file"
        raise ImageRefused(f"{name} says it is {_NAMES[claimed]} but it is really a {_NAMES[actual]} image: "
                           "rename it or export it again.")
    if actual == "jpeg":
        image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "transparency" in image.info or image.mode in ("LA", "PA", "P") else "RGB")
    copies: dict[int, bytes] = {}
    for target in sorted({min(w, image.width) for w in widths}):
        copy = image if target == image.width else image.resize(
            (target, max(1, round(image.height * target / image.width))), Image.Resampling.LANCZOS)
        copies[target] = _encode(copy, actual, icc)
    return ProcessedImage(sha256=hashlib.sha256(data).hexdigest(), format=actual, width=image.width,
                          height=image.height, byte_size=len(data), copies=copies)


def _bomb(width: int, height: int, pixels: int = 0, *, limit: int = MAX_IMAGE_PIXELS) -> str:
    size = f" ({width:,} x {height:,} pixels)" if width and height else f" ({pixels:,} pixels)" if pixels else ""
    return (f"The image is too large to open safely{size}: at most {limit // 1_000_000} megapixels. "
            "Scale it down and upload it again.")


def _encode(image: Image.Image, fmt: str, icc: object) -> bytes:
    """Re-encode without metadata: no ``exif=``/``pnginfo=`` is passed, so none is written."""
    out = io.BytesIO()
    extra: dict[str, object] = {"icc_profile": icc} if isinstance(icc, bytes) else {}
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True, **extra)
    elif fmt == "png":
        image.save(out, "PNG", optimize=True, **extra)
    else:
        image.save(out, "WEBP", quality=WEBP_QUALITY, method=4, **extra)
    return out.getvalue()


def media_dir(data_dir: Path) -> Path:
    return data_dir / "media"


def media_file(data_dir: Path, sha256: str, width: int, fmt: str) -> Path:
    return media_dir(data_dir) / f"{sha256}-{width}.{fmt}"


def media_url(media: Media, width: int | None = None, *, base_url: str = "", private: bool = False) -> str:
    """The copy at ``width`` (the largest without one): ``/media/<sha256>-<width>.<ext>``; ``private``:
    the owners' and staff's ``/market/admin/media/...`` (images of drafts are not public)."""
    widths = media.widths or [media.width]
    chosen = max(widths) if width is None else min((w for w in widths if w >= width), default=max(widths))
    prefix = "/market/admin/media" if private else "/media"
    return f"{base_url.rstrip('/')}{prefix}/{media.sha256}-{chosen}.{media.format}"


def srcset(media: Media, *, base_url: str = "", private: bool = False) -> str:
    """The ``srcset`` attribute of an ``<img>``: every stored copy with its width descriptor."""
    return ", ".join(f"{media_url(media, w, base_url=base_url, private=private)} {w}w"
                     for w in sorted(media.widths or [media.width]))


def image_read(media: Media, *, image_id: UUID | None = None, alt: str = "", base_url: str = "",
               private: bool = False) -> ImageRead:
    return ImageRead(id=image_id or media.id, media_id=media.id,
                     url=media_url(media, base_url=base_url, private=private),
                     srcset=srcset(media, base_url=base_url, private=private), width=media.width,
                     height=media.height, alt=alt, content_type=CONTENT_TYPES[media.format])


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file (also the social hub's and Mastodon API's uploads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)  # readers see the whole file or none
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MediaService:
    """Stores uploads as :class:`Media` rows plus files under ``DATA_DIR/media``."""

    def __init__(self, db: AsyncSession, data_dir: Path) -> None:
        self.db = db
        self.data_dir = data_dir

    async def by_sha(self, sha256: str) -> Media | None:
        return (await self.db.execute(select(Media).where(Media.sha256 == sha256))).scalar_one_or_none()

    async def get(self, media_id: UUID) -> Media | None:
        return await self.db.get(Media, media_id)

    async def store(self, data: bytes, *, filename: str = "", content_type: str = "",
                    uploaded_by: UUID | None = None) -> Media:
        """Check, clean and store an upload (ImageRefused, nothing written, when it is not acceptable)."""
        processed = await anyio.to_thread.run_sync(
            lambda: process_image(data, filename=filename, content_type=content_type))
        existing = await self.by_sha(processed.sha256)
        for width, copy in processed.copies.items():
            path = media_file(self.data_dir, processed.sha256, width, processed.format)
            if not path.exists():
                await anyio.to_thread.run_sync(write_atomically, path, copy)
        if existing is not None:
            return existing
        media = Media(sha256=processed.sha256, format=processed.format, width=processed.width,
                      height=processed.height, byte_size=processed.byte_size, widths=sorted(processed.copies),
                      uploaded_by_id=uploaded_by)
        try:
            async with self.db.begin_nested():
                self.db.add(media)
                await self.db.flush()
        except IntegrityError:  # the same bytes uploaded at the same moment by someone else: use theirs
            found = await self.by_sha(processed.sha256)
            assert found is not None
            return found
        return media
