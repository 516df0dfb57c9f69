"""Route classes, cache headers and conditional GET: the kernel's (app/caching.py), re-exported
for the fragments package and the domains that render through it."""

from app.caching import (
    ANONYMOUS_OPT,
    CACHE_CONTROL,
    CACHEABLE,
    DEGRADED_CACHE_CONTROL,
    DOWNGRADED_CACHE_CONTROL,
    FALLBACK_CACHE_CONTROL,
    HTML,
    POLICY_OPT_KEY,
    CachePolicy,
    RenderState,
    add_surrogate_keys,
    conditional_response,
    etag_matches,
    policy_headers,
    policy_of,
    render_state,
    route_opt,
    weak_etag,
)

__all__ = [
    "ANONYMOUS_OPT",
    "CACHEABLE",
    "CACHE_CONTROL",
    "DEGRADED_CACHE_CONTROL",
    "DOWNGRADED_CACHE_CONTROL",
    "FALLBACK_CACHE_CONTROL",
    "HTML",
    "POLICY_OPT_KEY",
    "CachePolicy",
    "RenderState",
    "add_surrogate_keys",
    "conditional_response",
    "etag_matches",
    "policy_headers",
    "policy_of",
    "render_state",
    "route_opt",
    "weak_etag",
]
