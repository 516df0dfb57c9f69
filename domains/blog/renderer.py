"""Markdown → sanitised HTML, and sanitising of imported (Ghost) HTML (design/domains.md §6).

One renderer serves publishing, the editor's live preview and feeds, so what an author previews
is byte for byte what readers get. Markdown is parsed by markdown-it-py with raw HTML off (so
``<script>`` and inline handlers come out as text), then cleaned by nh3 against an allowlist
that covers everything the renderer emits (footnote ids and back-links, table alignment,
fenced-code language classes, ordered-list starts). Ghost HTML gets a wider allowlist for its
cards (``figure``, ``kg-*`` classes, ``srcset``); its iframes survive only from known embed
hosts and become plain links otherwise.
"""

from __future__ import annotations

import hashlib
import html as htmllib
import re
from functools import lru_cache
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from mdit_py_plugins.footnote import footnote_plugin

RENDERER_VERSION = "1"
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"

# Every tag the Markdown renderer can emit (commonmark + table + strikethrough + footnotes).
MARKDOWN_TAGS = frozenset({
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td",
    "sup", "section",
})
MARKDOWN_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title", "id", "class"},
    "img": {"src", "alt", "title"},
    "ol": {"start", "class"},
    "li": {"id", "class"},
    "sup": {"class"},
    "section": {"class"},
    "hr": {"class"},
    "code": {"class"},
    "th": {"style"},
    "td": {"style"},
}
# Class names the renderer uses; anything else is dropped.
_MARKDOWN_CLASSES = re.compile(r"^(footnotes|footnotes-sep|footnotes-list|footnote-item|footnote-ref|"
                               r"footnote-backref|language-[A-Za-z0-9_+#.-]{1,40})$")

LEGACY_TAGS = MARKDOWN_TAGS | frozenset({
    "figure", "figcaption", "div", "span", "iframe", "b", "i", "u", "del", "ins", "mark", "small",
    "sub", "caption", "cite", "abbr", "dl", "dt", "dd", "details", "summary", "audio", "video", "source",
    "picture",
})
LEGACY_ATTRIBUTES: dict[str, set[str]] = {
    **{k: set(v) for k, v in MARKDOWN_ATTRIBUTES.items()},
    "img": {"src", "alt", "title", "srcset", "sizes", "loading", "width", "height", "class"},
    "source": {"src", "srcset", "sizes", "type", "media"},
    "video": {"src", "poster", "width", "height", "controls", "loop", "muted", "playsinline", "preload", "class"},
    "audio": {"src", "controls", "preload", "class"},
    "iframe": {"src", "width", "height", "title", "allowfullscreen", "loading"},
    "figure": {"class"},
    "figcaption": {"class"},
    "div": {"class"},
    "span": {"class"},
    "p": {"class"},
    "blockquote": {"class"},
    "a": {"href", "title", "id", "class"},
    "td": {"style", "colspan", "rowspan"},
    "th": {"style", "colspan", "rowspan"},
}
_LEGACY_CLASS = re.compile(r"^(kg-[a-z0-9-]{1,60}|language-[A-Za-z0-9_+#.-]{1,40}|footnotes?[a-z-]*|footnote-[a-z]+)$")

# Embeds from Ghost cards that may stay iframes; every other iframe becomes a link.
IFRAME_HOSTS = frozenset({
    "www.youtube.com", "www.youtube-nocookie.com", "youtube.com", "player.vimeo.com",
    "open.spotify.com", "w.soundcloud.com", "bandcamp.com", "www.openstreetmap.org",
    "codepen.io", "embed.podcasts.apple.com", "archive.org",
})

_IFRAME = re.compile(r"<iframe\b([^>]*)>.*?</iframe>", re.IGNORECASE | re.DOTALL)
_SRC = re.compile(r'\bsrc="([^"]*)"')
_TEXT_ALIGN = re.compile(r"^\s*text-align\s*:\s*(left|right|center)\s*;?\s*$")


def _filter_markdown_attr(tag: str, attr: str, value: str) -> str | None:
    if attr == "class":
        kept = [c for c in value.split() if _MARKDOWN_CLASSES.match(c)]
        return " ".join(kept) or None
    if attr == "style":
        return value if _TEXT_ALIGN.match(value) else None
    return value


