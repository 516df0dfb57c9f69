"""Occurrences of an event: its one date, or its series expanded by python-dateutil.

RFC 5545 §3.3.10 RRULEs are expanded on the event's *wall-clock* start (``starts_local``) and
each occurrence is then placed in the event's IANA zone, so "every Tuesday 18:00 Europe/London"
stays at 18:00 on both sides of a daylight-saving change. A generated time inside a DST gap is
read with the offset before the gap, as RFC 5545 §3.3.5 prescribes ("FORM #3"); an ambiguous one
(the repeated hour) takes its first instance (``fold=0``).

The first date is checked more strictly: a time that does not exist in its zone, or exists twice,
is refused unless the person chose which (services/events.py), never silently shifted.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice, pairwise
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dateutil.rrule import rrule, rrulestr

__all__ = ["MAX_OCCURRENCES", "Occurrence", "RuleProblem", "check_rule", "local_kind", "occurrences", "to_utc",
           "zone"]

# A bounded series (COUNT or UNTIL) may have at most this many dates; finer than daily is refused.
MAX_OCCURRENCES: Final = 1000
ALLOWED_FREQ: Final = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
# An open-ended rule must produce its first date within this horizon.
HORIZON: Final = timedelta(days=366 * 10)
# Parts a person's calendar rarely needs and whose combinations can match nothing at all.
UNSUPPORTED: Final = frozenset({"BYWEEKNO", "BYYEARDAY", "BYSETPOS", "BYHOUR", "BYMINUTE", "BYSECOND", "BYEASTER"})
_UNTIL_DATE: Final = re.compile(r"(UNTIL=\d{8})(?![T\d])", re.IGNORECASE)
_UNTIL_UTC: Final = re.compile(r"(UNTIL=\d{8}(?:T\d{6})?)Z", re.IGNORECASE)


class RuleProblem(ValueError):
    """An RRULE that cannot be used: the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One date of an event: local wall-clock times in its zone and the same instants in UTC."""

    start_local: datetime
    end_local: datetime
    starts_at: datetime
    ends_at: datetime

    @property
    def key(self) -> str:
        """The occurrence's id within its series (its local start, as RFC 5545 RECURRENCE-ID)."""
        return self.start_local.strftime("%Y%m%dT%H%M%S")


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; RuleProblem for an unknown one."""
    if name not in _zones():
        raise RuleProblem(f"“{name}” is not a time zone we know: use an IANA name such as Europe/London.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - listed but unloadable
        raise RuleProblem(f"“{name}” is not a time zone we know.") from exc


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
        _ZONES.add("UTC")
    return _ZONES


def to_utc(local: datetime, tz: ZoneInfo, *, fold: int = 0) -> datetime:
    return local.replace(tzinfo=tz, fold=fold).astimezone(UTC)


def local_kind(local: datetime, tz: ZoneInfo) -> str:
    """``"ok"``, ``"gap"`` (the wall-clock time never happens: clocks jump over it) or
    ``"ambiguous"`` (it happens twice: clocks go back over it) in ``tz``."""
    first, second = local.replace(tzinfo=tz, fold=0), local.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return "ok"
    # In a gap the two folds disagree and neither round-trips to the same wall time.
    back = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    return "gap" if back != local else "ambiguous"


def _never(parts: dict[str, str]) -> bool:
    """Whether BYMONTHDAY names no day that exists in any month BYMONTH allows. dateutil walks
    to year 9999 looking for a date such a rule never yields, so it is refused before any walk."""
    if "BYMONTHDAY" not in parts:
        return False
    try:
        days = [int(d) for d in parts["BYMONTHDAY"].split(",")]
        months = [int(m) for m in parts["BYMONTH"].split(",")] if "BYMONTH" in parts else list(range(1, 13))
    except ValueError:
        return False  # malformed: dateutil's parser names the problem
    longest = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return not any(1 <= m <= 12 and (1 <= d <= longest[m - 1] or -longest[m - 1] <= d <= -1)
                   for m in months for d in days)


# Parsed rules and expanded series are kept per process, keyed by everything they are made from
# (the rule text, the first date, the excluded dates), so an edited event simply makes a new key
# and nothing needs invalidating. Month pages and feeds ask for the same series on every request;
# parsing with rrulestr and walking from the first date cost more than the rest of the page.
# dateutil's rrule is only read here (after/xafter/iteration; ``replace`` makes a new one), so one
# parsed rule may be shared between requests.
CACHED_RULES: Final = 4096


@lru_cache(maxsize=CACHED_RULES)
def _parse(rule: str, start_local: datetime) -> rrule:
    """The dateutil rule for ``rule`` from ``start_local``; RuleProblem (never cached) when unusable."""
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    parts = dict(p.split("=", 1) for p in text.upper().split(";") if "=" in p)
    freq = parts.get("FREQ", "")
    if freq not in ALLOWED_FREQ:
        raise RuleProblem("Repeat daily, weekly, monthly or yearly (FREQ=DAILY, WEEKLY, MONTHLY or YEARLY).")
    unsupported = sorted(UNSUPPORTED.intersection(parts))
    if unsupported:
        raise RuleProblem(f"{', '.join(unsupported)} is not supported here: use BYDAY, BYMONTHDAY, BYMONTH, "
                          "INTERVAL, COUNT or UNTIL.")
    if _never(parts):
        raise RuleProblem("This rule never produces a date (no such day in the months it names).")
    if "COUNT" in parts and "UNTIL" in parts:
        raise RuleProblem("Give COUNT or UNTIL, not both (RFC 5545 §3.3.10).")
    # Our series are wall-clock times in the event's zone; an UNTIL in UTC is read as local.
    text = _UNTIL_UTC.sub(r"\1", text)
    # A date-only UNTIL includes that whole day (the last date's start is on it).
    text = _UNTIL_DATE.sub(r"\1T235959", text)
    try:
        parsed = rrulestr("RRULE:" + text, dtstart=start_local, forceset=False, ignoretz=True)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise RuleProblem(f"This repeat rule is not valid: {exc}.") from exc
    if not isinstance(parsed, rrule):  # pragma: no cover - forceset=False with one RRULE
        raise RuleProblem("Give one RRULE.")
    return parsed


def check_rule(rule: str, start_local: datetime, exdates: list[datetime]) -> datetime | None:
    """Validate ``rule`` for a series starting at ``start_local``; the local start of its last date
    (None when the rule has no end). RuleProblem when it is malformed, never happens, has too many
    dates or runs beyond ten years.

    Every walk is bounded by the ten-year horizon (``until``), so a rule that never matches (the
    31st of February, daily) costs milliseconds, not the walk to year 9999."""
    parsed = _parse(rule, start_local)
    count, until = parsed._count, parsed._until  # dateutil exposes no getters
    horizon = start_local + HORIZON
    if until is not None and until > horizon:
        raise RuleProblem("A series must end within ten years: choose an earlier UNTIL, or no end at all.")
    probe = parsed.replace(count=None, until=min(until or horizon, horizon))
    excluded = set(exdates)
    dates = (when for when in probe if when not in excluded)
    if count is None and until is None:
        if next(dates, None) is None:
            raise RuleProblem("This rule produces no date in the next ten years.")
        return None
    last: datetime | None = None
    for seen, when in enumerate(dates, start=1):
        last = when
        if seen > MAX_OCCURRENCES:
            raise RuleProblem(f"This rule makes more than {MAX_OCCURRENCES:,} dates: end it sooner (COUNT or UNTIL)"
                              " or leave it without an end.")
        if count is not None and seen >= count:
            break
    else:
        if count is not None and last is not None:
            raise RuleProblem("A series must end within ten years: choose a smaller COUNT, or no end at all.")
    if last is None:
        raise RuleProblem("This rule produces no date in the next ten years.")
    return last


def occurrences(*, start_local: datetime, end_local: datetime, tz: str, rule: str, exdates: list[str],
                window_start: datetime, window_end: datetime, limit: int = MAX_OCCURRENCES) -> Iterator[Occurrence]:
    """The dates of an event that overlap [``window_start``, ``window_end``) (aware datetimes),
    in order, at most ``limit``."""
    tzinfo = zone(tz)
    duration = end_local - start_local
    if not rule:
        starts_at, ends_at = to_utc(start_local, tzinfo), to_utc(end_local, tzinfo)
        if starts_at < window_end and ends_at > window_start:
            yield Occurrence(start_local, end_local, starts_at, ends_at)
        return
    placed = _placed(rule, start_local, tuple(exdates), tz, duration)
    if placed is not None:
        # A bounded series is placed in its zone once per process (content-keyed, like _series): a
        # window is then a bisection on the UTC starts and a slice, not a to_utc per date per request.
        # Starting a day and the duration early keeps every date whose end reaches into the window.
        found, starts = placed
        produced = 0
        for occ in islice(found, bisect_left(starts, window_start - duration - timedelta(days=1)), None):
            if occ.starts_at >= window_end:
                return
            if occ.ends_at > window_start:
                yield occ
                produced += 1
                if produced >= limit:
                    return
        return
    # Walk local times from a little before the window (a day covers any UTC offset) plus the duration.
    local_from = window_start.astimezone(tzinfo).replace(tzinfo=None) - duration - timedelta(days=1)
    produced = 0
    for when in _walk(rule, start_local, exdates, local_from):
        starts_at = to_utc(when, tzinfo)
        if starts_at >= window_end:
            return
        ends_at = to_utc(when + duration, tzinfo)
        if ends_at > window_start:
            yield Occurrence(when, when + duration, starts_at, ends_at)
            produced += 1
            if produced >= limit:
                return


# Placed series hold an Occurrence per date (at most MAX_OCCURRENCES each): fewer of them than rules.
CACHED_PLACED: Final = 1024


@lru_cache(maxsize=CACHED_PLACED)
def _placed(rule: str, start_local: datetime, exdates: tuple[str, ...], tz: str,
            duration: timedelta) -> tuple[tuple[Occurrence, ...], list[datetime]] | None:
    """Every date of a bounded series as an Occurrence in ``tz``, with their UTC starts (ascending:
    local starts ascend and a zone's offset changes by less than the gap between two dates that are
    a day apart, which is the finest rule allowed), for bisection; None for an open-ended series."""
    dates = _series(rule, start_local, exdates)
    if dates is None:
        return None
    tzinfo = zone(tz)
    found = tuple(Occurrence(when, when + duration, to_utc(when, tzinfo), to_utc(when + duration, tzinfo))
                  for when in dates)
    starts = [occ.starts_at for occ in found]
    if any(later < earlier for earlier, later in pairwise(starts)):  # pragma: no cover
        return None  # never expected (see above); walking is always right
    return found, starts


@lru_cache(maxsize=CACHED_RULES)
def _series(rule: str, start_local: datetime, exdates: tuple[str, ...]) -> tuple[datetime, ...] | None:
    """Every local start of a bounded series (COUNT or UNTIL), excluded dates left out; None for an
    open-ended rule or one with more than MAX_OCCURRENCES dates (check_rule refuses those on save,
    but a row written otherwise is still shown, by walking), which are walked on each request."""
    parsed = _parse(rule, start_local)
    if parsed._count is None and parsed._until is None:  # dateutil exposes no getters
        return None
    excluded = {datetime.fromisoformat(x) for x in exdates}
    dates = tuple(islice((when for when in parsed if when not in excluded), MAX_OCCURRENCES + 1))
    return dates if len(dates) <= MAX_OCCURRENCES else None


def _walk(rule: str, start_local: datetime, exdates: list[str], local_from: datetime) -> Iterator[datetime]:
    """The series' dates from the first at or after ``local_from``, excluded dates left out."""
    excluded = {datetime.fromisoformat(x) for x in exdates}
    parsed = _parse(rule, start_local)
    first = parsed.after(local_from, inc=True) if local_from > start_local else start_local
    if first is None:
        return
    for when in parsed.xafter(first, inc=True):
        if when not in excluded:
            yield when
