"""The renderer and sanitisers: everything Markdown emits survives; nothing executable does."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from domains.blog.renderer import RENDERER_VERSION, excerpt_of, render_key, render_markdown, sanitise_legacy_html

SAFE_SCHEMES = ("http:", "https:", "mailto:", "#", "/")
URL_ATTRS = {"href", "src", "srcset", "action", "formaction", "poster", "data", "xlink:href", "background"}
FORBIDDEN_TAGS = {"script", "style", "svg", "math", "form", "input", "button", "textarea", "select", "object",
                  "embed", "link", "meta", "base", "frame", "frameset"}


class _Walker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            value = (value or "").strip()
            if name.startswith("on"):
                self.problems.append(f"{tag}[{name}]")
            if name in {"style", "srcdoc"} and not (name == "style" and re.fullmatch(r"text-align:(left|right|center)",
                                                                                     value)):
                self.problems.append(f"{tag}[{name}={value!r}]")
            if name in URL_ATTRS:
                for url in ([c.strip().split(" ")[0] for c in value.split(",")] if name == "srcset" else [value]):
                    if url and not url.lower().startswith(SAFE_SCHEMES) and ":" in url.split("/")[0]:
                        self.problems.append(f"{tag}[{name}={url!r}]")
        if tag == "iframe":
            src = dict(attrs).get("src") or ""
            if not src.startswith(("https://www.youtube.com/", "https://player.vimeo.com/")):
                self.problems.append(f"iframe from {src!r}")


def assert_inert(html: str) -> None:
    """No script-capable element, handler, style, or non-http(s) URL anywhere in ``html``."""
    walker = _Walker()
    walker.feed(html)
    assert walker.problems == [], walker.problems


HOSTILE_MARKDOWN = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![img](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![img](javascript:alert(1))",
    "<svg onload=alert(1)><circle r=4></svg>",
    "<style>body{display:none}</style>",
    '<iframe src="https://evil.example"></iframe>',
    '<form action="https://evil.example"><input name=p><button>go</button></form>',
    '<a href="javascript:alert(1)" onclick="x()">raw</a>',
    "[a](vbscript:msgbox(1))",
    "<details open ontoggle=alert(1)>",
    "[x]( javascript:alert(1) )",
    "<math><mtext><script>alert(1)</script></mtext></math>",
]


@pytest.mark.parametrize("source", HOSTILE_MARKDOWN)
def test_hostile_markdown_is_inert(source: str) -> None:
    html = render_markdown(f"Kept before.\n\n{source}\n\nKept after.")
    assert_inert(html)
    assert "Kept before." in html and "Kept after." in html


HOSTILE_HTML = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<img src="data:image/svg+xml,<svg onload=alert(1)>">',
    '<img srcset="javascript:alert(1) 1x, /ok.jpg 2x">',
    "<svg onload=alert(1)><script>alert(1)</script></svg>",
    "<style>*{display:none}</style>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<iframe src="https://evil.example/"></iframe>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<form action="/steal"><input name="p"><textarea></textarea><select><option>1</option></select></form>',
    '<object data="x.swf"></object><embed src="x.swf">',
    '<base href="https://evil.example/"><meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<video src="x.mp4" onplay="alert(1)" poster="javascript:alert(1)"></video>',
    '<a href="https://example.org" target="_blank" onmouseover="x()">ok</a>',
]


@pytest.mark.parametrize("source", HOSTILE_HTML)
def test_hostile_legacy_html_is_inert(source: str) -> None:
    html = sanitise_legacy_html(f"<p>Kept before.</p>{source}<p>Kept after.</p>")
    assert_inert(html)
    assert "Kept before." in html and "Kept after." in html


def test_markdown_features_survive_sanitising() -> None:
    html = render_markdown(
        "# Title\n\nText[^1] with **bold**, *em*, `code`, ~~gone~~ and [a link](https://example.org \"t\").\n\n"
        "| left | right |\n|:-----|------:|\n| 1 | 2 |\n\n```python\nprint(1)\n```\n\n"
        "3. three\n4. four\n\n> quote\n\n![alt text](https://example.org/a.png \"img title\")\n\n---\n\n"
        "[^1]: The footnote.\n")
    for fragment in ["<h1>Title</h1>", "<strong>bold</strong>", "<em>em</em>", "<code>code</code>", "<s>gone</s>",
                     '<a href="https://example.org" title="t" rel="noopener noreferrer nofollow">a link</a>',
                     '<th style="text-align:left">left</th>', '<td style="text-align:right">2</td>',
                     '<code class="language-python">', '<ol start="3">', "<blockquote>",
                     '<img src="https://example.org/a.png" alt="alt text" title="img title">', "<hr>",
                     '<sup class="footnote-ref"><a href="#fn1" id="fnref1"', '<li id="fn1" class="footnote-item">',
                     '<a href="#fnref1" class="footnote-backref"', '<section class="footnotes">']:
        assert fragment in html, fragment
    assert_inert(html)


def test_iframes_from_known_hosts_stay_and_others_become_links() -> None:
    html = sanitise_legacy_html('<iframe src="https://player.vimeo.com/video/1" allowfullscreen></iframe>'
                                '<iframe src="https://tracker.example/x?a=1&b=2"></iframe>')
    assert '<iframe src="https://player.vimeo.com/video/1"' in html and 'sandbox="' in html
    assert '<a href="https://tracker.example/x?a=1&amp;b=2" rel="noopener noreferrer nofollow">' in html


def test_render_key_and_excerpt() -> None:
    assert render_key("a") != render_key("b") and render_key("a").startswith(f"{RENDERER_VERSION}:")
    assert excerpt_of("<p>" + "word " * 60 + "</p>", 5) == "word word word word word…"