def _filter_legacy_attr(tag: str, attr: str, value: str) -> str | None:
    if attr == "class":
        kept = [c for c in value.split() if _LEGACY_CLASS.match(c)]
        return " ".join(kept) or None
    if attr == "style":
        return value if _TEXT_ALIGN.match(value) else None
    if attr in {"src", "poster"} and tag in {"img", "video", "audio", "source", "iframe"}:
        scheme = urlsplit(value.strip()).scheme.lower()
        return value if scheme in {"http", "https", ""} else None
    if attr == "srcset":
        # Each candidate is "url [descriptor]": drop the whole attribute if any URL is not http(s)/relative.
        for candidate in value.split(","):
            url = candidate.strip().split(" ")[0]
            if urlsplit(url).scheme.lower() not in {"http", "https", ""}:
                return None
        return value
    return value


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).use(footnote_plugin)


def sanitise_markdown_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(MARKDOWN_TAGS),
        attributes=MARKDOWN_ATTRIBUTES,
        attribute_filter=_filter_markdown_attr,
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )


def render_markdown(source: str) -> str:
    """Markdown source → sanitised HTML (the one renderer behind publish, preview and feeds)."""
    return sanitise_markdown_html(_markdown().render(source))


def render_key(source: str) -> str:
    """Cache key for the rendered HTML: renderer version + a digest of the source."""
    return f"{RENDERER_VERSION}:{hashlib.sha256(source.encode()).hexdigest()}"


def _iframe_or_link(match: re.Match[str]) -> str:
    attrs = match.group(1)
    found = _SRC.search(attrs)
    src = htmllib.unescape(found.group(1)) if found else ""
    parts = urlsplit(src)
    if parts.scheme == "https" and (parts.hostname or "").lower() in IFRAME_HOSTS:
        return f'<iframe{attrs} sandbox="allow-scripts allow-same-origin allow-popups allow-presentation"></iframe>'
    if parts.scheme in {"http", "https"}:
        safe = htmllib.escape(src, quote=True)
        return f'<p><a href="{safe}" rel="{LINK_REL}">{safe}</a></p>'
    return ""


def sanitise_legacy_html(html: str, *, ghost_url: str = "") -> str:
    """Sanitise HTML from Ghost (import or webhook), replacing its ``__GHOST_URL__`` origin."""
    html = html.replace("__GHOST_URL__", ghost_url.rstrip("/"))
    cleaned = nh3.clean(
        html,
        tags=set(LEGACY_TAGS),
        clean_content_tags={"script", "style"},
        attributes=LEGACY_ATTRIBUTES,
        attribute_filter=_filter_legacy_attr,
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )
    return _IFRAME.sub(_iframe_or_link, cleaned)


_FOOTNOTES = re.compile(r'<section class="footnotes">.*?</section>|<sup class="footnote-ref">.*?</sup>', re.DOTALL)
_BLOCK_BOUNDARY = re.compile(r"(?=</?(?:p|div|h[1-6]|li|ul|ol|tr|td|th|br|hr|figure|figcaption|blockquote|pre|"
                             r"section|table|iframe)\b)", re.IGNORECASE)


def plain_text(html: str) -> str:
    """The visible text of sanitised HTML, whitespace collapsed (for excerpts and meta tags).

    Block boundaries become spaces (so paragraphs don't run together); footnotes are left out.
    """
    html = _BLOCK_BOUNDARY.sub(" ", _FOOTNOTES.sub("", html))
    text = nh3.clean(html, tags=set(), clean_content_tags={"script", "style"})
    return " ".join(htmllib.unescape(text).split())


def excerpt_of(html: str, words: int = 50) -> str:
    parts = plain_text(html).split()
    text = " ".join(parts[:words])
    return text + ("…" if len(parts) > words else "")


def reading_time(html: str) -> int:
    """Minutes at 275 words a minute, as Ghost estimates it (at least 1)."""
    return max(1, round(len(plain_text(html).split()) / 275))
