"""Slugs from titles and tag names (advanced-alchemy's slugify, punctuation as a word break)."""

from __future__ import annotations

import pytest

from domains.blog.schemas import MAX_SLUG, SLUG_RE, slugify


@pytest.mark.parametrize(("text", "slug"), [
    ("Hello, World!", "hello-world"),
    ("rock&roll", "rock-roll"),  # punctuation separates words rather than vanishing
    ("don't stop", "don-t-stop"),
    ("snake_case_name", "snake-case-name"),  # never an underscore, which SLUG_RE refuses
    ("  --Lead--  ", "lead"),
    ("C++ & C#", "c-c"),
    ("naïve résumé", "naive-resume"),  # accents folded
    ("e\u0301te\u0301", "ete"),  # decomposed accents too
    ("Straße", "strae"),  # letters with no ASCII form are dropped, as before
    ("日本語 blog", "blog"),
    ("don\u2019t \u2014 stop", "don-t-stop"),  # non-ASCII punctuation now separates words too
])
def test_slugs(text: str, slug: str) -> None:
    assert slugify(text) == slug
    assert SLUG_RE.match(slug)


def test_nothing_to_slug_falls_back() -> None:
    assert slugify("!!!") == "untitled"
    assert slugify("Привет", "tag") == "tag"
    assert slugify("___", "") == ""


def test_long_slugs_are_cut_without_a_trailing_dash() -> None:
    slug = slugify("word " * 100)
    assert len(slug) <= MAX_SLUG and SLUG_RE.match(slug)
