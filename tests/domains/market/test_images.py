"""Product images through the real multipart form: checked with Pillow, EXIF removed, resized,
stored by content hash and served immutable; everything that is not an acceptable image is
refused with a clear message and nothing written (issue 16 item 3)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import delete as sqlalchemy_delete
from sqlalchemy import func, select

from domains.market.models import Media, Product, ProductImage
from domains.market.schemas import MAX_IMAGE_BYTES
from domains.market.services import CatalogueService, ImageRefused, process_image
from tests.domains.market.conftest import form_token, make_producer
from tests.domains.market.helpers import GPS_TAG, ORIENTATION, THREE, photo, submit

pytestmark = pytest.mark.anyio



async def product_page(client: Any, sessionmaker: Any) -> str:
    await make_producer(client, sessionmaker, "alice")
    made = await submit(client, {**THREE, "status": "active"})
    assert made.status_code == 303
    return str(made.headers["location"])


async def upload(client: Any, page: str, data: bytes, filename: str, content_type: str, alt: str = "") -> Any:
    token = await form_token(client, page)
    return await client.post(f"{page}/images", data={"_csrf_token": token, "alt": alt},
                             files={"image": (filename, data, content_type)})


async def rows(sessionmaker: Any) -> tuple[int, int]:
    async with sessionmaker() as session:
        media = (await session.execute(select(func.count()).select_from(Media))).scalar_one()
        images = (await session.execute(select(func.count()).select_from(ProductImage))).scalar_one()
    return int(media), int(images)


async def test_upload_resizes_strips_exif_and_serves_immutable(client: Any, sessionmaker: Any,
                                                              settings: Any) -> None:
    page = await product_page(client, sessionmaker)
    raw = photo()
    assert b"SecretCam" in raw and Image.open(io.BytesIO(raw)).getexif().get_ifd(GPS_TAG)  # the fixture has them
    done = await upload(client, page, raw, "tomato.jpg", "image/jpeg", alt="Red socks on a line")
    assert done.status_code == 303, done.text[:1000]
    sha = hashlib.sha256(raw).hexdigest()
    async with sessionmaker() as session:
        media = (await session.execute(select(Media))).scalar_one()
        assert (media.sha256, media.format, media.width, media.height) == (sha, "jpeg", 1600, 1200)
        assert media.widths == [320, 640, 1280]
        product = (await session.execute(select(Product))).scalar_one()
        read = await CatalogueService(session, base_url="https://coop.example").get_public(product.id)
    assert read is not None and read.images[0].alt == "Red socks on a line"
    assert read.images[0].srcset == ", ".join(
        f"https://coop.example/media/{sha}-{w}.jpeg {w}w" for w in (320, 640, 1280))
    for width in (320, 640, 1280):
        stored = Path(settings.data_dir) / "media" / f"{sha}-{width}.jpeg"
        assert stored.exists()
        served = await client.get(f"/media/{sha}-{width}.jpeg")
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert served.content == stored.read_bytes()
        copy = Image.open(io.BytesIO(served.content))
        assert copy.format == "JPEG" and copy.size == (width, width * 3 // 4)
        assert not copy.getexif() and b"SecretCam" not in served.content and b"Exif" not in served.content
        again = await client.get(f"/media/{sha}-{width}.jpeg", headers={"If-None-Match": served.headers["etag"]})
        assert again.status_code == 304
    assert (await client.get(f"/media/{sha}-999.jpeg")).status_code == 404
    assert (await client.get("/media/../../secret_key")).status_code == 404
    assert (await client.get(f"/media/{sha}-320.png")).status_code == 404

    # The same bytes again: one stored image, a second place on the product.
    assert (await upload(client, page, raw, "again.jpeg", "image/jpeg")).status_code == 303
    assert await rows(sessionmaker) == (1, 2)


async def test_exif_orientation_is_applied_before_it_is_dropped() -> None:
    image = Image.new("RGB", (400, 200), (10, 200, 10))
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90° clockwise to display"
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    processed = process_image(out.getvalue(), filename="sideways.jpg")
    assert (processed.width, processed.height) == (200, 400)
    assert not Image.open(io.BytesIO(processed.copies[200])).getexif()


@pytest.mark.parametrize("fmt, ext, mime", [("PNG", "png", "image/png"), ("WEBP", "webp", "image/webp")])
async def test_png_and_webp_keep_their_format(client: Any, sessionmaker: Any, fmt: str, ext: str, mime: str) -> None:
    page = await product_page(client, sessionmaker)
    raw = photo(fmt, (500, 300))
    assert (await upload(client, page, raw, f"label.{ext}", mime)).status_code == 303
    sha = hashlib.sha256(raw).hexdigest()
    served = await client.get(f"/media/{sha}-500.{ext}")
    assert served.status_code == 200 and served.headers["content-type"] == mime
    assert Image.open(io.BytesIO(served.content)).format == fmt
    assert (await client.get(f"/media/{sha}-320.{ext}")).status_code == 200


def bomb() -> bytes:
    """A small PNG whose header claims 100 megapixels (a one-bit image of one colour compresses
    to almost nothing): decoding it would take far more memory than the upload's size suggests."""
    out = io.BytesIO()
    Image.new("1", (10_000, 10_000), 0).save(out, "PNG", optimize=True)
    return out.getvalue()


