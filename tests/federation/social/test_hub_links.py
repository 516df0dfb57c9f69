"""Links in the social hub: ``#tags`` in posts go to the hub's tag page, the boost icon is an
inline SVG (no emoji font needed), and a member's public profile links to their posts."""

from __future__ import annotations

import re
from typing import Any

import pytest

from federation.social.schemas import link_hashtags
from tests.federation.activitypub.test_social_hub import _note_ids, _people, _post
from tests.federation.social.test_timeline_ux import _note

pytestmark = pytest.mark.anyio


def test_hashtags_link_only_in_text() -> None:
    html = ('<p>Pressing #Cider today, #2026 &#39;x a#b https://x.org/p#anchor '
            '<a href="https://m.example/tags/fruit">#<span>fruit</span></a> <a href="/p#q">#inlink</a></p>')
    out = link_hashtags(html)
    assert '<a href="/social/tags/cider" class="mention hashtag" rel="tag">#Cider</a>' in out
    assert out.count('class="mention hashtag"') == 1  # not digits, entities, words, anchors nor links
    assert '<a href="https://m.example/tags/fruit">#<span>fruit</span></a>' in out and ">#inlink</a>" in out
    assert link_hashtags("<p>no tags</p>") == "<p>no tags</p>"
    assert link_hashtags('<img alt="#x"><p>#caf\u00e9</p>') == (
        '<img alt="#x"><p><a href="/social/tags/caf%C3%A9" class="mention hashtag" rel="tag">#caf\u00e9</a></p>')


async def test_a_hashtag_links_to_its_tag_page_and_boost_is_an_svg(client: Any) -> None:
    alice, bob = await _people(client, "alice", "bob")
    r = await _post(alice, "/social/compose", {"content": "Apple day! #Cider #<b>x</b>", "visibility": "public",
                                               "next": "/social/"})
    assert r.status_code == 303
    await _post(alice, "/social/compose", {"content": "Only friends #cider", "visibility": "followers"})
    await _post(alice, "/social/compose", {"content": "no tag here", "visibility": "public"})
    html = (await bob.get("/social/local")).text
    tagged = next(n for n in _note_ids(html) if "Apple day" in _note(html, n))
    note = _note(html, tagged)
    # Our own note carries the link as stored and federated (absolute, to this site's tag page);
    # the hub adds no second one around it.
    link = '<a href="http://127.0.0.1:8000/social/tags/cider" class="mention hashtag" rel="tag">#Cider</a>'
    assert link in note, note
    assert note.count('class="mention hashtag"') == 1, note
    assert "🔁" not in html and re.search(r'<svg class="boost-icon" aria-hidden="true"[^>]*>', note)
    assert "style=" not in note
    page = await bob.get("/social/tags/cider")
    assert page.status_code == 200 and "<h1 class=\"social-title\">#cider</h1>" in page.text
    assert "Apple day!" in page.text and "Only friends" not in page.text and "no tag here" not in page.text
    assert _note_ids(page.text) == [tagged]
    # not a tag, or a tag nobody used: an empty page, not an error
    for odd in ("%23%23", "123", "nothing"):
        empty = await bob.get(f"/social/tags/{odd}")
        assert empty.status_code == 200 and _note_ids(empty.text) == []
    anonymous = await bob.browser.switch("nobody").get("/social/tags/cider")  # a visitor: sign in first
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/account/login")


async def test_a_public_profile_links_to_the_members_posts(client: Any) -> None:
    (carol,) = await _people(client, "carol")
    await _post(carol, "/social/compose", {"content": "Carol first post", "visibility": "public"})
    profile = await carol.get("/@carol")
    match = re.search(r'<a href="(/social/accounts/carol@[^"]+)">Posts by carol</a>', profile.text)
    assert match, profile.text
    posts = await carol.get(match.group(1))
    assert posts.status_code == 200 and "<p>Carol first post</p>" in posts.text
