"""OAuth handlers take the store as a Litestar dependency (federation/oauth/deps.py), never build one."""

from __future__ import annotations

from pathlib import Path

from tests.forge.test_deps import handlers_building

ROOT = Path(__file__).resolve().parents[3]


def test_oauth_handlers_take_the_store_as_a_dependency() -> None:
    modules = ["controllers.py", "admin.py", "account.py", "sso.py"]
    built = [h for m in modules for h in handlers_building(ROOT / "federation/oauth" / m, {"OAuthStore"})]
    assert built == []
