"""Purge jobs: written in the caller's transaction, sent as xkey-soft (or xkey) to each edge."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.jobs import DONE, QUEUED, Job, Worker
from app.settings import Settings
from domains.account.models import User
from fragments.purge import PURGE_KIND, PurgePayload, emit_purge

pytestmark = pytest.mark.anyio


class StubEdge:
    """A stand-in for Varnish on 127.0.0.1 that records PURGE requests."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        edge = self

        class Handler(BaseHTTPRequestHandler):
            def do_PURGE(self) -> None:
                edge.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(edge.status, "Soft 1" if edge.status == 200 else "Nope")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self) -> StubEdge:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def edges() -> Iterator[tuple[StubEdge, StubEdge]]:
    with StubEdge() as one, StubEdge() as two:
        yield one, two


@pytest.fixture
def sm(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def purge_jobs(sm: async_sessionmaker[AsyncSession]) -> list[Job]:
    async with sm() as s:
        return list((await s.scalars(select(Job).where(Job.kind == PURGE_KIND))).all())


def _user(name: str) -> User:
    return User(username=name, email=f"{name}@example.org", password_hash="x")


async def test_purge_is_written_in_the_same_transaction(sm) -> None:  # type: ignore[no-untyped-def]
    async with sm() as s:
        s.add(_user("zed"))
        await emit_purge(s, ["members", "nav", "members", " "])
        await s.rollback()
    assert await purge_jobs(sm) == []
    async with sm() as s:
        assert (await s.scalar(select(func.count()).select_from(User))) == 0

    async with sm() as s:
        s.add(_user("zed"))
        job = await emit_purge(s, ["nav", "members"])
        assert job is not None
        await s.commit()
    jobs = await purge_jobs(sm)
    assert len(jobs) == 1 and jobs[0].state == QUEUED
    assert jobs[0].payload == {"keys": ["members", "nav"], "hard": False}
    async with sm() as s:
        assert await emit_purge(s, []) is None
        with pytest.raises(ValueError):
            await emit_purge(s, ["two words"])


async def test_worker_sends_xkey_soft_to_every_edge(sm, edges, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    one, two = edges
    configured = Settings(**{**{f: getattr(settings, f) for f in settings.__struct_fields__},
                             "edge_purge_urls": (one.url, two.url)})
    async with sm() as s:
        await emit_purge(s, ["post:1", "posts", "tag:news"])
        await emit_purge(s, ["post:2"], hard=True)
        await s.commit()
    worker = Worker(sm, settings=configured)
    assert await worker.run_once() == 2
    for edge in (one, two):
        soft = [r for r in edge.requests if "xkey-soft" in r[2]]
        hard = [r for r in edge.requests if "xkey" in r[2]]
        assert soft and soft[0][0] == "PURGE" and soft[0][1] == "/"
        assert soft[0][2]["xkey-soft"] == "post:1 posts tag:news"
        assert hard and hard[0][2]["xkey"] == "post:2" and "xkey-soft" not in hard[0][2]
    assert {j.state for j in await purge_jobs(sm)} == {DONE}


async def test_no_edge_configured_sends_nothing_and_finishes(sm, edges, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    async with sm() as s:
        await emit_purge(s, ["nav"])
        await s.commit()
    assert await Worker(sm, settings=settings).run_once() == 1
    assert edges[0].requests == [] and edges[1].requests == []
    assert [j.state for j in await purge_jobs(sm)] == [DONE]


async def test_refusing_edge_makes_the_job_retry(sm, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    with StubEdge(status=403) as edge:
        configured = Settings(**{**{f: getattr(settings, f) for f in settings.__struct_fields__},
                                 "edge_purge_urls": (edge.url,)})
        async with sm() as s:
            await emit_purge(s, ["nav"])
            await s.commit()
        await Worker(sm, settings=configured).run_once()
        assert edge.requests
    (job,) = await purge_jobs(sm)
    assert job.state == QUEUED and job.attempts == 1
    assert "HTTP 403" in (job.last_error or "")


def test_payload_shape() -> None:
    assert PurgePayload(keys=["a"]).hard is False
