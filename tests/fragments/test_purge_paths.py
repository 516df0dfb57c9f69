"""Every surrogate key a page or fragment emits has a purge path (issue 12, item 5).

From a seeded database (a member who writes, a published post and page with a tag, saved
navigation, a public forge repository) every cacheable page, every registered shared fragment
and embed, and the seeded items' own pages are fetched and their ``Surrogate-Key`` values
collected. Each key is then matched to the change that must refresh what it tags; that change is
made through the service (or, for the forge, the web form) that users' changes go through, and
the ``edge.purge`` jobs it wrote must contain the key. A key no rule matches fails the test, so a
new key needs a purge path (or a place in ``fragments.keys.RELEASE_ONLY``) before it can ship.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.caching import CachePolicy
from app.jobs import Job
from domains.account.models import User
from domains.account.schemas import SignupInput
from domains.account.services import AccountService
from domains.blog.models import PAGE, POST, Post, PostAuthor, PostTag, Tag
from domains.blog.schemas import NavLink, PostInput
from domains.blog.services import BlogService, NavigationService, with_relations
from forge.models import ForgeRepo
from fragments.keys import RELEASE_ONLY
from fragments.purge import PURGE_KIND
from fragments.registry import registry
from tests.fragments.test_fragment_headers import cacheable_urls
from tests.helpers.web import post_form, signup

pytestmark = pytest.mark.anyio

SessionMaker = async_sessionmaker[AsyncSession]


@dataclass
class Seed:
    writer: str
    post_slug: str
    page_slug: str
    tag_slug: str
    repo: str


async def _writer(sm: SessionMaker, username: str) -> User:
    async with sm() as session:
        return (await session.execute(select(User).where(User.username == username))).scalar_one()


async def _publish(sm: SessionMaker, username: str, data: PostInput) -> Post:
    async with sm() as session, session.begin():
        return await BlogService(session).save(await _writer(sm, username), data, "publish")


async def seed(client: Any, sm: SessionMaker) -> Seed:
    await signup(client, "alice")  # the client stays signed in as alice (the forge form needs her)
    async with sm() as session, session.begin():
        alice = (await session.execute(select(User).where(User.username == "alice"))).scalar_one()
        alice.is_admin = True
        await AccountService(session).set_author(alice, True)
    post = await _publish(sm, "alice", PostInput(title="Hello", markdown="Hi.", tags="News"))
    page = await _publish(sm, "alice", PostInput(type=PAGE, title="About", markdown="Us.", tags="News"))
    async with sm() as session, session.begin():
        await NavigationService(session).save([NavLink(label="Blog", url="/blog/")], [])
    created = await post_form(client, "/forge/new", {"name": "demo", "description": "", "default_branch": "main",
                                                     "visibility": "public"}, page="/forge/new")
    assert created.status_code == 303, created.text[:300]
    return Seed(writer="alice", post_slug=post.slug, page_slug=page.slug, tag_slug="news", repo="demo")


def urls_to_fetch(app: Any, s: Seed) -> list[str]:
    urls = list(cacheable_urls(app))
    for spec in registry:  # every shared fragment with its documented example params, then the seeded items
        if spec.policy is CachePolicy.SHARED_FRAGMENT and spec.params:
            urls.append(f"{spec.url}?{urlencode(spec.params)}")
    urls += [f"/f/blog/post-card?slug={s.post_slug}", f"/f/blog/post-card?slug={s.page_slug}",
             f"/blog/{s.post_slug}", f"/blog/{s.page_slug}", f"/blog/tag/{s.tag_slug}",
             f"/blog/tag/{s.tag_slug}/feed.rss", f"/blog/author/{s.writer}", f"/blog/author/{s.writer}/feed.rss",
             f"/forge/{s.writer}", f"/forge/{s.writer}/{s.repo}"]
    return urls


async def emitted_keys(client: Any, urls: list[str]) -> dict[str, str]:
    """Each surrogate key seen, with the first URL that emitted it."""
    seen: dict[str, str] = {}
    for url in urls:
        response = await client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        for key in response.headers.get("surrogate-key", "").split():
            seen.setdefault(key, url)
    return seen


# -- the changes that must purge each key family ---------------------------------------------------------------
Action = Callable[["Paths", re.Match[str]], Awaitable[None]]


@dataclass
class Paths:
    client: Any
    sm: SessionMaker
    seed: Seed

    async def purged_by(self, change: Callable[[], Awaitable[None]]) -> set[str]:
        """The keys of every ``edge.purge`` job that ``change`` wrote."""
        async with self.sm() as session:
            before = set((await session.scalars(select(Job.id).where(Job.kind == PURGE_KIND))).all())
        await change()
        async with self.sm() as session:
            jobs = (await session.scalars(select(Job).where(Job.kind == PURGE_KIND))).all()
        return {key for job in jobs if job.id not in before for key in job.payload["keys"]}

    async def edit(self, where: Any) -> None:
        """Retitle the first published post or page matching ``where`` through the editor's service."""
        async with self.sm() as session, session.begin():
            row = (await session.execute(with_relations(select(Post)).where(where).limit(1))).scalar_one()
            editor = await session.get(User, row.author_links[0].author_id)
            assert editor is not None
            data = PostInput(type=row.type, title=row.title + " (edited)", slug=row.slug, markdown=row.markdown,
                             tags=", ".join(t.name for t in row.tags),
                             authors=", ".join(a.username for a in row.authors))
            await BlogService(session).save(editor, data, "save", post=row)

    async def forge_settings(self, repo_id: UUID) -> None:
        async with self.sm() as session:
            repo = await session.get(ForgeRepo, repo_id)
            assert repo is not None
            owner = await session.get(User, repo.owner_id)
            assert owner is not None
        path = f"/forge/{owner.username}/{repo.name}/settings"
        response = await post_form(self.client, path, {"description": "Edited.", "visibility": "public",
                                                       "default_branch": repo.default_branch}, page=path)
        assert response.status_code == 303, response.text[:300]


