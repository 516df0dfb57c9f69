"""Atom (RFC 4287), RSS 2.0 and sitemap XML, with full sanitised content."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape
from xml.etree import ElementTree as ET

from domains.account.models import User
from domains.blog.models import Post, Tag

ATOM_NS = "http://www.w3.org/2005/Atom"
CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
DC_NS = "http://purl.org/dc/elements/1.1/"
SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
RSS_TYPE = "application/rss+xml; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"
FEED_SIZE = 20

# RSS uses prefixed extension elements; Atom and sitemaps use their namespace as the default.
ET.register_namespace("content", CONTENT_NS)
ET.register_namespace("dc", DC_NS)
ET.register_namespace("atom", ATOM_NS)

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _iso(value: datetime | None) -> str:
    return (value or EPOCH).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _serialise(root: ET.Element) -> bytes:
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


def atom_feed(posts: Sequence[Post], *, base_url: str, title: str, self_path: str, alt_path: str) -> bytes:
    a = ""  # plain tag names under xmlns=ATOM_NS
    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    feed.set("{http://www.w3.org/XML/1998/namespace}base", base_url + "/")
    _sub(feed, f"{a}title", title)
    _sub(feed, f"{a}id", base_url + alt_path)
    _sub(feed, f"{a}updated", _iso(max((p.updated_at for p in posts), default=None)))
    _sub(feed, f"{a}link", rel="self", type="application/atom+xml", href=base_url + self_path)
    _sub(feed, f"{a}link", rel="alternate", type="text/html", href=base_url + alt_path)
    _sub(feed, f"{a}generator", "Rose Ash")
    author = _sub(feed, f"{a}author")
    _sub(author, f"{a}name", title)
    for post in posts:
        url = f"{base_url}/blog/{post.slug}"
        entry = _sub(feed, f"{a}entry")
        _sub(entry, f"{a}title", post.title)
        _sub(entry, f"{a}id", f"urn:uuid:{post.id}")
        _sub(entry, f"{a}link", rel="alternate", type="text/html", href=url)
        _sub(entry, f"{a}published", _iso(post.published_at))
        _sub(entry, f"{a}updated", _iso(post.updated_at))
        for person in post.authors:
            el = _sub(entry, f"{a}author")
            _sub(el, f"{a}name", person.name)
            _sub(el, f"{a}uri", f"{base_url}/blog/author/{person.username}")
        for tag in post.public_tags:
            _sub(entry, f"{a}category", term=tag.slug, label=tag.name)
        if post.excerpt:
            _sub(entry, f"{a}summary", post.excerpt)
        _sub(entry, f"{a}content", post.public_html or f"<p>{escape(post.excerpt)}</p>", type="html")
    return _serialise(feed)


def rss_feed(posts: Sequence[Post], *, base_url: str, title: str, description: str, self_path: str,
             alt_path: str) -> bytes:
    rss = ET.Element("rss", {"version": "2.0"})
    channel = _sub(rss, "channel")
    _sub(channel, "title", title)
    _sub(channel, "link", base_url + alt_path)
    _sub(channel, "description", description)
    _sub(channel, f"{{{ATOM_NS}}}link", rel="self", type="application/rss+xml", href=base_url + self_path)
    _sub(channel, "generator", "Rose Ash")
    newest = max((p.updated_at for p in posts), default=EPOCH)
    _sub(channel, "lastBuildDate", format_datetime(newest.astimezone(UTC), usegmt=True))
    for post in posts:
        url = f"{base_url}/blog/{post.slug}"
        item = _sub(channel, "item")
        _sub(item, "title", post.title)
        _sub(item, "link", url)
        _sub(item, "guid", str(post.id), isPermaLink="false")
        _sub(item, "pubDate", format_datetime((post.published_at or EPOCH).astimezone(UTC), usegmt=True))
        for person in post.authors:
            _sub(item, f"{{{DC_NS}}}creator", person.name)
        for tag in post.public_tags:
            _sub(item, "category", tag.name)
        body = post.public_html or f"<p>{escape(post.excerpt)}</p>"
        _sub(item, "description", body)
        _sub(item, f"{{{CONTENT_NS}}}encoded", body)
    return _serialise(rss)


def sitemap(*, base_url: str, posts: Sequence[Post], tags: Sequence[Tag], authors: Sequence[User]) -> bytes:
    s = ""  # plain tag names under xmlns=SITEMAP_NS
    urlset = ET.Element("urlset", {"xmlns": SITEMAP_NS})

    def add(path: str, lastmod: datetime | None = None) -> None:
        url = _sub(urlset, f"{s}url")
        _sub(url, f"{s}loc", base_url + path)
        if lastmod is not None:
            _sub(url, f"{s}lastmod", _iso(lastmod))

    add("/")
    add("/blog/", max((p.updated_at for p in posts), default=None))
    for post in posts:
        add(f"/blog/{post.slug}", post.updated_at)
    for tag in tags:
        add(f"/blog/tag/{tag.slug}")
    for user in authors:
        add(f"/blog/author/{user.username}")
    return _serialise(urlset)
