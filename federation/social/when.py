"""Times as a timeline shows them: short relative text ("5 min", "3 h", "12 Mar") rendered on the
server, with the exact time for ``<time datetime>`` and its title (issue 14, item 5)."""

from __future__ import annotations

from datetime import UTC, datetime


def aware(at: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def relative(at: datetime | None, now: datetime | None = None) -> str:
    """Mastodon's compact style: "now", "42 s", "5 min", "3 h", "6 d", then the date."""
    if at is None:
        return ""
    at = aware(at)
    now = now or datetime.now(UTC)
    seconds = int((now - at).total_seconds())
    if seconds < 10:  # also a clock a little ahead of ours
        return "now"
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    if seconds < 7 * 86400:
        return f"{seconds // 86400} d"
    return f"{at.day} {at:%b}" if at.year == now.year else f"{at.day} {at:%b %Y}"


def iso(at: datetime | None) -> str:
    """For ``<time datetime>`` (and the script that refreshes the relative text)."""
    return aware(at).isoformat(timespec="seconds") if at is not None else ""


def absolute(at: datetime | None) -> str:
    """For the title: the exact time, unambiguous."""
    return aware(at).strftime("%Y-%m-%d %H:%M UTC") if at is not None else ""
