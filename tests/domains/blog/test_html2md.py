"""domains/blog/html2md.py: Ghost's HTML as Markdown (markdownify in the house style)."""

from __future__ import annotations

import json
from pathlib import Path

from domains.blog.html2md import html_to_markdown
from domains.blog.renderer import render_markdown

GHOST = Path(__file__).parents[2] / "fixtures" / "ghost" / "ghost-6-export.json"


def _welcome_html() -> str:
    posts = json.loads(GHOST.read_text())["db"][0]["data"]["posts"]
    return str(next(p["html"] for p in posts if p["slug"] == "welcome"))


def test_ghost_cards_become_house_markdown() -> None:
    assert html_to_markdown(_welcome_html()) == (
        "Welcome to the co-op blog, moved from [Ghost](__GHOST_URL__/about/).\n\n"
        "![The market](__GHOST_URL__/content/images/2024/05/market.jpg)\n\n"
        "Saturday market\n\n"
        "<https://www.youtube.com/embed/dQw4w9WgXcQ?feature=oembed>\n\n"
        "---\n\n"
        "## What next\n\n"
        "- Meet-ups\n- Workshops\n\n"
        "[Join us](https://example.org/join)\n")


def test_text_that_looks_like_markup_stays_text() -> None:
    markdown = html_to_markdown("<p>2*3 [not a link] &lt;b&gt; a_b `tick` From 2014.</p><p><code>x*y [z]</code></p>")
    assert markdown == "2\\*3 \\[not a link\\] \\<b\\> a\\_b \\`tick\\` From 2014.\n\n`x*y [z]`\n"
    html = render_markdown(markdown)
    assert "2*3 [not a link] &lt;b&gt; a_b `tick` From 2014." in html and "<code>x*y [z]</code>" in html


def test_lists_quotes_code_and_tables() -> None:
    html = ('<ol start="3"><li>one</li><li>two<ul><li>nested</li></ul></li></ol>'
            "<blockquote><p>q1</p><p>q2</p></blockquote>"
            '<pre><code class="language-py">def f():\n    return 1\n</code></pre>'
            "<table><tr><td>a|b</td><td>c</td></tr><tr><td>1</td><td>2</td></tr></table>"
            "<p>line<br>break <s>gone</s></p>")
    markdown = html_to_markdown(html)
    assert markdown == (
        "3. one\n4. two\n   - nested\n\n"
        "> q1\n>\n> q2\n\n"
        "```\ndef f():\n    return 1\n```\n\n"
        "| a\\|b | c |\n| --- | --- |\n| 1 | 2 |\n\n"
        "line  \nbreak ~~gone~~\n")
    assert "<th>a|b</th>" in render_markdown(markdown)  # still a table of two columns


def test_scripts_and_styles_leave_no_text() -> None:
    assert html_to_markdown("<p>kept</p><script>alert(1)</script><style>p{}</style>") == "kept\n"
