"""The edge's public URL shapes, derived from the route table (design/fragments.md §2, §10).

The reference VCL strips ``Cookie`` and ``Authorization`` and caches only where a URL has the
shape of a public route: a GET route whose class is ``PUBLIC``, ``SHARED_FRAGMENT`` or
``EMBED``, or a static file. Everything else (``/blog/admin/…``, ``/f/me/…``, accounts,
APIs, git) passes to the app with its cookies. A private route whose shape a public one
also matches, and that the router prefers (``/blog/admin`` beside ``/blog/{slug}``), is
listed first, so it passes too.

``python -m fragments.edge > deploy/varnish/public-routes.vcl`` writes the VCL subroutine;
a test fails when the committed file no longer matches the routes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from litestar import Litestar
from litestar.routes import HTTPRoute

from app.caching import CACHEABLE, POLICY_OPT_KEY

__all__ = ["STATIC_SHAPES", "RouteShape", "render_vcl", "route_shapes", "sample_url", "shape_regex"]

# The static files router declares no route class; its files are public and immutable.
STATIC_SHAPES = ("/static/{file_path:path}",)
_PARAM = re.compile(r"^\{(\w+):(\w+)\}$")
_SAMPLES = {"uuid": "00000000-0000-4000-8000-000000000000", "int": "1", "path": "css/site.css"}
HEADER = "X-Rose-Ash-Route"


@dataclass(frozen=True)
class RouteShape:
    path: str
    public: bool

    @property
    def segments(self) -> list[str]:
        return [s for s in self.path.split("/") if s]


def _is_param(segment: str) -> bool:
    return _PARAM.match(segment) is not None


def _is_path_param(segment: str) -> bool:
    match = _PARAM.match(segment)
    return match is not None and match.group(2) == "path"


def route_shapes(app: Litestar) -> list[RouteShape]:
    """Every path with a GET handler, public or not (HEAD and other methods are not cached)."""
    public: set[str] = set(STATIC_SHAPES)
    private: set[str] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if "GET" not in handler.http_methods:
                continue
            if handler.opt.get(POLICY_OPT_KEY) in CACHEABLE or route.path in STATIC_SHAPES:
                public.add(route.path)
            else:
                private.add(route.path)
    # A path whose GET is public for one handler and not for another stays private.
    return [RouteShape(p, True) for p in sorted(public - private)] + [RouteShape(p, False) for p in sorted(private)]


def shape_regex(path: str) -> str:
    """A PCRE for ``req.url`` (path plus optional query) matching the route's URLs."""
    parts = []
    for segment in (s for s in path.split("/") if s):
        if _is_path_param(segment):
            parts.append("(/[^?]*)?")
        elif _is_param(segment):
            parts.append("/[^/?]+")
        else:
            parts.append("/" + re.escape(segment).replace('"', r"\x22"))
    return "^" + "".join(parts) + "/?([?].*)?$" if parts else "^/([?].*)?$"


def _overlaps_and_wins(private: RouteShape, public: RouteShape) -> bool:
    """Some URL matches both, and the router would pick ``private`` for it.

    Litestar's router walks segment by segment and prefers a static segment to a parameter,
    and any segment to a ``path`` parameter; the first segment where the two differ decides.
    """
    a, b = private.segments, public.segments
    winner: bool | None = None
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b):
            return False  # different lengths and no path parameter before the end: no common URL
        x, y = a[i], b[i]
        if _is_path_param(x) or _is_path_param(y):
            if winner is None:
                winner = not _is_path_param(x) or _is_path_param(y)
            return winner
        if not _is_param(x) and not _is_param(y):
            if x != y:
                return False
        elif _is_param(x) != _is_param(y) and winner is None:
            winner = not _is_param(x)
    return True if winner is None else winner


def shadowing_private(shapes: Iterable[RouteShape]) -> list[RouteShape]:
    shapes = list(shapes)
    publics = [s for s in shapes if s.public]
    return [s for s in shapes if not s.public and any(_overlaps_and_wins(s, p) for p in publics)]


def sample_url(path: str) -> str:
    out = []
    for segment in (s for s in path.split("/") if s):
        match = _PARAM.match(segment)
        out.append(_SAMPLES.get(match.group(2), "sample") if match else segment)
    return "/" + "/".join(out)


def _if(shapes: Sequence[RouteShape]) -> list[str]:
    conditions = [f'req.url ~ "{shape_regex(shape.path)}"' for shape in shapes]
    lines = ["  if ("]
    for n, (shape, condition) in enumerate(zip(shapes, conditions, strict=True)):
        joiner = "" if n == len(conditions) - 1 else " ||"
        lines.append(f"      {condition}{joiner}  # {shape.path}")
    lines.append("  ) {")
    return lines


def render_vcl(app: Litestar) -> str:
    shapes = route_shapes(app)
    private = shadowing_private(shapes)
    public = [s for s in shapes if s.public]
    lines = [
        "# GENERATED by `python -m fragments.edge` from the app's route table: do not edit.",
        f"# Sets req.http.{HEADER} = \"public\" on URLs of public GET routes (cookies stripped, cached);",
        "# private routes the router prefers over a public shape are matched first and pass.",
        "sub rose_ash_route_class {",
        f"  unset req.http.{HEADER};",
    ]
    if private:
        lines += [*_if(private), "    return;", "  }"]
    lines += [*_if(public), f'    set req.http.{HEADER} = "public";', "  }", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    import tempfile
    from pathlib import Path

    from app import create_app
    from app.settings import Settings

    with tempfile.TemporaryDirectory() as data_dir:  # only the route table is read
        settings = Settings.from_env({}, data_dir=Path(data_dir), secret_key="route-table-only-" + "x" * 32)
        sys.stdout.write(render_vcl(create_app(settings)))


if __name__ == "__main__":
    main()
