"""Prometheus metrics: the counters and gauges every layer records into, and ``/metrics`` (issue 13 item 5).

The metric objects live here, in the kernel, so fragments, jobs and federation record into them
without importing each other. ``/metrics`` is Litestar's :class:`PrometheusController` (HTTP
request counts and durations come from Litestar's ``PrometheusMiddleware``, per route template)
plus what is computed when scraped: the job queue by kind and state (one ``GROUP BY`` on the jobs
table) and the fragment cache's hit ratio.

Several web processes (``rose-ash run -W N``): ``rose-ash run`` points ``PROMETHEUS_MULTIPROC_DIR``
at ``DATA_DIR/prometheus`` (emptied before the workers start, app/cli.py), prometheus_client
writes every process's values there, and whichever process answers the scrape sums them.

Who may scrape (``ROSE_ASH_METRICS_TOKEN``, ``ROSE_ASH_METRICS_ALLOW``): a request carrying
``Authorization: Bearer <token>`` when a token is set, or one whose peer address is in the allowed
list (default ``127.0.0.1,::1``: a Prometheus on this machine) and that no proxy relayed. Anybody
else gets the site's ordinary 404, so the endpoint is not advertised.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from litestar import Request, get
from litestar.enums import ScopeType
from litestar.exceptions import NotFoundException
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController, PrometheusMiddleware
from litestar.response import Response
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import access
from app.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

FRAGMENT_FALLBACKS = Counter(
    "rose_ash_fragment_fallbacks",
    "Fragments served as their fallback markup (error or inline deadline passed)",
    ["fragment"],
)
FRAGMENT_CACHE = Counter(
    "rose_ash_fragment_cache_lookups",
    "Shared-fragment cache lookups by result (hit or miss)",
    ["result"],
)
JOB_FAILURES = Counter(
    "rose_ash_job_failures",
    "Job attempts that raised, by job kind",
    ["kind"],
)
DELIVERY_FAILURES = Counter(
    "rose_ash_delivery_failures",
    "ActivityPub deliveries that failed, by remote host",
    ["host"],
)
# git fetches answered by forge/smart_http.py's lean path skip the HTTP middleware stack, so the
# rose_ash_http_* series never see them; they are counted here instead.
GIT_FAST_PATH = Counter(
    "rose_ash_git_fast_path_requests",
    "git fetch requests answered by the forge's lean path, by git service step and status",
    ["step", "status"],
)
# Bytes of git fetch request bodies received and not yet admitted to a concurrency slot
# (forge/runtime.py BodyBudget); back at 0 whenever no body is arriving.
GIT_BUFFERED_BODY_BYTES = Gauge(
    "rose_ash_git_buffered_body_bytes",
    "Bytes of git fetch request bodies being received and not yet admitted",
    multiprocess_mode="livesum",
)
# 1 in the process that holds the machine's job-worker lock (app/jobs/worker.py); summed over the
# live processes, so a scrape shows how many in-process workers run here (1, or 0 while none does).
IN_PROCESS_WORKERS = Gauge(
    "rose_ash_in_process_job_workers",
    "In-process job workers running (one per machine)",
    multiprocess_mode="livesum",
)


class LeanPrometheusMiddleware(PrometheusMiddleware):
    """Litestar's request metrics, same names, labels and values, with each route's labelled
    series looked up once rather than on every request.

    Litestar's middleware builds a ``Request``, two label dicts and four ``labels()`` lookups
    (each taking the metric's lock) per request; the label values here depend only on the method,
    the route template and the status, so the children are kept per such key (bounded by the
    routes: unmatched paths never reach a middleware).
    """

    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(app, config)
        # Configured extra labels, exemplars, excluded methods or raw paths: Litestar's own path.
        self._general = bool(config.labels or config.exemplars or config.excluded_http_methods
                             or not config.group_path)
        self._started: dict[tuple[str, str], Any] = {}
        self._finished: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def _labels(self, method: str, path: str, status: int) -> dict[str, str | int | float]:
        # The label names and their order as PrometheusMiddleware._get_default_labels gives them.
        return {"method": method, "path": path, "status_code": status, "app_name": self._config.app_name}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._general:
            await PrometheusMiddleware.__call__(self, scope, receive, send)
            return
        method = scope["method"] if scope["type"] == ScopeType.HTTP else scope["type"]  # type: ignore[typeddict-item]
        path = scope["path_template"]  # type: ignore[typeddict-item]
        in_progress = self._started.get((method, path))
        if in_progress is None:
            labels = self._labels(method, path, 200)
            in_progress = self.requests_in_progress(labels).labels(*labels.values())
            self._started[method, path] = in_progress
        started = time.perf_counter()
        span = [200, 0.0]  # status, duration: until a body is sent, 0 (as Litestar records it)

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                span[0] = message["status"]
            if message["type"] == "http.response.body":
                span[1] = time.perf_counter() - started
            await send(message)

        in_progress.inc()
        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            in_progress.dec()
            status = int(span[0])
            children = self._finished.get((method, path, status))
            if children is None:
                labels = self._labels(method, path, status)
                values = [*labels.values()]
                errors = (self.requests_error_count(labels).labels(*values)
                          if status >= HTTP_500_INTERNAL_SERVER_ERROR else None)
                children = (self.request_count(labels).labels(*values),
                            self.request_time(labels).labels(*values), errors)
                self._finished[method, path, status] = children
            count, duration, errors = children
            if errors is not None:
                errors.inc()
            count.inc()
            duration.observe(span[1])


# Route templates, not paths, as labels (one series per route, not per URL); unmatched paths are
# not counted at all, so a scanner cannot grow the series without bound.
PROMETHEUS = PrometheusConfig(
    app_name="rose_ash", prefix="rose_ash_http", group_path=True, exclude_unhandled_paths=True,
    exclude=[r"^/metrics$", r"^/static/"], middleware_class=LeanPrometheusMiddleware,
)

_PROXY_HEADERS = (b"x-forwarded-for", b"forwarded", b"via", b"x-real-ip")


def may_scrape(request: Request[Any, Any, Any], settings: Settings) -> bool:
    """The bearer token when one is configured, else (or also) the peer address, never relayed."""
    if settings.metrics_token:
        sent = request.headers.get("authorization", "")
        scheme, _, credential = sent.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(),
                                                               settings.metrics_token.encode()):
            return True
    # A same-host proxy (Varnish, nginx) connects from 127.0.0.1 on behalf of anybody: a request
    # it relayed is not this machine's Prometheus, whatever its peer address.
    if any(name in _PROXY_HEADERS for name, _ in request.scope["headers"]):
        return False
    client = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in network for network in allowed_networks(settings.metrics_allow))


def allowed_networks(items: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(item, strict=False) for item in items if item]


async def job_counts(session: AsyncSession) -> dict[tuple[str, str], int]:
    from app.jobs.models import Job

    rows = await session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))
    return {(kind, state): count for kind, state, count in rows.tuples()}


class _ScrapeTime:
    """What is computed per scrape, next to the recorded metrics of every process."""

    def __init__(self, recorded: CollectorRegistry, jobs: dict[tuple[str, str], int]) -> None:
        self.recorded = recorded
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        from app.jobs.models import JOB_STATES
        from app.jobs.registry import registry

        hits = misses = 0.0
        for metric in self.recorded.collect():
            if metric.name == "rose_ash_fragment_cache_lookups":
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        hits += sample.value if sample.labels.get("result") == "hit" else 0.0
                        misses += sample.value if sample.labels.get("result") == "miss" else 0.0
            yield metric
        # Every registered kind in every state, zeros included, so a drained queue reads 0 rather
        # than vanishing from the graph.
        depth = GaugeMetricFamily("rose_ash_jobs", "Jobs in the queue table by kind and state",
                                  labels=["kind", "state"])
        kinds = sorted({*registry, *(kind for kind, _ in self.jobs)})
        for kind in kinds:
            for state in JOB_STATES:
                depth.add_metric([kind, state], self.jobs.get((kind, state), 0))
        yield depth
        ratio = GaugeMetricFamily("rose_ash_fragment_cache_hit_ratio",
                                  "Shared-fragment cache hits over lookups since start (NaN before any)")
        ratio.add_metric([], hits / (hits + misses) if hits + misses else float("nan"))
        yield ratio


def recorded_registry() -> CollectorRegistry:
    """This process's registry, or every process's values when they are written to a directory."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


class MetricsController(PrometheusController):
    """``GET /metrics``: Litestar's exposition, guarded, with the scrape-time gauges added."""

    include_in_schema = False
    # Its own authentication (token or address); no session, no CSRF (GET only), never cached:
    # every scrape reads the values of that moment.
    opt = {"exclude_from_auth": True, "exclude_from_csrf": True, **access.machine()}

    @get(cache_control=None, name="metrics")
    async def get(  # type: ignore[override]
        self, request: Request[Any, Any, Any], settings: Settings, db_session: AsyncSession,
    ) -> Response[bytes]:
        if not may_scrape(request, settings):
            raise NotFoundException()
        jobs = await job_counts(db_session)
        registry = CollectorRegistry()
        registry.register(_ScrapeTime(recorded_registry(), jobs))  # type: ignore[arg-type]
        # The classic text format (0.0.4), which every Prometheus reads; our names need nothing newer.
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4.removesuffix("; charset=utf-8"),
                        headers={"Cache-Control": "no-store"})


def process_exited() -> None:
    """Drop this process's live gauges from the shared directory (a graceful stop)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