@pytest.mark.parametrize(("name", "data", "filename", "mime", "message"), [
    ("png named jpg", lambda: photo("PNG", (300, 200)), "photo.jpg", "image/jpeg",
     "says it is JPEG but it is really a PNG image"),
    ("jpeg named webp", lambda: photo("JPEG", (300, 200)), "photo.webp", "image/webp",
     "says it is WebP but it is really a JPEG image"),
    ("text", lambda: b"just some text, not a picture\n" * 20, "notes.png", "image/png",
     "not a JPEG, PNG or WebP image"),
    ("gif", lambda: _gif(), "anim.gif", "image/gif", "not a JPEG, PNG or WebP file name"),
    ("truncated", lambda: photo("JPEG", (800, 600))[:700], "cut.jpg", "image/jpeg", "could not be read"),
    ("empty", lambda: b"", "empty.jpg", "image/jpeg", "The file is empty"),
    ("bomb", bomb, "huge.png", "image/png", "too large to open safely"),
    ("too large", lambda: b"\xff\xd8\xff" + b"0" * (MAX_IMAGE_BYTES + 10), "big.jpg", "image/jpeg",
     "upload one of 10 MB at most"),
])
async def test_what_is_not_an_acceptable_image_is_refused(client: Any, sessionmaker: Any, settings: Any, name: str,
                                                         data: Any, filename: str, mime: str, message: str) -> None:
    page = await product_page(client, sessionmaker)
    refused = await upload(client, page, data(), filename, mime)
    assert refused.status_code == 422, (name, refused.status_code)
    assert message in refused.text, name
    assert await rows(sessionmaker) == (0, 0)
    media = Path(settings.data_dir) / "media"
    assert not media.exists() or not any(media.iterdir())


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (20, 20)).save(out, "GIF")
    return out.getvalue()


def test_pillows_own_bomb_guard_is_on_too() -> None:
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS <= 40_000_000
    with pytest.raises(ImageRefused) as refused:
        process_image(bomb(), filename="huge.png")
    assert "(100,000,000 pixels)" in refused.value.errors["image"]
    # Between our cap and Pillow's hard limit (twice its MAX_IMAGE_PIXELS) our own check refuses,
    # naming the size.
    out = io.BytesIO()
    Image.new("1", (7_000, 7_000), 0).save(out, "PNG", optimize=True)
    with pytest.raises(ImageRefused) as ours:
        process_image(out.getvalue(), filename="big.png")
    assert "7,000 x 7,000 pixels" in ours.value.errors["image"] or "49,000,000 pixels" in ours.value.errors["image"]


async def test_images_are_reordered_given_alt_texts_and_removed(client: Any, sessionmaker: Any) -> None:
    page = await product_page(client, sessionmaker)
    first, second = photo(colour=(255, 0, 0), size=(700, 500)), photo(colour=(0, 0, 255), size=(700, 500))
    assert (await upload(client, page, first, "a.jpg", "image/jpeg", alt="red")).status_code == 303
    assert (await upload(client, page, second, "b.jpg", "image/jpeg", alt="blue")).status_code == 303
    async with sessionmaker() as session:
        images = (await session.execute(select(ProductImage).order_by(ProductImage.position))).scalars().all()
    a, b = images
    token = await form_token(client, page)
    arranged = await client.post(f"{page}/images/arrange", data={
        "_csrf_token": token, f"position_{a.id}": "2", f"position_{b.id}": "1", f"alt_{b.id}": "Blue, first now"})
    assert arranged.status_code == 303
    async with sessionmaker() as session:
        product = (await session.execute(select(Product))).scalar_one()
        read = await CatalogueService(session).get_public(product.id)
    assert read is not None and [i.alt for i in read.images] == ["Blue, first now", "red"]
    bad = await client.post(f"{page}/images/arrange", data={"_csrf_token": token, f"position_{a.id}": "first"})
    assert bad.status_code == 422 and "is not a position" in bad.text
    removed = await client.post(f"{page}/images/{b.id}/delete", data={"_csrf_token": token})
    assert removed.status_code == 303
    assert await rows(sessionmaker) == (2, 1)  # the file stays: another product may show the same photo


async def test_a_producer_logo_goes_through_the_same_checks(client: Any, sessionmaker: Any) -> None:
    await product_page(client, sessionmaker)
    listing = await client.get("/market/admin/producers")
    import re

    producer_path = re.search(r'href="(/market/admin/producers/[0-9a-f-]{36})"', listing.text)
    assert producer_path
    where = producer_path.group(1)
    token = await form_token(client, where)
    bad = await client.post(f"{where}/logo", data={"_csrf_token": token},
                            files={"logo": ("logo.png", b"GIF89a not really", "image/png")})
    assert bad.status_code == 422 and "not a JPEG, PNG or WebP image" in bad.text
    good = await client.post(f"{where}/logo", data={"_csrf_token": token},
                             files={"logo": ("logo.png", photo("PNG", (400, 400)), "image/png")})
    assert good.status_code == 303
    page = await client.get(where)
    assert "/media/" in page.text and "srcset=" in page.text


