"""Surrogate keys of the public newsletter pages (one place for tagging and purging)."""

from __future__ import annotations

from fragments.purge import SurrogateKey

__all__ = ["list_key"]


def list_key(slug: str) -> SurrogateKey:
    """``/newsletters/<slug>``: purged when the list is edited or deleted."""
    return SurrogateKey(f"newsletter:{slug}")
