"""The import-layer contract names every module of ``app/`` (a new one must pick its layer)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_app_module_is_in_a_layer() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    named = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    modules = {f"app.{p.stem}" for p in (ROOT / "app").glob("*.py") if p.stem != "__init__"}
    modules |= {f"app.{p.parent.name}" for p in (ROOT / "app").glob("*/__init__.py")}
    assert modules - named == set(), "add these to a layer in pyproject.toml [tool.importlinter]"


def test_importing_a_domain_package_builds_nothing() -> None:
    """``__init__.py`` declares the domain; routers and web modules load when an app is built."""
    import subprocess
    import sys

    probe = ("import sys, app.models; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('domains', 'forge', 'federation', 'fragments') and not m.endswith(('models', 'keys'))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(sorted([
        # domains.account.newsletters: only its package docstring (its models module is the one imported).
        "domains", "domains.account", "domains.account.newsletters", "domains.blog", "domains.cart",
        "domains.events", "domains.market", "domains.payments", "federation", "federation.activitypub",
        "federation.mastodon", "federation.oauth", "federation.social", "forge", "fragments"]))
