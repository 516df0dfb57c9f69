"""``rose-ash blog import-ghost``, ``grant-author`` and ``grant-editor`` as an operator runs them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.domains.blog.conftest import FIXTURES
from tests.helpers.server import REPO_ROOT, ROSE_ASH

pytestmark = pytest.mark.e2e


def rose_ash(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROSE_ASH, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_import_ghost_command(tmp_path: Path, server_database_url: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "ROSE_ASH_SECRET_KEY": "cli-test-secret-0123456789",
                "ROSE_ASH_GHOST_URL": "https://old-ghost.example"})
    if server_database_url:
        env["ROSE_ASH_DATABASE_URL"] = server_database_url
    assert rose_ash(env, "database", "upgrade", "--no-prompt").returncode == 0
    export = str(FIXTURES / "ghost-6-export.json")

    dry = rose_ash(env, "blog", "import-ghost", export, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "posts: 4 created, 0 updated, 0 unchanged" in dry.stdout and "dry run" in dry.stdout
    assert "skipped:" in dry.stdout and "lexical" in dry.stdout

    first = rose_ash(env, "blog", "import-ghost", export)
    assert first.returncode == 0, first.stderr
    assert "posts: 4 created" in first.stdout and "import committed" in first.stdout
    second = rose_ash(env, "blog", "import-ghost", export)
    assert "posts: 0 created, 0 updated, 4 unchanged" in second.stdout
    assert "pages: 0 created, 0 updated, 1 unchanged" in second.stdout

    out = tmp_path / "export.json"
    exported = rose_ash(env, "blog", "export-ghost", str(out))
    assert exported.returncode == 0 and "exported 5 posts and pages" in exported.stdout, exported.stderr
    from domains.blog.importer import decode_export

    data, version = decode_export(out.read_bytes())
    assert version == "6.0.0" and {p.slug for p in data.posts} == {"welcome", "hostile", "half-written",
                                                                    "coming-soon", "about"}

    broken = tmp_path / "broken.json"
    broken.write_bytes((FIXTURES / "ghost-6-export.json").read_bytes()[:500])
    failed = rose_ash(env, "blog", "import-ghost", str(broken))
    assert failed.returncode == 1 and "not valid JSON" in failed.stderr and "nothing was imported" in failed.stderr

    assert "granted the author role to ghost-writer" in rose_ash(env, "blog", "grant-author", "ghost-writer").stdout
    assert rose_ash(env, "blog", "grant-author", "nobody").returncode == 1
    assert "granted the editor role to ghost-writer" in rose_ash(env, "blog", "grant-editor", "ghost-writer").stdout
    revoked = rose_ash(env, "blog", "grant-editor", "ghost-writer", "--revoke")
    assert "removed the editor role from ghost-writer" in revoked.stdout, revoked.stderr
    assert rose_ash(env, "blog", "grant-editor", "nobody").returncode == 1