async def edit_item(p: Paths, m: re.Match[str]) -> None:
    await p.edit(Post.id == UUID(m["id"]))


async def publish_new(p: Paths, m: re.Match[str]) -> None:
    kind = PAGE if m[0] == "pages" else POST
    await _publish(p.sm, p.seed.writer, PostInput(type=kind, title=f"Another {kind}", markdown="More."))


async def edit_tagged(p: Paths, m: re.Match[str]) -> None:
    tagged = select(PostTag.post_id).join(Tag, Tag.id == PostTag.tag_id).where(Tag.slug == m["slug"])
    await p.edit(Post.id.in_(tagged) & (Post.status == "published"))


async def edit_authored(p: Paths, m: re.Match[str]) -> None:
    by = select(PostAuthor.post_id).join(User, User.id == PostAuthor.author_id).where(User.username == m["name"])
    await p.edit(Post.id.in_(by) & (Post.status == "published"))


async def save_navigation(p: Paths, m: re.Match[str]) -> None:
    async with p.sm() as session, session.begin():
        await NavigationService(session).save([NavLink(label="Forge", url="/forge/")], [])


async def new_member(p: Paths, m: re.Match[str]) -> None:
    async with p.sm() as session, session.begin():
        await AccountService(session).signup(SignupInput(username="newcomer", email="newcomer@example.org",
                                                         password="correct horse battery staple"))


async def profile_change(p: Paths, m: re.Match[str]) -> None:
    name = m["name"] if "name" in m.groupdict() else p.seed.writer
    async with p.sm() as session, session.begin():
        member = (await session.execute(select(User).where(User.username == name))).scalar_one()
        await AccountService(session).update_profile(member, member.name + " Jr", "A new bio.")


async def role_change(p: Paths, m: re.Match[str]) -> None:
    """An admin makes the author an editor too (a role change, not a profile change)."""
    async with p.sm() as session, session.begin():
        member = (await session.execute(select(User).where(User.username == m["name"]))).scalar_one()
        await AccountService(session).set_editor(member, not member.is_editor)


async def new_repository(p: Paths, m: re.Match[str]) -> None:
    response = await post_form(p.client, "/forge/new", {"name": "another", "description": "", "visibility": "public",
                                                        "default_branch": "main"}, page="/forge/new")
    assert response.status_code == 303, response.text[:300]


