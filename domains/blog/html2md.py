"""A small, lossy HTML → Markdown conversion for imported Ghost posts (design/domains.md §6).

Only for the editor's "convert to Markdown" action on a post that still shows its Ghost HTML:
the author sees the result in the textarea and preview before saving, and is told it is lossy.
It handles what Ghost's cards mostly emit (paragraphs, headings, emphasis, links, images with
captions, lists, quotes, code, rules, simple tables); anything else becomes its text. The input
is our sanitised ``legacy_html``, and the output goes through the normal Markdown renderer.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {"p", "div", "figure", "section", "blockquote", "ul", "ol", "pre", "table", "h1", "h2", "h3", "h4",
          "h5", "h6", "hr", "figcaption", "li", "tr"}


def _escape(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", text)


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.lists: list[list[int]] = []  # per open list: [is_ordered, counter]
        self.href: list[str | None] = []
        self.in_pre = 0
        self.quote = 0
        self.row: list[str] = []
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    # Output helpers ------------------------------------------------------------------------

    def emit(self, text: str) -> None:
        if self.cell is not None:
            self.cell.append(text)
        else:
            self.out.append(text)

    def block(self) -> None:
        if self.cell is None:
            self.out.append("\n\n" + "> " * self.quote)

    # Parser callbacks ----------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            self.block()
            self.emit("#" * int(tag[1]) + " ")
        elif tag in {"p", "div", "figure", "section", "figcaption"}:
            self.block()
        elif tag == "blockquote":
            self.quote += 1
            self.block()
        elif tag in {"ul", "ol"}:
            self.lists.append([tag == "ol", int(a.get("start") or 1) - 1])
            self.block()
        elif tag == "li":
            depth = max(len(self.lists) - 1, 0)
            marker = "-"
            if self.lists and self.lists[-1][0]:
                self.lists[-1][1] += 1
                marker = f"{self.lists[-1][1]}."
            self.emit("\n" + "> " * self.quote + "   " * depth + marker + " ")
        elif tag in {"strong", "b"}:
            self.emit("**")
        elif tag in {"em", "i"}:
            self.emit("*")
        elif tag in {"s", "del"}:
            self.emit("~~")
        elif tag == "code" and not self.in_pre:
            self.emit("`")
        elif tag == "pre":
            self.in_pre += 1
            self.block()
            self.emit("```\n")
        elif tag == "a":
            self.href.append(a.get("href") or None)
            if self.href[-1]:
                self.emit("[")
        elif tag == "img":
            src = a.get("src", "")
            if src:
                self.emit(f"![{_escape(a.get('alt', ''))}]({src})")
        elif tag == "iframe":
            src = a.get("src", "")
            if src:
                self.block()
                self.emit(f"<{src}>")
        elif tag == "br":
            self.emit("  \n" + "> " * self.quote)
        elif tag == "hr":
            self.block()
            self.emit("---")
        elif tag == "tr":
            self.row = []
        elif tag in {"td", "th"}:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in {"h1", "h2", "h3", "h4", "h5", "h6", "p", "div", "figure", "section", "figcaption"}:
            self.block()
        elif tag == "blockquote":
            self.quote = max(0, self.quote - 1)
            self.block()
        elif tag in {"ul", "ol"}:
            if self.lists:
                self.lists.pop()
            self.block()
        elif tag in {"strong", "b"}:
            self.emit("**")
        elif tag in {"em", "i"}:
            self.emit("*")
        elif tag in {"s", "del"}:
            self.emit("~~")
        elif tag == "code" and not self.in_pre:
            self.emit("`")
        elif tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)
            self.emit("```" if self.out and self.out[-1].endswith("\n") else "\n```")
            self.block()
        elif tag == "a":
            href = self.href.pop() if self.href else None
            if href:
                self.emit(f"]({href})")
        elif tag in {"td", "th"} and self.cell is not None:
            self.row.append(" ".join("".join(self.cell).split()).replace("|", "\\|"))
            self.cell = None
        elif tag == "tr":
            self.rows.append(self.row)
        elif tag == "table":
            self._table()

    def _table(self) -> None:
        rows, self.rows = [r for r in self.rows if r], []
        if not rows:
            return
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        self.block()
        self.emit("\n".join(lines))
        self.block()

    def handle_data(self, data: str) -> None:
        if self.in_pre:
            self.emit(data)
            return
        text = re.sub(r"\s+", " ", data)
        if text.strip() or (self.out and not self.out[-1].endswith((" ", "\n"))):
            self.emit(_escape(text))


def html_to_markdown(html: str) -> str:
    converter = _Converter()
    converter.feed(html)
    converter.close()
    text = "".join(converter.out)
    lines = [line.rstrip() if not line.endswith("  ") else line for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n(?:> ?)*\n(?:(?:> ?)*\n)+", lambda m: "\n" + m.group(0).strip("\n").split("\n")[-1] + "\n",
                  text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"
