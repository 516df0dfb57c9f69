"""The blog's renderer is the kernel's (app/markdown.py), so other domains (the market's product
descriptions) render Markdown exactly as posts do; this module keeps the blog's own import path."""

from __future__ import annotations

from app.markdown import (
    HIGHLIGHT_CLASS,
    RENDERER_VERSION,
    TOKEN_CLASSES,
    excerpt_of,
    first_paragraph,
    highlight_code,
    highlight_css,
    plain_text,
    reading_time,
    render_key,
    render_markdown,
    sanitise_legacy_html,
    sanitise_markdown_html,
)

__all__ = [
    "HIGHLIGHT_CLASS",
    "RENDERER_VERSION",
    "TOKEN_CLASSES",
    "excerpt_of",
    "first_paragraph",
    "highlight_code",
    "highlight_css",
    "plain_text",
    "reading_time",
    "render_key",
    "render_markdown",
    "sanitise_legacy_html",
    "sanitise_markdown_html",
]
