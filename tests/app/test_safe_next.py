"""``safe_next``: a post-action destination is a path on this site, never another site."""

from __future__ import annotations

import pytest

from app.forms import safe_next


@pytest.mark.parametrize("value", ["/social/", "/blog/a-post?page=2", "/forge/ada/repo#readme", "/?q=two words"])
def test_same_site_paths_are_kept(value: str) -> None:
    assert safe_next(value) == value


@pytest.mark.parametrize("value", [
    "", None, "https://evil.example/", "//evil.example/", "/\\evil.example", "\\\\evil.example",
    # Browsers drop tabs and newlines from URLs: each of these would become //evil.example.
    "/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/\x00/evil", "/\x7f/evil",
])
def test_anything_that_could_leave_the_site_is_refused(value: str | None) -> None:
    assert safe_next(value, "/home") == "/home"
