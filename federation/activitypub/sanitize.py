"""nh3 (Ammonia) sanitisation of every remote HTML field, on ingest (design/federation.md §8)."""

from __future__ import annotations

import html
import re

import nh3

__all__ = ["ALLOWED_TAGS", "plain_text", "sanitize_html", "text_to_html"]

ALLOWED_TAGS = frozenset({
    "p", "br", "a", "span", "ul", "ol", "li", "blockquote", "pre", "code", "em", "strong",
    "h1", "h2", "h3", "h4", "h5", "h6",
})
_ATTRIBUTES: dict[str, set[str]] = {"*": set(), "a": {"href"}}
_CLASSES = {"a": {"mention", "hashtag", "u-url"}, "span": {"mention", "hashtag", "invisible", "ellipsis", "h-card"}}
_ALLOWED_CLASS_VALUES = {"mention", "hashtag", "invisible", "ellipsis"}
MAX_HTML = 100_000


def sanitize_html(value: object) -> str:
    """Sanitise remote HTML against the allowlist; non-strings become ""."""
    if not isinstance(value, str) or not value:
        return ""
    cleaned = nh3.clean(
        value[:MAX_HTML],
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style"},
        attributes={k: set(v) for k, v in _ATTRIBUTES.items()},
        url_schemes={"http", "https"},
        link_rel="nofollow noopener noreferrer",
        allowed_classes={k: {c for c in v if c in _ALLOWED_CLASS_VALUES} for k, v in _CLASSES.items()},
        strip_comments=True,
        url_relative="deny",
    )
    return cleaned.strip()


_TAG = re.compile(r"<[^>]*>")


def plain_text(value: object, limit: int = 2000) -> str:
    """Remote text that we show as text (names, content warnings): tags dropped, unescaped."""
    if not isinstance(value, str):
        return ""
    return html.unescape(_TAG.sub("", nh3.clean(value[:limit], tags=set()))).strip()


_URL = re.compile(r"https?://[^\s<>\"']+")


def text_to_html(text: str) -> str:
    """A local member's plain text as HTML paragraphs with links (escaped first)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    out = []
    for para in paragraphs:
        escaped = html.escape(para)
        linked = _URL.sub(lambda m: f'<a href="{m.group(0)}" rel="nofollow noopener noreferrer">{m.group(0)}</a>',
                          escaped)
        out.append("<p>" + linked.replace("\n", "<br>") + "</p>")
    return "".join(out)
