"""Expired session files are deleted by a recurring kernel job (a file store only drops an entry
when it is read again, and most sessions never are); live ones stay."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs import JobContext, registry
from app.settings import Settings
from app.stores import SweepSessions, session_files, sweep_sessions

pytestmark = pytest.mark.anyio


def make_settings(tmp_path: Path, redis_url: str | None = None) -> Settings:
    return Settings.from_env({}, data_dir=tmp_path, redis_url=redis_url,
                             secret_key="test-secret-key-not-for-production-0123456789")


async def test_expired_sessions_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = session_files(settings)
    await store.set("127.0.0.1:8000/gone", b"old", expires_in=1)
    await store.set("127.0.0.1:8000/kept", b"live", expires_in=3600)
    await anyio.sleep(1.1)  # past the first entry's expiry (FileStore compares with the wall clock)
    assert len(list((tmp_path / "sessions").iterdir())) == 2
    ctx = JobContext(sessionmaker=async_sessionmaker[AsyncSession](), settings=settings)
    await sweep_sessions(ctx, SweepSessions())
    assert len(list((tmp_path / "sessions").iterdir())) == 1
    assert await store.get("127.0.0.1:8000/kept") == b"live"
    assert await store.get("127.0.0.1:8000/gone") is None


async def test_with_redis_the_sweep_leaves_files_alone(tmp_path: Path) -> None:
    # Redis expires its own keys; a stray directory is not the session store then.
    settings = make_settings(tmp_path, "redis://127.0.0.1:6379/0")
    store = session_files(settings)
    await store.set("x", b"old", expires_in=1)
    await anyio.sleep(1.1)
    await sweep_sessions(JobContext(sessionmaker=async_sessionmaker[AsyncSession](), settings=settings),
                         SweepSessions())
    assert len(list((tmp_path / "sessions").iterdir())) == 1


def test_the_sweep_is_a_declared_recurring_job() -> None:
    assert "app:sweep-sessions" in {s.unique_key for s in registry.schedules}


async def test_the_sweep_before_any_session_exists_does_nothing(tmp_path: Path) -> None:
    # `rose-ash worker` may start before any web process made the directory.
    settings = make_settings(tmp_path)
    await sweep_sessions(JobContext(sessionmaker=async_sessionmaker[AsyncSession](), settings=settings),
                         SweepSessions())
    assert not (tmp_path / "sessions").exists()
