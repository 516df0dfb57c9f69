"""The reference edge: the .vtc suite under varnishtest, and real varnishd in front of the real app."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from fragments.purge import PurgePayload, send_purge
from tests.conftest import require_tool
from tests.helpers.edge import varnish_in_front
from tests.helpers.server import app_server, free_port

ROOT = Path(__file__).resolve().parents[2]
VTC = sorted((ROOT / "tests" / "edge").glob("*.vtc"))


@pytest.mark.parametrize("vtc", VTC, ids=[p.stem for p in VTC])
def test_vcl_under_varnishtest(vtc: Path, tmp_path: Path) -> None:
    varnishtest = require_tool("varnishtest")
    result = subprocess.run([varnishtest, "-q", "-t", "60", "-D", f"tmpdir={tmp_path}", str(vtc)],
                            capture_output=True, text=True, timeout=120, cwd=vtc.parent)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.e2e
def test_real_varnish_in_front_of_the_app(tmp_path: Path) -> None:
    require_tool("varnishd")
    edge_port = free_port()  # the public origin is the edge's: the app answers only that Host
    env = {"ROSE_ASH_WORKER_IN_PROCESS": "false", "ROSE_ASH_BASE_URL": f"http://127.0.0.1:{edge_port}"}
    with app_server(tmp_path, extra_env=env) as server, \
            varnish_in_front(server.port, tmp_path, port=edge_port) as edge:
        first = httpx.get(edge + "/")
        assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
        assert "surrogate-key" not in first.headers and "set-cookie" not in first.headers
        second = httpx.get(edge + "/", headers={"Cookie": "rose_ash_session=whatever"})
        assert second.headers["x-cache"] == "HIT" and second.content == first.content
        # Browsers are told to revalidate every time; the edge answers that from its copy.
        assert "max-age=0, must-revalidate, s-maxage=" in second.headers["cache-control"]
        again = httpx.get(edge + "/", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.headers["x-cache"] == "HIT"
        nav = httpx.get(edge + "/f/nav")
        assert httpx.get(edge + "/f/nav").headers["x-cache"] == "HIT" and nav.status_code == 200

        # Holes pass every time, with their cookies.
        for _ in range(2):
            hole = httpx.get(edge + "/f/me/account-menu")
            assert hole.headers["x-cache"] == "MISS" and hole.headers["cache-control"] == "private, no-cache"

        server.cli("users", "create", "--username", "walt", "--email", "walt@example.org",
                   "--password", "correct horse battery staple")
        assert "@walt" not in httpx.get(edge + "/").text  # still the cached copy

        # Purge by key (the worker's code path), then the page is a miss with the new member.
        assert anyio_run(send_purge([edge + "/"], PurgePayload(keys=["members"], hard=True))) == 1
        fresh = httpx.get(edge + "/")
        assert fresh.headers["x-cache"] == "MISS" and "@walt" in fresh.text
        assert httpx.get(edge + "/").headers["x-cache"] == "HIT"

        # Soft purge and the app goes down: the edge keeps serving the stale copies.
        assert anyio_run(send_purge([edge + "/"], PurgePayload(keys=["members", "nav"]))) == 1
        server.stop()
        stale = httpx.get(edge + "/", timeout=10)
        assert stale.status_code == 200 and "@walt" in stale.text
        assert stale.headers["x-cache"] == "HIT-STALE"
        # No sleep: wait until the probe has marked the app sick (its grace widens to stale-if-error).
        wait_until_sick(tmp_path / "varnish")
        for path, body in (("/", fresh.content), ("/f/nav", nav.content)):
            served = httpx.get(edge + path, timeout=10)
            assert served.status_code == 200, path
            # From the soft-purged copy (X-Varnish: this request's id and the cached object's).
            assert served.headers["x-cache"] == "HIT-STALE", (path, served.headers)
            assert len(served.headers["x-varnish"].split()) == 2, served.headers["x-varnish"]
            assert int(served.headers["age"]) >= 0 and served.content == body, path
        assert httpx.get(edge + "/account/login", timeout=10).status_code == 503  # never cached


def wait_until_sick(workdir: Path, seconds: float = 30.0) -> None:
    """Poll ``varnishadm backend.list`` (bounded) until the backend's probe says sick."""
    varnishadm = require_tool("varnishadm")
    deadline = time.monotonic() + seconds
    listing = ""
    while time.monotonic() < deadline:
        listing = subprocess.run([varnishadm, "-n", str(workdir), "backend.list"], capture_output=True,
                                 text=True, timeout=10).stdout
        if "sick" in listing.lower():
            return
        time.sleep(0.1)
    raise AssertionError(f"the probe never marked the app sick:\n{listing}")


def anyio_run(coro):  # type: ignore[no-untyped-def]
    import anyio

    async def main():  # type: ignore[no-untyped-def]
        return await coro

    return anyio.run(main)
