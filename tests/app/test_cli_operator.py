"""``rose-ash`` as an operator meets it: an unmigrated database, and the origin beside ``make run``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from app.cli import public_origin
from tests.helpers.server import REPO_ROOT, ROSE_ASH


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    # A fresh SQLite database under data_dir, whatever the suite's own settings are.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_") and k not in ("HOST", "PORT")}
    env.update({"ROSE_ASH_DATA_DIR": str(data_dir), "ROSE_ASH_SECRET_KEY": "operator-test-" + "s" * 32, **extra})
    return env


def _rose_ash(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROSE_ASH, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [
    ("users", "create", "--username", "ann", "--email", "ann@example.org", "--password", "a long enough passphrase"),
    ("worker",),
])
def test_a_command_on_an_unmigrated_database_says_so_in_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    env = _env(tmp_path / "data")
    done = _rose_ash(env, *command)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "error: the database is not migrated: run `rose-ash database upgrade`"], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_member_made_beside_make_run_gets_key_ids_on_its_port(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = _env(data_dir, PORT="9000")
    upgrade = _rose_ash(env, "database", "upgrade", "--no-prompt")
    assert upgrade.returncode == 0, upgrade.stderr
    created = _rose_ash(env, "users", "create", "--username", "ann", "--email", "ann@example.org",
                        "--password", "a long enough passphrase")
    assert created.returncode == 0, created.stderr
    with sqlite3.connect(data_dir / "rose-ash.sqlite3") as db:
        stored = [row[0] for row in db.execute("select key_id from federation_keypair where owner_type = 'user'")]
    # Stored without an origin (federation/keys.py), so the id follows BASE_URL wherever it is served.
    assert stored == ["/@ann#main-key"]

    from litestar.testing import TestClient

    from app.factory import create_app
    from app.settings import Settings

    settings = Settings.from_env({**env, "ROSE_ASH_BASE_URL": public_origin(env)})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:9000") as client:
        actor = client.get("/@ann", headers={"Accept": "application/activity+json"})
    assert actor.status_code == 200, actor.text
    assert actor.json()["publicKey"]["id"] == "http://127.0.0.1:9000/@ann#main-key"


def test_the_public_origin_follows_the_makefile() -> None:
    assert public_origin({}) == "http://127.0.0.1:8000"
    assert public_origin({"PORT": "9000"}) == "http://127.0.0.1:9000"
    assert public_origin({"HOST": "0.0.0.0", "PORT": "9000"}) == "http://0.0.0.0:9000"
    assert public_origin({"PORT": "9000", "ROSE_ASH_BASE_URL": "https://coop.example"}) == "https://coop.example"