async def test_images_of_drafts_are_private_until_published(client: Any, sessionmaker: Any) -> None:
    """A draft's image answers anonymous visitors exactly like an absent image; its owner and staff
    see it at /market/admin/media/ (private cache, no surrogate key); publishing makes it public,
    archiving takes it back (a hard purge of the product's key, which the image carries)."""
    from app.jobs import Job
    from domains.account.models import User
    from domains.account.services import TokenService
    from fragments.purge import PURGE_KIND
    from tests.helpers.web import login

    await make_producer(client, sessionmaker, "alice")
    made = await submit(client, THREE)  # a draft
    assert made.status_code == 303
    page = str(made.headers["location"])
    raw = photo(size=(700, 500))
    assert (await upload(client, page, raw, "socks.jpg", "image/jpeg")).status_code == 303
    sha = hashlib.sha256(raw).hexdigest()
    name, absent = f"{sha}-320.jpeg", f"{'0' * 64}-320.jpeg"
    edit = await client.get(page)
    assert f"/market/admin/media/{sha}-" in edit.text and f'"/media/{sha}' not in edit.text

    owner_cookies = dict(client.cookies)
    client.cookies.clear()
    hidden, missing = await client.get(f"/media/{name}"), await client.get(f"/media/{absent}")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content
    assert {k: v for k, v in hidden.headers.items() if k not in ("date", "x-request-id")} == {
        k: v for k, v in missing.headers.items() if k not in ("date", "x-request-id")}
    anonymous_owner_url = await client.get(f"/market/admin/media/{name}")
    assert anonymous_owner_url.status_code in (303, 401) and not anonymous_owner_url.content.startswith(b"\xff\xd8")

    client.cookies.update(owner_cookies)
    mine = await client.get(f"/market/admin/media/{name}")
    assert mine.status_code == 200 and mine.content.startswith(b"\xff\xd8")
    assert mine.headers["content-type"] == "image/jpeg"
    assert mine.headers["cache-control"].startswith("private") and "immutable" not in mine.headers["cache-control"]
    assert "public" not in mine.headers["cache-control"] and "surrogate-key" not in mine.headers
    async with sessionmaker() as session:
        product = (await session.execute(select(Product))).scalar_one()
        read = await CatalogueService(session).read(await CatalogueService(session).get(product.id))  # type: ignore[arg-type]
    assert "/market/admin/media/" in read.images[0].url and "/market/admin/media/" in read.images[0].srcset

    # Another producer: the same 404 as an absent image; staff: 200.
    client.cookies.clear()
    await make_producer(client, sessionmaker, "bob")
    other, other_missing = await client.get(f"/market/admin/media/{name}"), await client.get(
        f"/market/admin/media/{absent}")
    assert other.status_code == other_missing.status_code == 404 and other.content == other_missing.content
    client.cookies.clear()
    await make_producer(client, sessionmaker, "carol", admin=True, producer=False)
    staff = await client.get(f"/market/admin/media/{name}")
    assert staff.status_code == 200 and staff.content == mine.content

    # Published (through the API's partial update): public, immutable, tagged with the product's key.
    async with sessionmaker() as session, session.begin():
        alice = (await session.execute(select(User).where(User.username == "alice"))).scalar_one()
        _row, secret = await TokenService(session).issue(alice, "t", ["market"])
    client.cookies.clear()
    r = await client.patch(f"/api/market/products/{product.slug}", json={"status": "active"},
                           headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200 and r.json()["images"][0]["url"].endswith(f"/media/{sha}-700.jpeg")
    public = await client.get(f"/media/{name}")
    assert public.status_code == 200 and public.content == mine.content
    assert public.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert {f"market-product:{product.id}", f"market-media:{sha}"} <= set(public.headers["surrogate-key"].split())
    assert "set-cookie" not in public.headers

    # Archived: a hard purge of the product's key (the edge drops the image too), then 404 again.
    async with sessionmaker() as session, session.begin():
        await session.execute(sqlalchemy_delete(Job))
    assert (await login(client, "alice")).status_code == 303
    token = await form_token(client, f"{page}/archive")
    assert (await client.post(f"{page}/archive", data={"_csrf_token": token})).status_code == 303
    async with sessionmaker() as session:
        purges = [j.payload for j in (await session.execute(select(Job))).scalars() if j.kind == PURGE_KIND]
    assert any(p["hard"] and f"market-product:{product.id}" in p["keys"] for p in purges), purges
    client.cookies.clear()
    gone = await client.get(f"/media/{name}")
    assert gone.status_code == 404 and gone.content == missing.content
