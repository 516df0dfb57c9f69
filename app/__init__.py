"""Rose Ash composition root: ``create_app(settings)`` builds the one Litestar application."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar import Litestar

    from app.settings import Settings


def create_app(settings: Settings | None = None) -> Litestar:
    from app.factory import create_app as _create_app

    return _create_app(settings)
