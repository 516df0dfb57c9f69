"""The cart's cache keys: none. Nothing about a cart or an order is ever in a shared response
(every cart page is ``private, no-store``; the badge is a personal fragment), so nothing is purged.
The market's product keys are purged by the market when stock it shows changes."""

from __future__ import annotations

__all__: list[str] = []
