"""The account domain's surrogate keys: what member listings are tagged with and purged by."""

from __future__ import annotations

from typing import Final

from fragments.purge import SurrogateKey

__all__ = ["MEMBERS"]

# The newest-members fragment and embed (fragments/site.py): names, usernames and the count, so
# a sign-up, a name change or a suspension purges it.
MEMBERS: Final = SurrogateKey("members")
