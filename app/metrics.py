"""Prometheus metrics: the counters and gauges every layer records into (issue 13 item 5).

The metric objects live here, in the kernel, so fragments, jobs and federation record into them
without importing each other. `/metrics` (exposition, protection, multi-process collection) is
wired by the factory.
"""

from __future__ import annotations

from prometheus_client import Counter

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
