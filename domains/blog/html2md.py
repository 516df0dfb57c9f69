"""A lossy HTML → Markdown conversion for imported Ghost posts (design/domains.md §6), by markdownify.

Only for the editor's "convert to Markdown" action on a post that still shows its Ghost HTML:
the author sees the result in the textarea and preview before saving, and is told it is lossy.
The input is our sanitised ``legacy_html``, and the output goes through the normal Markdown
renderer, which sanitises again: nothing here has to make the Markdown safe, only readable.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from markdownify import ATX, MarkdownConverter

if TYPE_CHECKING:
    from bs4 import Tag  # markdownify's parser

_MISC = re.compile(r"([\\`\[\]<>])")


class _GhostConverter(MarkdownConverter):
    """markdownify with the house style (ATX headings, ``-`` bullets, ``*`` emphasis, fenced
    code, GFM tables) and Ghost's embed cards: an iframe becomes a link to what it showed."""

    # markdownify's stubs declare its public calls but not the escape and convert_<tag> hooks
    # that a custom converter overrides (its documented way to extend it): hence the ignores.

    def escape(self, text: str, parent_tags: set[str]) -> str:
        # Brackets, angles, backslashes and backticks in text stay text (not links, HTML or code).
        # Not markdownify's escape_misc, which also escapes every "2014." that might start a list.
        escaped: str = super().escape(_MISC.sub(r"\\\1", text), parent_tags)  # type: ignore[misc]
        if parent_tags & {"td", "th"}:  # a "|" in a cell would end the cell
            escaped = escaped.replace("|", "\\|")
        return escaped

    def convert_img(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        alt = el.get("alt")
        if isinstance(alt, str):  # markdownify writes the alt text as it is: "[" would end it early
            el["alt"] = _MISC.sub(r"\\\1", alt)
        converted: str = super().convert_img(el, text, parent_tags)  # type: ignore[misc]
        return converted

    def convert_iframe(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        src = el.get("src")
        return f"\n\n<{src}>\n\n" if isinstance(src, str) and src else ""


_CONVERTER = _GhostConverter(
    heading_style=ATX, bullets="-", strong_em_symbol="*",
    table_infer_header=True,  # Ghost's tables often have no <th>; GFM needs a header row
)


def html_to_markdown(html: str) -> str:
    text: str = _CONVERTER.convert(html)
    # markdownify leaves runs of blank lines where Ghost's wrappers (figure, div) stood.
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
