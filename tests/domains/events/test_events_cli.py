"""``rose-ash events create``: a real process on a migrated database prints the event's URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
ROSE_ASH = str(Path(sys.executable).with_name("rose-ash"))


@pytest.mark.e2e
def test_events_create_prints_the_public_url_last(tmp_path: Path, server_database_url: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "ROSE_ASH_SECRET_KEY": "cli-test-secret-0123456789",
                "ROSE_ASH_BASE_URL": "http://127.0.0.1:8000"})
    if server_database_url:
        env["ROSE_ASH_DATABASE_URL"] = server_database_url

    def rose_ash(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ROSE_ASH, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    assert rose_ash("database", "upgrade", "--no-prompt").returncode == 0
    made = rose_ash("events", "create", "--title", "Repair café", "--start", "2027-01-12T18:00",
                    "--end", "2027-01-12T20:30", "--tz", "Europe/London", "--rrule", "FREQ=WEEKLY;COUNT=8")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().splitlines()[-1] == "http://127.0.0.1:8000/events/repair-cafe"
    backwards = rose_ash("events", "create", "--title", "Oops", "--start", "2027-01-12T18:00",
                         "--end", "2027-01-12T17:00", "--tz", "Europe/London")
    assert backwards.returncode == 1 and "ends before it starts" in backwards.stderr
    zone = rose_ash("events", "create", "--title", "Oops", "--start", "2027-01-12T18:00",
                    "--end", "2027-01-12T19:00", "--tz", "Nowhere/Land")
    assert zone.returncode == 1 and "not a time zone we know" in zone.stderr
    offset = rose_ash("events", "create", "--title", "Oops", "--start", "2027-01-12T18:00+01:00",
                      "--end", "2027-01-12T19:00", "--tz", "Europe/London")
    assert offset.returncode == 1 and "without an offset" in offset.stderr
    priced = rose_ash("events", "create", "--title", "Oops", "--start", "2027-01-12T18:00",
                      "--end", "2027-01-12T19:00", "--tz", "Europe/London", "--capacity", "12")
    assert priced.returncode == 1 and "not available yet" in priced.stderr