async def repo_settings(p: Paths, m: re.Match[str]) -> None:
    await p.forge_settings(UUID(m["id"]))


async def owner_repo_settings(p: Paths, m: re.Match[str]) -> None:
    async with p.sm() as session:
        repo_id = (await session.scalars(select(ForgeRepo.id).where(ForgeRepo.owner_id == UUID(m["id"]))
                                         .limit(1))).one()
    await p.forge_settings(repo_id)


async def new_product(p: Paths, m: re.Match[str]) -> None:
    """A producer lists an active product (the market's lists: index, search, latest)."""
    from domains.market.models import Producer
    from domains.market.schemas import ProductInput, VariantInput
    from domains.market.services.catalogue import CatalogueService

    async with p.sm() as session, session.begin():
        producer = Producer(name="Purge Farm", slug=f"purge-farm-{len(m[0])}")
        session.add(producer)
        await session.flush()
        await CatalogueService(session).save(None, ProductInput(
            title="Purge honey", status="active", producer_id=producer.id,
            variants=[VariantInput(sku=f"PURGE-{producer.id.hex[:8]}", price_minor=100)]))


async def new_market_page(p: Paths, m: re.Match[str]) -> None:
    from domains.market.pages import MarketPageService, PageForm

    async with p.sm() as session, session.begin():
        await MarketPageService(session).save(PageForm(title="A market", published="1"))


async def publish_product(p: Paths, m: re.Match[str]) -> None:
    """A new active product, then a stock change on it: both change what product lists show."""
    from uuid import uuid4

    from domains.market.schemas import ProductInput, VariantInput
    from domains.market.services import CatalogueService

    sku = f"PP-{uuid4().hex[:8]}"
    async with p.sm() as session, session.begin():
        seller = await _writer(p.sm, p.seed.writer)
        await CatalogueService(session).save(seller, ProductInput(
            title="Purged jam", status="active", variants=[VariantInput(sku=sku, price_minor=300)]))
    stocked = await p.purged_by(lambda: _stock(p, sku))
    assert m[0] in stocked, f"a stock change does not purge {m[0]}"


async def _stock(p: Paths, sku: str) -> None:
    from domains.market.schemas import StockAdjust
    from domains.market.services import CatalogueService

    async with p.sm() as session, session.begin():
        await CatalogueService(session).adjust_stock(None, StockAdjust(sku=sku, add=3))


async def edit_product(p: Paths, m: re.Match[str]) -> None:
    from domains.market.schemas import ProductInput, VariantInput
    from domains.market.services import CatalogueService

    async with p.sm() as session, session.begin():
        catalogue = CatalogueService(session)
        product = await catalogue.get(UUID(m["id"]))
        assert product is not None
        await catalogue.save(None, ProductInput(
            title=product.title + " (edited)", slug=product.slug, status="active",
            variants=[VariantInput(sku=v.sku, price_minor=v.price_minor + 1, options=dict(v.options), id=v.id)
                      for v in product.variants]), product=product)


async def producer_profile(p: Paths, m: re.Match[str]) -> None:
    from domains.market.schemas import ProducerInput
    from domains.market.services import ProducerService

    async with p.sm() as session, session.begin():
        producers = ProducerService(session)
        producer = await producers.get(UUID(m["id"]))
        assert producer is not None
        await producers.save(None, ProducerInput(name=producer.name + " & Co", slug=producer.slug), producer=producer)


async def new_event(p: Paths, m: re.Match[str]) -> None:
    """Staff add an event (every list, grid, feed and widget of events)."""
    from datetime import date, timedelta

    from domains.events.services.events import EventForm, EventService

    async with p.sm() as session, session.begin():
        await EventService(session).save(EventForm(
            title=f"Purge night {len(m[0])}", start_date=(date.today() + timedelta(days=3)).isoformat(),
            start_time="19:00", end_time="21:00", tz="Europe/London"))


