"""What the browser (Chromium over CDP) tests share: the server's database for each leg, a form
submitted as a person would, and a full-page screenshot that also proves nothing scrolls sideways."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The server runs on SQLite, and on a fresh PostgreSQL database too when one is configured.
DB_KINDS = ["sqlite", *(["postgresql"] if os.environ.get("ROSE_ASH_TEST_DATABASE_URL") else [])]


@contextmanager
def server_database(kind: str) -> Iterator[str | None]:
    """The database URL a test server gets: None (its embedded SQLite) or a throw-away PostgreSQL one."""
    if kind == "sqlite":
        yield None
        return
    from tests.helpers.pg import pg_database

    with pg_database("e2e") as url:
        yield url


def submit(page: Any, fields: dict[str, str], button: str, condition: str) -> None:
    """Fill a form and press its button: a full-page POST (the marker proves the navigation)."""
    for selector, value in fields.items():
        page.eval(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")
    page.eval("window.__old = true")
    page.eval(f"document.querySelector({json.dumps(button)}).click()")
    page.wait_for(f"window.__old === undefined && document.readyState === 'complete' && ({condition})")


def screenshot_at(page: Any, path: Path, width: int, *, mobile: bool) -> None:
    """Save a full-page PNG at ``width`` CSS pixels; the page must not scroll sideways. With
    ``ROSE_ASH_SCREENSHOTS`` set, a copy goes to that folder (tmp_path is gone after the run)."""
    page.call("Emulation.setDeviceMetricsOverride", width=width, height=800, deviceScaleFactor=1, mobile=mobile)
    try:
        page.wait_for(f"matchMedia('(width: {width}px)').matches")
        overflow = page.eval("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert overflow[0] <= overflow[1], f"horizontal scroll at {width}px: {overflow}"
        size = page.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        if keep := os.environ.get("ROSE_ASH_SCREENSHOTS"):
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(keep) / path.name)
    finally:
        page.call("Emulation.clearDeviceMetricsOverride")
