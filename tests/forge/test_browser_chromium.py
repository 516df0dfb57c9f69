"""The code browser in headless Chromium: a file page with a line range (marked by the small script)
and a commit page, at 1280 and 390 CSS pixels, without sideways scrolling; screenshots are kept in
the test's directory (and in $ROSE_ASH_SCREENSHOTS if set) for a person to look at."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.forge.browse_fixtures import Fixture, build_fixture
from tests.helpers.cdp import chromium
from tests.helpers.server import AppServer, app_server


@pytest.fixture
def server(tmp_path: Path, server_database_url: str | None) -> Iterator[AppServer]:
    with app_server(tmp_path, database_url=server_database_url) as running:
        yield running


def screenshot(page: Any, path: Path, width: int, *, mobile: bool) -> None:
    page.call("Emulation.setDeviceMetricsOverride", width=width, height=800, deviceScaleFactor=1, mobile=mobile)
    try:
        page.wait_for(f"matchMedia('(width: {width}px)').matches")
        page.eval("window.scrollTo(0, 0)")  # a full-page capture of a scrolled page shows the sticky header mid-page
        overflow = page.eval("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert overflow[0] <= overflow[1], f"horizontal scroll at {width}px: {overflow}"
        size = page.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": min(size["height"], 4000), "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        keep = os.environ.get("ROSE_ASH_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(keep) / path.name)
    finally:
        page.call("Emulation.clearDeviceMetricsOverride")


def test_file_and_commit_pages_in_chromium(tmp_path: Path, browser_binary: str, server: AppServer) -> None:
    fx: Fixture = build_fixture(tmp_path / "fixture")
    server.create_user("alice", "correct horse battery staple")
    created = server.cli("tokens", "create", "--username", "alice", "--scope", "repo:write")
    token = created.stdout.strip().splitlines()[-1]
    made = httpx.post(f"{server.base_url}/api/v1/user/repos", json={"name": "demo"},
                      headers={"Authorization": f"token {token}"}, timeout=30)
    assert made.status_code == 201, made.text
    remote = server.base_url.replace("http://", f"http://alice:{token}@") + "/forge/alice/demo.git"
    for what in ("--all", "--tags"):
        subprocess.run(["git", "push", "-q", remote, what], cwd=fx.path, check=True, capture_output=True)
    base = f"{server.base_url}/forge/alice/demo"
    shots = tmp_path / "screenshots"
    with chromium(tmp_path, browser_binary) as page:
        page.goto(f"{base}/src/branch/main/src/app.py#L5-L8")
        page.wait_for("document.querySelectorAll('tr.line-selected').length === 4")
        assert page.eval("[...document.querySelectorAll('tr.line-selected')].map(r => r.id).join()") == "L5,L6,L7,L8"
        assert page.eval("document.querySelector('#L1 .k').textContent") == "def"
        for width, mobile in ((1280, False), (390, True)):
            screenshot(page, shots / f"forge-file-{width}.png", width, mobile=mobile)
        page.goto(f"{base}/commit/{fx.rename_commit}")
        page.wait_for("document.querySelector('.diff-file') !== null")
        assert "old name.txt → new name.txt" in page.eval("document.querySelector('.diff-file .file-name').textContent")
        for width, mobile in ((1280, False), (390, True)):
            screenshot(page, shots / f"forge-commit-{width}.png", width, mobile=mobile)
        page.goto(f"{base}/commit/{fx.first_commit}")
        page.wait_for("document.querySelector('tr.diff-add') !== null")
        for width, mobile in ((1280, False), (390, True)):
            screenshot(page, shots / f"forge-commit-first-{width}.png", width, mobile=mobile)
        page.goto(f"{base}/src/branch/main")
        page.wait_for("document.querySelector('table.tree') !== null")
        # With JavaScript a directory opens in place (htmx swaps #browse-main; the page stays).
        page.wait_for("typeof htmx !== 'undefined'")
        page.eval("window.stayed = true; document.querySelector('.tree-name a[href$=\"/main/src\"]').click()")
        page.wait_for("location.pathname.endsWith('/src/branch/main/src') && "
                      "document.querySelector('.tree-name a[href$=\"/src/app.py\"]') !== null")
        assert page.eval("window.stayed === true")
        page.goto(f"{base}/src/branch/main")
        page.wait_for("document.querySelector('table.tree') !== null")
        for width, mobile in ((1280, False), (390, True)):
            screenshot(page, shots / f"forge-tree-{width}.png", width, mobile=mobile)
    assert sorted(p.name for p in shots.iterdir()) == sorted(
        f"forge-{k}-{w}.png" for k in ("file", "commit", "commit-first", "tree") for w in (1280, 390))