async def edit_event(p: Paths, m: re.Match[str]) -> None:
    """Staff move an event (its page, card and feed)."""
    from uuid import UUID as Uuid

    from domains.events.models import Event
    from domains.events.services.events import EventForm, EventService

    async with p.sm() as session, session.begin():
        event = await session.get(Event, Uuid(m["id"]))
        assert event is not None
        service = EventService(session)
        await service.save(EventForm(title=event.title, slug=event.slug, start_date=event.starts_local.date()
                                     .isoformat(), start_time="20:00", end_time="22:00", tz=event.tz),
                           event=await service.get(event.slug))


UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Each key family and the changes that alter what it tags: every one of them must purge the key.
PURGE_PATHS: list[tuple[re.Pattern[str], tuple[Action, ...]]] = [
    (re.compile(rf"(post|page):(?P<id>{UUID_RE})"), (edit_item,)),
    (re.compile(r"posts|pages"), (publish_new,)),
    (re.compile(r"tag:(?P<slug>.+)"), (edit_tagged,)),
    (re.compile(r"author:(?P<name>.+)"), (edit_authored, profile_change, role_change)),
    (re.compile(r"nav"), (save_navigation,)),
    (re.compile(r"members"), (new_member, profile_change)),
    (re.compile(r"forge"), (new_repository,)),
    (re.compile(rf"forge-repo-(?P<id>{UUID_RE})"), (repo_settings,)),
    (re.compile(rf"forge-user-(?P<id>{UUID_RE})"), (owner_repo_settings,)),
    (re.compile(r"market-products"), (new_product, publish_product)),
    (re.compile(r"market-pages"), (new_market_page,)),
    (re.compile(rf"market-product:(?P<id>{UUID_RE})"), (edit_product,)),
    (re.compile(rf"market-producer:(?P<id>{UUID_RE})"), (producer_profile,)),
    (re.compile(r"events|events-calendar:.+"), (new_event,)),
    (re.compile(rf"event:(?P<id>{UUID_RE})"), (edit_event,)),
]


def purge_paths(key: str) -> tuple[tuple[Action, ...], re.Match[str]] | None:
    for pattern, actions in PURGE_PATHS:
        if match := pattern.fullmatch(key):
            return actions, match
    return None


async def test_every_emitted_key_has_a_purge_path(app: Any, client: Any, engine: AsyncEngine) -> None:
    sm = async_sessionmaker(engine, expire_on_commit=False)
    s = await seed(client, sm)
    emitted = await emitted_keys(client, urls_to_fetch(app, s))
    # The seeded items are on the pages: a broken seed must not pass by emitting nothing.
    assert {"nav", "members", "posts", "pages", "forge", f"tag:{s.tag_slug}", f"author:{s.writer}"} <= set(emitted)
    assert sum(1 for k in emitted if k.startswith(("post:", "page:"))) >= 2

    paths = Paths(client, sm, s)
    missing: list[str] = []
    for key, url in sorted(emitted.items()):
        if key in RELEASE_ONLY:
            continue
        found = purge_paths(key)
        if found is None:
            missing.append(f"{key} (from {url}): no change purges this key family")
            continue
        actions, match = found
        for action in actions:
            purged = await paths.purged_by(lambda: action(paths, match))  # noqa: B023 (awaited at once)
            if key not in purged:
                missing.append(f"{key} (from {url}): {action.__name__} purged only {sorted(purged)}")
    assert not missing, "keys without a purge path:\n" + "\n".join(missing)


async def test_a_page_card_is_purged_by_editing_the_page(client: Any, engine: AsyncEngine) -> None:
    """The bug this test was written for: a page's card was tagged ``post:<id>``, its edit purged ``page:<id>``."""
    sm = async_sessionmaker(engine, expire_on_commit=False)
    s = await seed(client, sm)
    card = await client.get(f"/f/blog/post-card?slug={s.page_slug}")
    async with sm() as session:
        page_id = (await session.scalars(select(Post.id).where(Post.slug == s.page_slug))).one()
    assert card.headers["surrogate-key"].split() == [f"page:{page_id}"]
    paths = Paths(client, sm, s)
    assert f"page:{page_id}" in await paths.purged_by(lambda: paths.edit(Post.id == page_id))
