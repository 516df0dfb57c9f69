"""Where an anonymous visitor's cart is remembered: its token in the server-side session."""

from __future__ import annotations

from typing import Any, Final

from litestar.connection import ASGIConnection

__all__ = ["CART_SESSION_KEY", "cart_token", "forget_cart", "remember_cart"]

CART_SESSION_KEY: Final = "cart"


def _session(connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any] | None:
    data = connection.scope.get("session")
    return data if isinstance(data, dict) else None


def cart_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    data = _session(connection)
    token = data.get(CART_SESSION_KEY) if data else None
    return token if isinstance(token, str) and token else None


def remember_cart(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> None:
    data = _session(connection) or {}
    if data.get(CART_SESSION_KEY) != token:
        connection.set_session({**data, CART_SESSION_KEY: token})


def forget_cart(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    data = _session(connection)
    if data and CART_SESSION_KEY in data:
        connection.set_session({k: v for k, v in data.items() if k != CART_SESSION_KEY})
