"""Occurrences and repeat rules (no database): DST in two zones, exceptions, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domains.events.services.recurrence import RuleProblem, check_rule, local_kind, occurrences, zone

YEAR = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def _dates(rule: str, start: datetime, tz: str, exdates: tuple[str, ...] = ()) -> list[tuple[datetime, datetime]]:
    return [(o.start_local, o.starts_at) for o in occurrences(
        start_local=start, end_local=start + timedelta(hours=2), tz=tz, rule=rule, exdates=list(exdates),
        window_start=YEAR[0], window_end=YEAR[1])]


def test_a_weekly_series_keeps_its_wall_clock_time_across_the_london_spring_change() -> None:
    found = _dates("FREQ=WEEKLY;COUNT=4", datetime(2026, 3, 17, 18), "Europe/London")
    assert [local.hour for local, _ in found] == [18, 18, 18, 18]
    # GMT before 29 March 2026, BST after: the same 18:00 is a different UTC instant.
    assert [utc.hour for _, utc in found] == [18, 18, 17, 17]


def test_a_weekly_series_keeps_its_wall_clock_time_across_the_new_york_autumn_change() -> None:
    found = _dates("FREQ=WEEKLY;COUNT=3", datetime(2026, 10, 25, 9, 30), "America/New_York")
    assert [local.strftime("%H:%M") for local, _ in found] == ["09:30"] * 3
    assert [utc.strftime("%H:%M") for _, utc in found] == ["13:30", "14:30", "14:30"]  # EDT, then EST from 1 Nov


def test_exceptions_leave_their_dates_out() -> None:
    found = _dates("FREQ=WEEKLY;COUNT=4", datetime(2026, 3, 17, 18), "Europe/London", ("2026-03-24T18:00:00",))
    assert [local.day for local, _ in found] == [17, 31, 7]


def test_a_window_yields_only_the_dates_that_overlap_it() -> None:
    start = datetime(2026, 1, 6, 18)
    found = list(occurrences(start_local=start, end_local=start + timedelta(hours=2), tz="Europe/London",
                             rule="FREQ=WEEKLY", exdates=[], window_start=datetime(2026, 6, 1, tzinfo=UTC),
                             window_end=datetime(2026, 6, 30, tzinfo=UTC)))
    assert [o.start_local.day for o in found] == [2, 9, 16, 23]


def test_a_generated_time_in_the_spring_gap_takes_the_offset_before_the_gap() -> None:
    # RFC 5545 §3.3.5: 01:30 on 29 March 2026 does not exist in London; it is read as 01:30 GMT.
    found = _dates("FREQ=DAILY;COUNT=3", datetime(2026, 3, 28, 1, 30), "Europe/London")
    assert [utc.strftime("%d %H:%M") for _, utc in found] == ["28 01:30", "29 01:30", "30 00:30"]


def test_local_times_in_the_gap_and_the_overlap_are_told_apart() -> None:
    london = zone("Europe/London")
    assert local_kind(datetime(2026, 3, 29, 1, 30), london) == "gap"
    assert local_kind(datetime(2026, 10, 25, 1, 30), london) == "ambiguous"
    assert local_kind(datetime(2026, 10, 25, 3, 30), london) == "ok"


@pytest.mark.parametrize(("rule", "message"), [
    ("FREQ=SECONDLY", "daily, weekly, monthly or yearly"),
    ("FREQ=HOURLY;COUNT=3", "daily, weekly, monthly or yearly"),
    ("FREQ=DAILY;COUNT=5000", "more than 1,000 dates"),
    ("FREQ=WEEKLY;BYDAY=XX", "not valid"),
    ("FREQ=WEEKLY;COUNT=3;UNTIL=20270101", "COUNT or UNTIL, not both"),
    ("FREQ=DAILY;UNTIL=20990101", "within ten years"),
    ("FREQ=YEARLY;COUNT=20", "within ten years"),
    ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=31", "never produces a date"),
    ("FREQ=YEARLY;BYWEEKNO=53", "BYWEEKNO is not supported"),
    ("bananas", "daily, weekly, monthly or yearly"),
])
def test_impossible_or_unbounded_rules_are_refused_with_the_reason(rule: str, message: str) -> None:
    with pytest.raises(RuleProblem, match=message):
        check_rule(rule, datetime(2026, 3, 17, 18), [])


def test_rules_that_match_no_day_are_refused_before_dateutil_walks_them() -> None:
    # dateutil searches until year 9999 for a date such a rule never yields (seconds of CPU for
    # one form post): the structural check refuses them first, naming the reason.
    for rule in ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "FREQ=WEEKLY;BYMONTH=4,6;BYMONTHDAY=31",
                 "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;COUNT=3"):
        with pytest.raises(RuleProblem):
            check_rule(rule, datetime(2026, 3, 17, 18), [])


def test_a_bounded_rule_reports_its_last_date_and_an_open_one_none() -> None:
    start = datetime(2026, 3, 17, 18)
    assert check_rule("FREQ=WEEKLY;COUNT=5", start, []) == datetime(2026, 4, 14, 18)
    assert check_rule("FREQ=WEEKLY;UNTIL=20260414", start, []) == datetime(2026, 4, 14, 18)
    assert check_rule("FREQ=WEEKLY;UNTIL=20260414T180000Z", start, []) == datetime(2026, 4, 14, 18)
    assert check_rule("FREQ=MONTHLY;BYDAY=-1FR", start, []) is None
