"""Staff check tickets in at the door in Chromium at phone width (issue 18 item 5 and Tests).

- With JavaScript off the page is the typed-code form: the camera button never shows, a typed
  code is checked in and the answer is big and coloured (green OK, amber "already checked in",
  red for an unknown code).
- With JavaScript on, the camera path: Chromium's fake camera plays a Y4M video whose frame is a
  real ticket's QR code (segno's matrix, written as YUV 4:2:0 by hand: the format is a text header
  plus raw planes, YUV4MPEG2). The page's script reads it (the browser's BarcodeDetector where it
  reads QR codes; headless Chromium on Linux has none, so this runs the vendored reader in
  static/vendor/qr-0.7.0) and redeems the ticket: OK. A second scan (the page opened again, the
  same ticket held up) is refused as already checked in, and the list counts one check-in.

The server runs migrated from scratch, on SQLite and on PostgreSQL when set.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import segno
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers.browser import DB_KINDS, server_database
from tests.helpers.server import app_server

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
DAY = date.today() + timedelta(days=10)  # the next date, so the one the door checks in
WIDTH, HEIGHT = 640, 480


def y4m_of_qr(text: str, path: Path, frames: int = 2) -> None:
    """A still video of ``text``'s QR code for Chromium's --use-file-for-fake-video-capture: a
    YUV4MPEG2 stream header, then per frame ``FRAME`` and the Y, U and V planes (4:2:0, full range:
    0 is black, 255 white; U and V 128 is grey, no colour)."""
    matrix = segno.make(text, error="m").matrix
    size = len(matrix)
    scale = min(WIDTH, HEIGHT) * 3 // 4 // (size + 8)  # with a quiet zone of 4 modules each side
    left, top = (WIDTH - size * scale) // 2, (HEIGHT - size * scale) // 2
    luma = bytearray(b"\xff" * (WIDTH * HEIGHT))
    for row, modules in enumerate(matrix):
        for col, dark in enumerate(modules):
            if dark:
                for y in range(top + row * scale, top + (row + 1) * scale):
                    start = y * WIDTH + left + col * scale
                    luma[start:start + scale] = b"\x00" * scale
    chroma = b"\x80" * (WIDTH // 2 * HEIGHT // 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + bytes(luma) + chroma + chroma)


@pytest.fixture(scope="module", params=DB_KINDS)
def door(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    """A server with a bookable event, a staff member, and a booking of two tickets: their secrets."""
    from tests.app.test_layout_browser import browser_or_skip

    browser_or_skip()
    tmp = tmp_path_factory.mktemp("events-checkin")
    with server_database(request.param) as url, app_server(tmp, database_url=url) as server:
        async def seed(session: AsyncSession) -> list[str]:
            from domains.events.booking_models import Position
            from domains.events.services.bookings import Attendee, BookingService
            from domains.events.services.events import EventForm, EventService

            event = await EventService(session).save(EventForm(
                title="Bread workshop", tz="Europe/London", start_date=DAY.isoformat(), start_time="18:00",
                end_time="20:00", capacity="12"))
            service = BookingService(session)
            key = (await service.dates(event, limit=1))[0].key
            booking = await service.book(event, key, user=None, name="Ann", email="ann@example.org", quantity=2,
                                         attendees=[Attendee("Ann"), Attendee("Bo")])
            return list((await session.execute(select(Position.secret).where(Position.booking_id == booking.id)
                                               .order_by(Position.created_at))).scalars())

        secrets_ = server.in_process(seed)
        server.create_user("staff", PASSWORD, email="staff@example.org", admin=True)
        yield server, secrets_


def sign_in(page: Any, server: Any, target: str) -> None:
    page.goto(server.base_url + f"/account/login?next={target}")
    page.eval(f"document.querySelector('input[name=login]').value = 'staff';"
              f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)};"
              "window.__old = true;"
              "document.querySelector(\"form[action^='/account/login'] button[type=submit]\").click()")
    page.wait_for(f"window.__old === undefined && document.readyState === 'complete' && "
                  f"location.pathname === {json.dumps(target)}")


def fits(page: Any) -> None:
    scroll, inner = page.eval("[document.documentElement.scrollWidth, innerWidth]")
    assert scroll <= inner, (page.eval("location.pathname"), scroll, inner)


def answer(page: Any) -> dict[str, Any]:
    """The answer box as shown: its text, classes, and its text's size in CSS pixels."""
    return dict(page.eval("""(() => { const a = document.querySelector('.checkin-answer');
        const s = getComputedStyle(a.querySelector('strong'));
        return {text: a.innerText, cls: a.className, px: parseFloat(s.fontSize),
                bg: getComputedStyle(a).backgroundColor};
    })()"""))


