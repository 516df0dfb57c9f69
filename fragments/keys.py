"""The site's own surrogate keys: the navigation and the pages and fragments no domain owns.

``NAV`` is purged when the navigation editor saves (domains/blog/services/navigation.py). The
others tag content that only a release changes (templates and constants), so no action purges
them; :data:`RELEASE_ONLY` names them for the purge-path test, which accepts no other key
without a purge.
"""

from __future__ import annotations

from typing import Final

from fragments.purge import SurrogateKey

__all__ = ["EMBEDS", "EMBED_LOADER", "HOME", "NAV", "RELEASE_ONLY", "SITE"]

NAV: Final = SurrogateKey("nav")
SITE: Final = SurrogateKey("site")
HOME: Final = SurrogateKey("home")
EMBEDS: Final = SurrogateKey("embeds")
EMBED_LOADER: Final = SurrogateKey("embed-loader")

RELEASE_ONLY: Final = frozenset({SITE, HOME, EMBEDS, EMBED_LOADER})
