"""``/metrics`` (issue 13 item 5): Prometheus text after real activity, refused like an absent page
to anybody the settings do not name, and job failures counted by the worker."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import msgspec
import pytest
from litestar import Request
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from app import create_app
from app.db import make_sessionmaker
from app.jobs import JobContext, JobRegistry, Worker, enqueue
from app.metrics import may_scrape
from app.settings import Settings
from domains.blog.schemas import PublishScheduled
from domains.blog.services import PUBLISH_SCHEDULED

pytestmark = pytest.mark.anyio

TOKEN = "scrape-token-0123456789"


def sample(text: str, line_start: str) -> float:
    """The value of the first exposition line starting with ``line_start``."""
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start!r} in:\n{text[:3000]}")


async def test_scrape_after_real_activity_and_refusal(settings: Settings, engine: AsyncEngine) -> None:
    from litestar.testing import AsyncTestClient

    app = create_app(msgspec.structs.replace(settings, metrics_token=TOKEN))
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
        sm = make_sessionmaker(engine, settings)
        async with sm() as session, session.begin():
            await enqueue(session, PUBLISH_SCHEDULED,
                          PublishScheduled(post_id=uuid4(), scheduled_for=datetime.now(UTC)))

        scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert scraped.headers["cache-control"] == "no-store"
        text = scraped.text
        # Litestar's middleware, per route template.
        assert sample(text, 'rose_ash_http_requests_total{app_name="rose_ash",method="GET",path="/healthz",'
                            'status_code="200"}') >= 3
        # The queue depth, read from the jobs table at scrape time, zeros included.
        assert sample(text, f'rose_ash_jobs{{kind="{PUBLISH_SCHEDULED}",state="queued"}}') == 1
        assert sample(text, f'rose_ash_jobs{{kind="{PUBLISH_SCHEDULED}",state="dead"}}') == 0
        for name in ("rose_ash_job_failures_total", "rose_ash_delivery_failures_total",
                     "rose_ash_fragment_fallbacks_total", "rose_ash_fragment_cache_hit_ratio"):
            assert f"# TYPE {name.removesuffix('_total')}" in text, name

        # Nobody else: no token, a wrong one, another scheme. Each looks like an absent page.
        absent = await client.get("/no-such-page-here")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 404 == absent.status_code
            assert refused.headers["content-type"] == absent.headers["content-type"]
            assert "rose_ash" not in refused.text


def request_from(client: str, headers: list[tuple[bytes, bytes]] | None = None) -> Request[object, object, object]:
    return Request({"type": "http", "method": "GET", "path": "/metrics", "headers": headers or [],
                    "client": (client, 40000), "query_string": b"", "app": None})  # type: ignore[typeddict-item]


def test_who_may_scrape_by_address(settings: Settings) -> None:
    default = settings  # 127.0.0.1 and ::1 only, no token
    assert may_scrape(request_from("127.0.0.1"), default)
    assert may_scrape(request_from("::1"), default)
    assert not may_scrape(request_from("10.1.2.3"), default)
    assert not may_scrape(request_from("testclient"), default)
    # A same-host proxy relays anybody from 127.0.0.1: relayed requests are not trusted by address.
    assert not may_scrape(request_from("127.0.0.1", [(b"x-forwarded-for", b"203.0.113.9")]), default)
    assert not may_scrape(request_from("127.0.0.1", [(b"via", b"1.1 varnish")]), default)
    network = Settings.from_env({"ROSE_ASH_METRICS_ALLOW": "10.0.0.0/8"}, data_dir=settings.data_dir,
                                secret_key="x" * 40)
    assert may_scrape(request_from("10.1.2.3"), network)
    assert not may_scrape(request_from("127.0.0.1"), network)
    with pytest.raises(ValueError, match="METRICS_ALLOW"):
        Settings.from_env({"ROSE_ASH_METRICS_ALLOW": "10.0.0.0/33"}, data_dir=settings.data_dir, secret_key="x" * 40)


class Nothing(msgspec.Struct):
    pass


async def test_a_failing_job_increments_job_failures(settings: Settings, engine: AsyncEngine) -> None:
    from litestar.testing import AsyncTestClient

    jobs = JobRegistry()

    @jobs.handler("test.metrics-fails", max_attempts=3)
    async def fails(ctx: JobContext, payload: Nothing) -> None:
        raise RuntimeError("this job always fails")

    before = REGISTRY.get_sample_value("rose_ash_job_failures_total", {"kind": "test.metrics-fails"}) or 0.0
    sm = make_sessionmaker(engine, settings)
    async with sm() as session, session.begin():
        await enqueue(session, "test.metrics-fails", Nothing(), jobs=jobs)
    assert await Worker(sm, registry=jobs, settings=settings).run_once() == 1

    app = create_app(msgspec.structs.replace(settings, metrics_token=TOKEN))
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        text = (await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text
    assert sample(text, 'rose_ash_job_failures_total{kind="test.metrics-fails"}') == before + 1
    assert sample(text, 'rose_ash_jobs{kind="test.metrics-fails",state="queued"}') == 1  # to retry


def test_a_failed_delivery_counts_for_its_host() -> None:
    from federation.activitypub.delivery import Outcome, _record
    from federation.activitypub.models import Host

    def count() -> float:
        return REGISTRY.get_sample_value("rose_ash_delivery_failures_total", {"host": "peer.example"}) or 0.0

    host = Host(host="peer.example", consecutive_failures=0)
    before = count()
    _record(None, host, Outcome(status=202), last=False, scale=1.0)
    assert count() == before  # a success is no failure
    _record(None, host, Outcome(status=503, error="HTTP 503"), last=False, scale=1.0)
    _record(None, host, Outcome(error="ConnectError: refused"), last=True, scale=1.0)
    assert count() == before + 2
