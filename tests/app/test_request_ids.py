"""Request ids (issue 13 item 5): every log line of a request, and of the job it enqueued, carries
the same id; a sane incoming ``X-Request-ID`` is kept and echoed, anything else replaced."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import msgspec
import pytest
from litestar import get
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import access, create_app
from app.db import make_sessionmaker
from app.jobs import JobContext, JobRegistry, Worker, enqueue
from app.logs import JSONFormatter, RequestIdFilter
from app.settings import Settings

pytestmark = pytest.mark.anyio

jobs = JobRegistry()
say = logging.getLogger("rose_ash.test.request_ids")


class Note(msgspec.Struct):
    text: str


@jobs.handler("test.request-ids")
async def note_job(ctx: JobContext, payload: Note) -> None:
    say.info("job says %s", payload.text)


@get("/test/enqueue-note", opt={"exclude_from_auth": True, **access.public()})
async def enqueue_note(db_session: AsyncSession) -> dict[str, str]:
    say.info("request enqueues a note")
    await enqueue(db_session, "test.request-ids", Note(text="hello"), jobs=jobs)
    return {"ok": "yes"}


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The JSON lines the app writes, as its handler formats them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(RequestIdFilter())
    for name in ("rose_ash", "app.jobs"):
        logging.getLogger(name).addHandler(handler)
    try:
        yield out
    finally:
        for name in ("rose_ash", "app.jobs"):
            logging.getLogger(name).removeHandler(handler)


def entries(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


async def test_request_and_its_job_share_the_id(settings: Settings, engine: AsyncEngine,
                                                log_lines: io.StringIO) -> None:
    from litestar.testing import AsyncTestClient

    app = create_app(settings)
    app.register(enqueue_note)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        response = await client.get("/test/enqueue-note")
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        kept = await client.get("/healthz", headers={"X-Request-ID": "proxy-id-0123456789"})
        assert kept.headers["x-request-id"] == "proxy-id-0123456789"
        for insane in ("short", "with space in it 123", "x" * 65, "quote\"0123456789"):
            replaced = await client.get("/healthz", headers={"X-Request-ID": insane})
            assert replaced.headers["x-request-id"] != insane
            assert len(replaced.headers["x-request-id"]) == 16

    # The job runs later, in the worker, outside any request: it still carries the id.
    sm = make_sessionmaker(engine, settings)
    assert await Worker(sm, registry=jobs, settings=settings).run_once() == 1

    lines = entries(log_lines)
    said = {str(e["msg"]): e.get("request_id") for e in lines if e["logger"] == say.name}
    assert said["request enqueues a note"] == request_id
    assert said["job says hello"] == request_id
    access_line = next(e for e in lines if e["logger"] == "rose_ash.access" and e.get("path") == "/test/enqueue-note")
    assert access_line["request_id"] == request_id
    # Lines of other requests do not carry it.
    assert any(e.get("request_id") == "proxy-id-0123456789" for e in lines)
