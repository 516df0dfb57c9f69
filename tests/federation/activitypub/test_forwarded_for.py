"""Which proxies' ``X-Forwarded-For`` the real server believes (issue 11 item 12).

``rose-ash run`` (a real uvicorn on 127.0.0.1) trusts no proxy by default, so a client that
rotates ``X-Forwarded-For`` is still counted under the address it connects from and hits the
inbox rate limit. Only when the operator names the proxy (``FORWARDED_ALLOW_IPS``) does the
header choose the address, and then per forwarded client.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.helpers.server import app_server

LIMIT = 3


def _statuses(base_url: str, forwarded_for: list[str]) -> list[int]:
    """Unsigned inbox POSTs (a 400 each: the body is no activity) until the limit answers 429."""
    with httpx.Client(base_url=base_url, timeout=10) as c:
        return [c.post("/inbox", content=b"{}", headers={"Content-Type": "application/activity+json",
                                                          "X-Forwarded-For": xff}).status_code
                for xff in forwarded_for]


ROTATING = [f"203.0.113.{n}" for n in range(1, LIMIT + 3)]


def test_a_spoofed_forwarded_for_does_not_change_the_rate_limit_key(
        tmp_path: Path, server_database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)  # the default, whatever the caller's shell has
    env = {"ROSE_ASH_FEDERATION_INBOX_RATE_LIMIT": str(LIMIT)}
    with app_server(tmp_path, name="direct", database_url=server_database_url, extra_env=env) as server:
        assert "FORWARDED_ALLOW_IPS" not in server.env
        assert _statuses(server.base_url, ROTATING) == [400] * LIMIT + [429, 429]


def test_a_named_proxy_is_believed(tmp_path: Path, server_database_url: str | None) -> None:
    """The contrast: with 127.0.0.1 named as the proxy, each forwarded client has its own count
    (so the test above shows the default, not a header the server ignores anyway)."""
    env = {"ROSE_ASH_FEDERATION_INBOX_RATE_LIMIT": str(LIMIT), "FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with app_server(tmp_path, name="proxied", database_url=server_database_url, extra_env=env) as server:
        assert _statuses(server.base_url, ROTATING) == [400] * len(ROTATING)
        # one forwarded client is still limited; the proxy's own later hop is skipped, as Varnish appends it
        same = ["198.51.100.7, 127.0.0.1"] * (LIMIT + 1)
        assert _statuses(server.base_url, same) == [400] * LIMIT + [429]
