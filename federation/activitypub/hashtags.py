"""Hashtags of notes: found in a local note's text at post time, read from a received note's
AS2 ``tag`` array (Mastodon's ``Hashtag`` extension, docs.joinmastodon.org/spec/activitypub/#Hashtag),
and indexed in ``ap_hashtag`` so the tag timeline is one indexed join, not a scan of JSON."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from federation.activitypub.models import APObject, Hashtag

MAX_TAG = 100  # characters of one tag (Mastodon allows no more either)
MAX_TAGS = 30  # tags indexed per note: a note with more is spam, not a topic
# ``#word`` not inside a word or URL (``a#b``, ``/page#anchor``); Mastodon's rule, letters,
# digits and underscores, at least one character not a digit.
HASHTAG = re.compile(r"(?<![\w/&#])#(\w{1,100})", re.UNICODE)


def normalize(raw: str) -> str:
    """A tag as we store and look it up: no ``#``, lower case; "" when it is not a tag."""
    name = raw.strip().removeprefix("#").lower()
    if not name or len(name) > MAX_TAG or not re.fullmatch(r"\w+", name) or name.isdigit():
        return ""
    return name


def tags_in_text(text: str) -> list[str]:
    """Hashtags written in a note's text, as written (first spelling kept), each once."""
    seen: dict[str, str] = {}
    for m in HASHTAG.finditer(text):
        if (key := normalize(m.group(1))) and key not in seen:
            seen[key] = m.group(1)
    return list(seen.values())[:MAX_TAGS]


_TAG_OR_TEXT = re.compile(r"(<[^>]*>)")


def link_tags(html: str, href: Callable[[str], str]) -> str:
    """``#tag`` in sanitised HTML as a link to ``href(tag)`` (the tag normalised), as Mastodon links
    them; text inside a link (a received post's own tag links, a URL's ``#anchor``) and inside
    tags is left alone. Only text between tags gains a link whose name is a run of word characters
    (HASHTAG), so the result is as safe as it was; an entity's ``&#39;`` is no tag (HASHTAG looks
    behind for ``&``)."""
    if "#" not in html:
        return html

    def link(m: re.Match[str]) -> str:
        name = normalize(m.group(1))
        if not name:
            return m.group(0)
        return f'<a href="{href(name)}" class="mention hashtag" rel="tag">#{m.group(1)}</a>'

    out: list[str] = []
    depth = 0
    for part in _TAG_OR_TEXT.split(html):
        if part.startswith("<"):
            name = part[1:].lstrip("/").split(None, 1)[0].rstrip(">").lower() if len(part) > 2 else ""
            if name == "a":
                depth += -1 if part.startswith("</") else 1
            out.append(part)
        elif depth <= 0 and "#" in part:
            out.append(HASHTAG.sub(link, part))
        else:
            out.append(part)
    return "".join(out)


def tags_in_document(tag: Any) -> list[str]:
    """Hashtag names in a received object's ``tag`` (an object or an array of them)."""
    items = tag if isinstance(tag, list) else [tag]
    names = [normalize(str(t.get("name", ""))) for t in items
             if isinstance(t, dict) and t.get("type") == "Hashtag" and isinstance(t.get("name"), str)]
    return list(dict.fromkeys(n for n in names if n))[:MAX_TAGS]


async def index(session: AsyncSession, obj: APObject, names: list[str]) -> None:
    """Replace the object's indexed hashtags (a received Update may change them)."""
    await session.execute(delete(Hashtag).where(Hashtag.object_id == obj.id))
    for name in dict.fromkeys(n for raw in names if (n := normalize(raw))):
        session.add(Hashtag(object_id=obj.id, name=name))
    await session.flush()
