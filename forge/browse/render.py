"""Turning blobs into HTML: Pygments highlighting split into lines (for ``#L10`` anchors and the
blame view), binary and image detection, and Markdown through the blog's renderer and sanitiser.

Pygments' token classes are the same short ones the blog emits (``static/css/highlight.css``, one
stylesheet for both). Every line is built from Pygments tokens escaped here, so no byte of the
file reaches the page unescaped.
"""

from __future__ import annotations

import html
import mimetypes
from functools import lru_cache

from markupsafe import Markup
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_for_filename
from pygments.token import STANDARD_TYPES, _TokenType
from pygments.util import ClassNotFound

INLINE_MAX_BYTES = 1024 * 1024  # larger files are offered as downloads, never read into a page
HIGHLIGHT_MAX_BYTES = 512 * 1024  # above this (and up to INLINE_MAX_BYTES) lines are shown plain
HIGHLIGHT_MAX_LINES = 20_000
IMAGE_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".webp": "image/webp", ".bmp": "image/bmp", ".ico": "image/x-icon", ".avif": "image/avif",
}
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown")


def is_binary(data: bytes) -> bool:
    """git's own test (xdiff's buffer_is_binary): a NUL byte in the first 8000 bytes."""
    return b"\0" in data[:8000]


def image_type(name: bytes) -> str | None:
    lower = name.lower().decode(errors="replace")
    dot = lower.rfind(".")
    return IMAGE_TYPES.get(lower[dot:]) if dot >= 0 else None


def is_markdown(name: bytes) -> bool:
    return name.lower().decode(errors="replace").endswith(MARKDOWN_SUFFIXES)


def raw_content_type(name: bytes, data_head: bytes) -> tuple[str, bool]:
    """(Content-Type, as attachment) for the raw view.

    Text is always ``text/plain`` (an .html or .svg file in a repository must never run as a page
    of this site), images that cannot carry script get their own type, anything else binary is
    an ``application/octet-stream`` attachment.
    """
    if not is_binary(data_head):
        return "text/plain; charset=utf-8", False
    image = image_type(name)
    if image is not None:
        return image, False
    guessed, _ = mimetypes.guess_type(name.decode(errors="replace"))
    if (guessed and guessed.startswith(("video/", "audio/"))) or guessed == "application/pdf":
        return guessed, True
    return "application/octet-stream", True


@lru_cache(maxsize=256)
def _lexer_for(name: str) -> Lexer | None:
    try:
        return get_lexer_for_filename(name, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def _css_class(ttype: _TokenType) -> str:
    while ttype not in STANDARD_TYPES:
        ttype = ttype.parent
    return str(STANDARD_TYPES[ttype])


def highlight_lines(name: bytes, text: str) -> list[Markup]:
    """The file's lines as HTML, each closed on its own (a token spanning lines is split)."""
    raw_lines = text.split("\n")
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    lexer = _lexer_for(name.decode(errors="replace")) if (
        len(text) <= HIGHLIGHT_MAX_BYTES and len(raw_lines) <= HIGHLIGHT_MAX_LINES) else None
    if lexer is None:
        return [Markup(html.escape(line, quote=False)) for line in raw_lines]  # noqa: S704 - escaped here
    lines: list[str] = []
    current: list[str] = []
    for ttype, value in lexer.get_tokens(text):
        cls = _css_class(ttype)
        pieces = value.split("\n")
        for i, piece in enumerate(pieces):
            if i:
                lines.append("".join(current))
                current = []
            if piece:
                escaped = html.escape(piece, quote=False)
                current.append(f'<span class="{cls}">{escaped}</span>' if cls else escaped)
    if current:
        lines.append("".join(current))
    while len(lines) < len(raw_lines):
        lines.append("")
    # Every piece was escaped above; the only markup is our own <span class="…">.
    return [Markup(line) for line in lines[:len(raw_lines)]]  # noqa: S704


def markdown_html(text: str) -> Markup:
    """The blog's renderer: raw HTML off, nh3 allowlist, Pygments in fenced code."""
    from domains.blog.renderer import render_markdown

    return Markup(render_markdown(text))  # noqa: S704 - sanitised by nh3 in render_markdown


def decode_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
