"""Producers' and staff's pages under ``/market/admin/`` (filled in below the API commit)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

admin_handlers: list[ControllerRouterHandler] = []
staff_handlers: list[ControllerRouterHandler] = []