def inside(page: Any) -> int:
    """The page's count of tickets checked in ("N of M checked in ...")."""
    return int(str(page.eval("document.querySelector('[data-checkin-counts]').innerText")).split()[0])


def type_code(page: Any, code: str) -> None:
    page.eval(f"document.querySelector('#f-secret').value = {json.dumps(code)}; window.__old = true;"
              "document.querySelector('form.checkin-form button[type=submit]').click()")
    page.wait_for("window.__old === undefined && document.readyState === 'complete' && "
                  "document.querySelector('.checkin-answer') !== null")


PATH = "/events/bread-workshop/checkin"


def test_typed_codes_without_javascript_at_phone_width(door: Any, tmp_path: Path, browser_binary: str) -> None:
    from tests.helpers.cdp import chromium

    server, secrets_ = door
    with chromium(tmp_path, browser_binary) as page:
        page.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        page.set_javascript(False)
        sign_in(page, server, PATH)
        assert page.eval("document.querySelector('[data-checkin-scan]').hidden") is True  # no camera without JS
        assert page.eval("document.querySelector('[data-checkin-scan]').offsetParent") is None
        fits(page)
        type_code(page, secrets_[1])
        shown = answer(page)
        assert shown["text"].startswith("OK") and "Bo" in shown["text"] and "checkin-ok" in shown["cls"]
        assert shown["px"] >= 32 and shown["bg"] == "rgb(27, 127, 59)"  # big, and green
        fits(page)
        type_code(page, secrets_[1])
        shown = answer(page)
        assert shown["text"].startswith("Already checked in") and "checkin-already_redeemed" in shown["cls"]
        assert shown["bg"] == "rgb(138, 83, 0)"  # amber: a good ticket seen twice
        type_code(page, "not-a-ticket")
        shown = answer(page)
        assert shown["text"].startswith("Unknown ticket") and shown["bg"] == "rgb(164, 38, 44)"  # red
        fits(page)


def test_camera_scan_redeems_then_refuses_a_second_scan(door: Any, tmp_path: Path, browser_binary: str) -> None:
    from tests.helpers.cdp import chromium

    server, secrets_ = door
    video = tmp_path / "ticket.y4m"
    y4m_of_qr(secrets_[0], video)
    flags = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
             f"--use-file-for-fake-video-capture={video}")
    with chromium(tmp_path, browser_binary, flags) as page:
        page.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        sign_in(page, server, PATH)
        # The page may have the camera; the rest of the site may not (app/headers.py).
        assert page.eval("document.featurePolicy ? document.featurePolicy.allowsFeature('camera') : true") is True
        page.wait_for("!document.querySelector('[data-checkin-scan]').hidden")
        assert page.eval("'BarcodeDetector' in window") is False  # so the vendored reader is what runs here
        before = inside(page)
        page.eval("document.querySelector('button.checkin-camera').click()")
        page.wait_for("document.querySelector('.checkin-answer') !== null", timeout=30)
        shown = answer(page)
        assert shown["text"].startswith("OK") and "Ann" in shown["text"] and "checkin-ok" in shown["cls"]
        assert shown["px"] >= 32
        assert inside(page) == before + 1
        assert page.eval("location.pathname") == PATH  # answered in place: the camera kept running
        fits(page)
        # The ticket stays in view: it is not sent again (still one check-in, still the OK).
        page.eval("new Promise(r => setTimeout(r, 1500))")
        assert answer(page)["text"].startswith("OK")

        # A second scan of the same ticket, with the page opened afresh: refused.
        page.goto(server.base_url + PATH)
        page.wait_for("!document.querySelector('[data-checkin-scan]').hidden")
        page.eval("document.querySelector('button.checkin-camera').click()")
        page.wait_for("document.querySelector('.checkin-answer') !== null", timeout=30)
        shown = answer(page)
        assert shown["text"].startswith("Already checked in") and "Ann" in shown["text"]
        assert "checkin-already_redeemed" in shown["cls"]
        assert inside(page) == before + 1
        fits(page)


def test_other_pages_keep_the_camera_off(door: Any) -> None:
    import httpx

    from app.headers import PERMISSIONS_POLICY

    server, _ = door
    home = httpx.get(server.base_url + "/events/", timeout=10)
    assert home.headers["permissions-policy"] == PERMISSIONS_POLICY and "camera=()" in PERMISSIONS_POLICY
