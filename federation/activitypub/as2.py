"""Reading and writing ActivityStreams 2.0 values: a field that may be one thing or a list, an id
or an object with an id, timestamps, addressing and content negotiation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from federation.activitypub.contexts import PUBLIC
from federation.activitypub.urls import http_url


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def id_of(value: Any) -> str:
    """The id of a field that may be a URI string or an object with an ``id``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("id") or value.get("href")
        return inner if isinstance(inner, str) else ""
    return ""


def ids_of(value: Any) -> list[str]:
    return [i for i in (id_of(v) for v in as_list(value)) if i]


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def image_url(value: Any) -> str:
    """The URL of an AS2 ``icon``/``image``: a URL, a Link, or an Image whose ``url`` is either
    (Mastodon sends ``{"type": "Image", "url": "..."}``); the first of a list."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("url") or value.get("href")
        if isinstance(value, list):
            value = value[0] if value else None
    return http_url(id_of(value))


def page_url(data: dict[str, Any], fallback: str) -> str:
    """An object's ``url`` (the first of a list) when it is http(s), else ``fallback``."""
    return http_url(id_of(as_list(data.get("url"))[0]) if data.get("url") else "") or fallback


def public_addressing(visibility: str, followers_url: str) -> tuple[list[str], list[str]]:
    if visibility == "public":
        return [PUBLIC], [followers_url]
    if visibility == "unlisted":
        return [followers_url], [PUBLIC]
    if visibility == "followers":
        return [followers_url], []
    return [], []


def wants_as2(accept: str | None) -> bool:
    accept = (accept or "").lower()
    return "application/activity+json" in accept or (
        "application/ld+json" in accept) or ("application/json" in accept and "text/html" not in accept)
