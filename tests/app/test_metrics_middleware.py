"""The lean request-metrics middleware records what Litestar's own records: same series, same labels."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from prometheus_client import REGISTRY

from app.metrics import PROMETHEUS, LeanPrometheusMiddleware

pytestmark = pytest.mark.anyio


def _series(prefix: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the prefix's metrics, durations' sums left out (they are timings)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for metric in REGISTRY.collect():
        if not metric.name.startswith(prefix):
            continue
        for s in metric.samples:
            if s.name.endswith(("_sum", "_created")):
                continue
            name = s.name.removeprefix(prefix)
            if name.endswith("_bucket") and s.labels.get("le") != "+Inf":
                continue  # only the +Inf bucket: a count, whatever the timing
            out[name, tuple(sorted(s.labels.items()))] = s.value
    return out


async def _drive(middleware_class: type[PrometheusMiddleware], prefix: str) -> dict[Any, float]:
    seen_in_progress: list[float] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen_in_progress.append(REGISTRY.get_sample_value(
            f"{prefix}_requests_in_progress",
            {"method": scope["method"], "path": scope["path_template"], "status_code": "200", "app_name": "t"}) or 0)
        if scope["path"] == "/boom":
            raise RuntimeError("before any response")
        status = 500 if scope["path"] == "/fail" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    config = PrometheusConfig(app_name="t", prefix=prefix, group_path=True, middleware_class=middleware_class,
                              exclude=[r"^/skip$"])
    define = config.middleware
    app = define.middleware(inner, **define.kwargs)

    async def receive() -> Any:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    for method, path in [("GET", "/a"), ("GET", "/a"), ("POST", "/a"), ("GET", "/fail"), ("GET", "/skip")]:
        await app({"type": "http", "method": method, "path": path, "path_template": path, "headers": [],
                   "query_string": b"", "state": {}, "route_handler": None, "app": None}, receive, send)
    with pytest.raises(RuntimeError):
        await app({"type": "http", "method": "GET", "path": "/boom", "path_template": "/boom", "headers": [],
                   "query_string": b"", "state": {}, "route_handler": None, "app": None}, receive, send)
    assert seen_in_progress == [1, 1, 1, 1, 0, 1]  # /skip is excluded; in flight while the app runs
    return _series(prefix)


async def test_lean_records_the_same_series_as_litestar() -> None:
    reference = await _drive(PrometheusMiddleware, "t_ref_http")
    lean = await _drive(LeanPrometheusMiddleware, "t_lean_http")
    assert lean == reference
    total = {labels: value for (name, labels), value in lean.items() if name == "_requests_total"}
    assert total[(("app_name", "t"), ("method", "GET"), ("path", "/a"), ("status_code", "200"))] == 2
    assert total[(("app_name", "t"), ("method", "GET"), ("path", "/boom"), ("status_code", "200"))] == 1
    errors = {labels for (name, labels), _ in lean.items() if name == "_requests_error_total"}
    assert errors == {(("app_name", "t"), ("method", "GET"), ("path", "/fail"), ("status_code", "500"))}


def test_the_app_uses_the_lean_middleware() -> None:
    assert PROMETHEUS.middleware.middleware is LeanPrometheusMiddleware
