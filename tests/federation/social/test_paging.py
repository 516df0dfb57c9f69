"""The social hub's keyset cursor: exact round trips, links that keep their query, clear 400s."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from litestar.exceptions import ClientException

from federation.social.paging import Cursor, cut, page_link, parse_cursor


def test_cursor_round_trips_to_the_microsecond() -> None:
    for at in (datetime(2026, 11, 27, 12, 0, 0, 999_999, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, tzinfo=UTC)):
        cursor = Cursor(at, uuid.uuid4())
        assert parse_cursor(cursor.token()) == cursor
    assert parse_cursor(None) is None and parse_cursor("") is None


# A fixed id, not uuid4(): test ids must be the same in every pytest-xdist worker that collects them.
ANY_ID = "8c2a4f0e6b1d4e7f9a3c5b7d9e1f2a4c"


@pytest.mark.parametrize("bad", ["yesterday", "12", "12_", "_" + ANY_ID, "1e9_" + ANY_ID,
                                 "99999999999999999999999_" + ANY_ID])
def test_malformed_cursors_are_a_400_with_a_way_on(bad: str) -> None:
    with pytest.raises(ClientException) as caught:
        parse_cursor(bad)
    assert caught.value.status_code == 400 and "Follow the Older link" in caught.value.detail


def test_cut_and_links() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [(at, i) for i in ids]
    assert cut(rows[:2], 2, lambda r: r) == (rows[:2], "")  # no row beyond the page: the last page
    page, token = cut(rows, 2, lambda r: r)
    assert page == rows[:2] and parse_cursor(token) == Cursor(at, ids[1])
    assert page_link("/social/local", "") == ""
    assert page_link("/social/accounts?q=a%40b.example&before=old", "T") == "/social/accounts?q=a%40b.example&before=T"
