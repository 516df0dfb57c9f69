"""Blog polish (issue 14 item 7): first-paragraph excerpts, Pygments highlighting through the
sanitiser, previous/next and "more in #tag", the autosave's URL move and the tag suggestions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from domains.blog.models import Post
from domains.blog.renderer import (
    excerpt_of,
    highlight_css,
    render_markdown,
    sanitise_legacy_html,
    sanitise_markdown_html,
)
from tests.domains.blog.conftest import write
from tests.domains.blog.test_renderer import assert_inert
from tests.helpers.web import CSRF_FIELD

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]

# Ghost 5/6 card markup as its exports carry it: an image card, a code card and an HTML-card
# table come before the first paragraph of prose.
GHOST_BODY = (
    '<figure class="kg-card kg-image-card kg-card-hascaption"><img src="https://x.example/a.jpg" '
    'class="kg-image" alt="Stalls"><figcaption><span>The market at dawn</span></figcaption></figure>'
    '<pre><code class="language-python">print("setup code")</code></pre>'
    '<table><tr><th>Stall</th><td>Apples</td></tr></table>'
    '<h2 id="why">Why we moved</h2>'
    '<p>The co-op <strong>outgrew</strong> its old blog, so we <a href="/about">moved</a> it.</p>'
    '<p>Second paragraph, never in the excerpt.</p>'
)


# Excerpts ------------------------------------------------------------------------------------

def test_excerpt_is_the_first_paragraph_never_code_table_or_caption() -> None:
    assert excerpt_of(GHOST_BODY) == "The co-op outgrew its old blog, so we moved it."
    markdown = render_markdown("```\nrm -rf /\n```\n\n| a | b |\n|---|---|\n| cell | text |\n\n"
                               "Intro with `inline code`[^1] and *emphasis*.\n\nMore.\n\n[^1]: A note.")
    assert excerpt_of(markdown) == "Intro with inline code and emphasis."
    # Only code and tables: no excerpt rather than code as prose.
    assert excerpt_of(render_markdown("```python\nx = 1\n```\n\n| a |\n|---|\n| b |\n")) == ""
    # Long first paragraphs are cut at a word count, with an ellipsis.
    assert excerpt_of("<p>" + "word " * 60 + "</p><p>next</p>", 5) == "word word word word word…"
    # An empty paragraph (a Ghost spacer) is skipped.
    assert excerpt_of("<p> </p><p>Real text.</p>") == "Real text."


def test_a_custom_excerpt_is_kept_over_the_automatic_one() -> None:
    post = Post(title="t", slug="t", custom_excerpt="Written by hand.", plaintext_excerpt="Automatic.")
    assert post.excerpt == "Written by hand."
    assert Post(title="t", slug="t", custom_excerpt="", plaintext_excerpt="Automatic.").excerpt == "Automatic."


# Highlighting --------------------------------------------------------------------------------

def test_code_is_highlighted_with_token_classes_and_stays_inert() -> None:
    html = render_markdown('```python\nimport os\nx = "<script>alert(1)</script>"\n```\n\n'
                           '```html\n<script>alert(2)</script><img src=x onerror=alert(3)>\n```\n')
    assert '<pre class="highlight"><code class="language-python">' in html
    assert '<span class="kn">import</span>' in html and '<span class="s2">' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the string is text, not markup
    assert '<span class="nt">script</span>' in html and "<script" not in html and "onerror=" not in html.replace(
        '<span class="na">onerror</span>', "")
    assert_inert(html)
    assert "style=" not in html  # class-based only: colours come from highlight.css


def test_unknown_or_missing_language_is_plain_and_classes_are_allowlisted() -> None:
    assert render_markdown("```no-such-lang\n<b>x</b>\n```\n") == (
        '<pre><code class="language-no-such-lang">&lt;b&gt;x&lt;/b&gt;\n</code></pre>\n')
    assert render_markdown("```\nplain\n```\n") == "<pre><code>plain\n</code></pre>\n"
    # The Markdown pass keeps only token classes on spans and only "highlight" on <pre>.
    assert sanitise_markdown_html('<pre class="highlight x"><span class="k evil" id="y">if</span></pre>') == (
        '<pre class="highlight"><span class="k">if</span></pre>')
    # Imported HTML keeps Pygments' token classes (our own export, re-imported) and nothing else.
    cleaned = sanitise_legacy_html('<pre class="highlight evil"><code><span class="k onclick x-1">if</span>'
                                   '<span style="color:red" class="nf">f</span></code></pre>')
    assert cleaned == '<pre class="highlight"><code><span class="k">if</span><span class="nf">f</span></code></pre>'


def test_the_committed_stylesheet_is_the_generated_one() -> None:
    committed = (ROOT / "static/css/highlight.css").read_text()
    assert committed == highlight_css()
    assert ".highlight .kn {" in committed and "@media (prefers-color-scheme: dark)" in committed


async def test_published_post_links_the_stylesheet_and_highlights(author_client: Any) -> None:
    response = await write(author_client, {"title": "Code", "markdown": "```js\nlet a = '<script>'\n```",
                                            "action": "publish"})
    assert response.status_code == 303
    page = await author_client.get("/blog/code")
    assert '<link rel="stylesheet" href="/static/css/highlight.css' in page.text
    assert '<span class="kd">let</span>' in page.text and "&lt;script&gt;" in page.text
    css = await author_client.get("/static/css/highlight.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


# Previous / next and more in #tag ------------------------------------------------------------

def _links(html: str) -> dict[str, str | None]:
    prev = re.search(r'rel="prev" href="/blog/([^"]+)"', html)
    nxt = re.search(r'rel="next" href="/blog/([^"]+)"', html)
    more = re.search(r'<section class="more-in-tag".*?</section>', html, re.DOTALL)
    return {"prev": prev.group(1) if prev else None, "next": nxt.group(1) if nxt else None,
            "more": ",".join(re.findall(r'class="post-card-title"><a href="/blog/([^"]+)"', more.group(0)))
            if more else None}


async def test_previous_next_and_more_in_tag(author_client: Any, db_session: Any) -> None:
    client = author_client
    for title, tags, when, action in [
        ("Alpha", "News", "2024-01-01T09:00", "publish"),
        ("Beta", "Other", "2024-02-01T09:00", "publish"),
        ("Gamma", "News, Other", "2024-03-01T09:00", "publish"),
        ("Delta", "News", "2024-02-15T09:00", "save"),  # a draft: never a neighbour, never "more"
        ("Same second", "News", "2024-03-01T09:00", "publish"),  # ties are ordered by id
    ]:
        saved = await write(client, {"title": title, "markdown": f"{title} body.", "tags": tags,
                                     "published_at": when, "action": action})
        assert saved.status_code == 303, saved.text[:300]
    ids = dict((await db_session.execute(select(Post.slug, Post.id))).tuples().all())
    later, earlier = sorted(["gamma", "same-second"], key=lambda s: ids[s], reverse=True)

    alpha = (await client.get("/blog/alpha")).text
    assert _links(alpha) == {"prev": None, "next": "beta", "more": f"{later},{earlier}"}
    assert "More in <a href=\"/blog/tag/news\">#News</a>" in alpha
    beta = await client.get("/blog/beta")
    assert _links(beta.text) == {"prev": "alpha", "next": earlier, "more": "gamma"}
    # Publishing any post changes neighbours, and every publish purges ``posts``.
    assert "posts" in beta.headers["surrogate-key"].split()
    assert _links((await client.get(f"/blog/{earlier}")).text)["next"] == later
    assert _links((await client.get(f"/blog/{later}")).text) == {"prev": earlier, "next": None,
                                                                         "more": f"{earlier},alpha"}
    assert "delta" not in alpha + beta.text


async def test_pages_have_no_previous_next(author_client: Any) -> None:
    await write(author_client, {"title": "A post", "markdown": "x", "action": "publish"})
    await write(author_client, {"title": "About", "markdown": "x", "type": "page", "tags": "News",
                                "action": "publish"})
    page = (await author_client.get("/blog/about")).text
    assert _links(page) == {"prev": None, "next": None, "more": None}


# Editor: the autosave's new address and the tag suggestions ------------------------------------

async def test_first_autosave_moves_the_url_and_a_reload_shows_the_draft(author_client: Any) -> None:
    client = author_client
    await client.get("/blog/admin/new")
    headers = {"HX-Request": "true", "x-csrftoken": client.cookies.get("csrftoken")}
    first = await client.post("/blog/admin/autosave", headers=headers,
                              data={"title": "Half a thought", "markdown": "Never lose me.", "post_id": ""})
    assert first.status_code == 200
    where = first.headers["hx-replace-url"]
    assert re.fullmatch(r"/blog/admin/posts/[0-9a-f-]{36}", where)
    again = await client.post("/blog/admin/autosave", headers=headers,
                              data={"title": "Half a thought", "markdown": "Never lose me. More.",
                                    "post_id": where.rsplit("/", 1)[1]})
    assert again.status_code == 200 and "hx-replace-url" not in again.headers  # only the first moves it
    reloaded = await client.get(where)
    assert reloaded.status_code == 200
    assert "Never lose me. More.</textarea>" in reloaded.text and 'value="Half a thought"' in reloaded.text


async def test_the_tag_field_suggests_existing_tags(author_client: Any) -> None:
    await write(author_client, {"title": "Tagged", "markdown": "x", "tags": "Gardening, Co-op news, #todo",
                                "action": "save"})
    page = (await author_client.get("/blog/admin/new")).text
    assert 'list="tag-suggestions"' in page
    datalist = re.search(r'<datalist id="tag-suggestions">(.*?)</datalist>', page, re.DOTALL)
    assert datalist is not None
    assert re.findall(r'<option value="([^"]+)">', datalist.group(1)) == ["#todo", "Co-op news", "Gardening"]
    assert CSRF_FIELD.search(page)
