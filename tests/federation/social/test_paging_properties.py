"""Hypothesis properties of the social hub's paging cursors (issue 11 item 10): every token a page
link carries reads back as the same cursor, and any other ``?before=`` value is either a cursor or
the 400 ClientException, never another exception (a 500)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from hypothesis import example, given, settings
from hypothesis import strategies as st
from litestar.exceptions import ClientException

from federation.social.paging import Cursor, cut, page_link, parse_cursor

BOUNDED = settings(max_examples=400, deadline=None, database=None)

instants = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC))


@BOUNDED
@given(instants, st.uuids())
def test_tokens_round_trip(at: datetime, row: UUID) -> None:
    cursor = Cursor(at, row)
    assert parse_cursor(cursor.token()) == cursor


@BOUNDED
@given(st.text(max_size=60) | st.from_regex(r"-?[0-9]{1,30}_[0-9a-fA-F-]{0,40}", fullmatch=True))
@example("9" * 5000 + "_" + "0" * 32)  # int() refuses more than 4300 digits
@example(f"{timedelta.max // timedelta(microseconds=1)}_{'0' * 32}")  # beyond datetime's range
@example("\u0663_" + "0" * 32)  # an Arabic-Indic digit, which int() reads
@example("_")
def test_any_before_value_is_a_cursor_or_a_400(value: str) -> None:
    try:
        cursor = parse_cursor(value)
    except ClientException as exc:
        assert exc.status_code == 400 and exc.detail
        return
    if cursor is not None:  # whatever was accepted has a canonical token that reads back the same
        assert cursor.at.tzinfo is not None and cursor.at >= datetime.min.replace(tzinfo=UTC)
        assert parse_cursor(cursor.token()) == cursor


@BOUNDED
@given(st.lists(st.tuples(instants, st.uuids()), max_size=12), st.integers(1, 5),
       st.sampled_from(["/social", "/social/accounts/a@b.example?q=x%20y", "/social?before=1_2"]))
def test_page_links_carry_the_last_row_shown(rows: list[tuple[datetime, UUID]], size: int, url: str) -> None:
    rows = sorted(rows, reverse=True)
    page, token = cut(rows, size, key=lambda r: r)
    assert page == rows[:size]
    link = page_link(url, token)
    if len(rows) <= size:
        assert token == "" and link == ""
        return
    query = parse_qs(urlsplit(link).query)
    assert query["before"] == [token]
    assert parse_cursor(token) == Cursor(*page[-1])
    assert urlsplit(link).path == urlsplit(url).path
