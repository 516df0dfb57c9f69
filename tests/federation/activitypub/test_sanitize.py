"""Every remote HTML field goes through nh3 with our allowlist: a hostile/edge corpus."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from federation.activitypub.sanitize import ALLOWED_TAGS, plain_text, sanitize_html, text_to_html

CORPUS = json.loads((Path(__file__).parent / "fixtures" / "html_corpus.json").read_text())["cases"]
ALL = [(category, i, html) for category, items in CORPUS.items() for i, html in enumerate(items)]
ALLOWED_CLASSES = {"mention", "hashtag", "invisible", "ellipsis"}


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.mark.parametrize(("category", "index", "html"), ALL, ids=[f"{c}-{i}" for c, i, _ in ALL])
def test_corpus_is_safe(category: str, index: int, html: str) -> None:
    out = sanitize_html(html)
    parser = _Collect()
    parser.feed(out)
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, (tag, out)
        for name, value in attrs.items():
            assert not name.startswith("on"), out
            if name == "href":
                assert tag == "a" and re.match(r"^https?://", value or ""), out
            elif name == "rel":
                assert tag == "a" and value == "nofollow noopener noreferrer", out
            elif name == "class":
                assert set((value or "").split()) <= ALLOWED_CLASSES, out
            else:
                pytest.fail(f"attribute {name} survived: {out}")
    lowered = out.lower()
    for bad in ("<script", "javascript:", "vbscript:", "data:text", "<iframe", "<style", "<img", "<svg", "style="):
        assert bad not in lowered, out


def test_corpus_keeps_the_good_parts() -> None:
    assert sanitize_html("<p>Paragraph</p>") == "<p>Paragraph</p>"
    assert sanitize_html("<strong>strong</strong>") == "<strong>strong</strong>"
    assert "<script" not in sanitize_html("<style>x</style><p>hidden</p>") and "hidden" in sanitize_html(
        "<style>x</style><p>hidden</p>")
    anchor = sanitize_html("<a href='https://example.org/' class='u-url mention'>classed</a>")
    assert anchor == '<a href="https://example.org/" class="mention" rel="nofollow noopener noreferrer">classed</a>'
    tag = sanitize_html(CORPUS["hashtags"][0])
    assert 'class="mention hashtag"' in tag and "#<span>rose</span>" in tag
    assert sanitize_html("<a href='javascript:alert(1)'>js</a>") == '<a rel="nofollow noopener noreferrer">js</a>'
    assert sanitize_html(None) == "" and sanitize_html(5) == ""


def test_plain_text_and_local_text() -> None:
    assert plain_text("<b>Bob</b> &amp; <script>x</script>co") == "Bob & co"
    assert text_to_html("<b>hi</b>\n\nhttps://example.org/?a=1&b=2") == (
        '<p>&lt;b&gt;hi&lt;/b&gt;</p><p><a href="https://example.org/?a=1&amp;b=2" '
        'rel="nofollow noopener noreferrer">https://example.org/?a=1&amp;b=2</a></p>')
