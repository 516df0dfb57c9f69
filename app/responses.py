"""Response pieces every domain shares."""

from __future__ import annotations

from litestar.datastructures import CacheControlHeader

PRIVATE = CacheControlHeader(private=True, no_store=True)
"""``Cache-Control`` for pages about one member (forms, dashboards, editors): never stored anywhere."""
