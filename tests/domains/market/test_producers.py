"""Producers: who may manage what. A producer manages their own producers' products and profile;
another producer's is absent (404) on every route; staff (administrators) manage all; members
without the producer role are refused (403); the admin's roles form grants the role."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.exceptions import NotFoundException
from sqlalchemy import select

from domains.account.models import User
from domains.market.models import Producer, ProducerMember, Product
from domains.market.schemas import ProducerInput
from domains.market.services import CatalogueService, ProducerService
from tests.domains.blog.test_roles import member
from tests.domains.market.conftest import form_token, make_producer, product_input
from tests.domains.market.helpers import THREE, photo, submit
from tests.helpers.web import login

pytestmark = pytest.mark.anyio


async def alices_product(client: Any, sessionmaker: Any) -> tuple[str, str]:
    await make_producer(client, sessionmaker, "alice")
    made = await submit(client, {**THREE, "status": "active"})
    assert made.status_code == 303
    async with sessionmaker() as session:
        producer = (await session.execute(select(Producer))).scalar_one()
    return str(made.headers["location"]), f"/market/admin/producers/{producer.id}"


async def test_another_producers_product_is_absent(client: Any, sessionmaker: Any) -> None:
    product, profile = await alices_product(client, sessionmaker)
    async with sessionmaker() as session:
        image_id = "00000000-0000-4000-8000-000000000000"
        before = (await session.execute(select(Product.title, Product.revision))).one()
    client.cookies.clear()
    await make_producer(client, sessionmaker, "bob")
    token = await form_token(client, "/market/admin/new")
    for path in (product, f"{product}/archive"):
        assert (await client.get(path)).status_code == 404, path
    for path, data in ((product, {**THREE, "title": "Taken over"}), (f"{product}/archive", {}),
                       (f"{product}/stock", {}), (f"{product}/images/arrange", {}),
                       (f"{product}/images/{image_id}/delete", {})):
        response = await client.post(path, data={**data, "_csrf_token": token})
        assert response.status_code == 404, (path, response.status_code)
    upload = await client.post(f"{product}/images", data={"_csrf_token": token},
                               files={"image": ("x.jpg", photo(size=(300, 200)), "image/jpeg")})
    assert upload.status_code == 404
    assert (await client.get(profile)).status_code == 404
    assert (await client.post(profile, data={"name": "Mine now", "_csrf_token": token})).status_code == 404
    async with sessionmaker() as session:
        assert (await session.execute(select(Product.title, Product.revision))).one() == before
        assert (await session.execute(select(Producer.name))).scalars().all() == ["alice", "bob"] or \
            (await session.execute(select(Producer.name))).scalars().all() == ["alice"]

    # An administrator manages every producer's products.
    client.cookies.clear()
    await make_producer(client, sessionmaker, "ada", admin=True, producer=False)
    assert (await client.get(product)).status_code == 200
    listing = await client.get("/market/admin/")
    assert "Wool socks" in listing.text and "All products" in listing.text
    assert (await client.get(profile)).status_code == 200


async def test_members_without_the_role_are_refused(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "dave", producer=False)
    for path in ("/market/admin/", "/market/admin/new", "/market/admin/low-stock", "/market/admin/producers"):
        assert (await client.get(path)).status_code == 403, path
    assert (await client.get("/market/admin/categories")).status_code == 403  # staff only
    client.cookies.clear()
    assert (await client.get("/market/admin/")).status_code in (302, 303, 401)


async def test_a_producer_edits_their_profile(client: Any, sessionmaker: Any) -> None:
    _, profile = await alices_product(client, sessionmaker)
    token = await form_token(client, profile)
    saved = await client.post(profile, data={"_csrf_token": token, "name": "Alice's Farm", "slug": "alices-farm",
                                             "description": "Sheep and socks.", "location": "Ghent",
                                             "contact": "alice@example.org"})
    assert saved.status_code == 303
    async with sessionmaker() as session:
        producers = ProducerService(session, base_url="https://coop.example")
        producer = await producers.by_slug("alices-farm")
        assert producer is not None and (producer.name, producer.location) == ("Alice's Farm", "Ghent")
        read = producers.read(producer)
        assert read.url == "https://coop.example/market/producer/alices-farm" and read.logo is None
    bad = await client.post(profile, data={"_csrf_token": token, "name": "", "slug": "Not A Slug!"})
    assert bad.status_code == 422 and "Give the producer a name" in bad.text and "lowercase" in bad.text
    # A second producer with that slug: taken, with a suggestion.
    created = await client.post("/market/admin/producers", data={"_csrf_token": token, "name": "Farm two",
                                                                 "slug": "alices-farm"})
    assert created.status_code == 422 and "alices-farm-2" in created.text


async def test_service_guards(db_session: Any) -> None:
    alice, bob = await member(db_session, "alice"), await member(db_session, "bob")
    alice.is_producer = bob.is_producer = True
    catalogue = CatalogueService(db_session)
    product = await catalogue.save(alice, product_input())
    with pytest.raises(NotFoundException):
        await catalogue.archive(bob, product)
    with pytest.raises(NotFoundException):
        await catalogue.save(bob, product_input("Mine"), product=product)
    producers = ProducerService(db_session)
    bobs = await producers.own(bob)
    from app.forms import InputProblems

    with pytest.raises(InputProblems):  # putting a product under someone else's producer
        data = product_input("Sneaky", skus=("SN-1",))
        data.producer_id = product.producer_id
        await catalogue.save(bob, data)
    with pytest.raises(NotFoundException):
        await producers.save(bob, ProducerInput(name="Renamed"), producer=product.producer)
    assert [p.id for p in await producers.for_user(bob)] == [bobs.id]
    carol = await member(db_session, "carol")  # no producer role
    with pytest.raises(InputProblems) as refused:
        await catalogue.save(carol, product_input("Nope", skus=("NO-1",)))
    assert refused.value.status == 403


async def test_the_admin_grants_the_producer_role(client: Any, sessionmaker: Any) -> None:
    await make_producer(client, sessionmaker, "erin", producer=False)
    client.cookies.clear()
    await make_producer(client, sessionmaker, "ada", admin=True, producer=False)
    async with sessionmaker() as session:
        erin = (await session.execute(select(User).where(User.username == "erin"))).scalar_one()
    page = await client.get("/account/admin/users")
    assert 'name="is_producer"' in page.text
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert token
    granted = await client.post(f"/account/admin/users/{erin.id}/roles",
                                data={"_csrf_token": token.group(1), "is_active": "on", "is_producer": "on"})
    assert granted.status_code == 303
    async with sessionmaker() as session:
        erin = (await session.execute(select(User).where(User.username == "erin"))).scalar_one()
        assert erin.is_producer and erin.role_names == ["producer"]
    client.cookies.clear()
    assert (await login(client, "erin")).status_code == 303
    assert (await client.get("/market/admin/new")).status_code == 200


async def test_an_admin_adds_members_and_sells_as_their_producer(client: Any, sessionmaker: Any) -> None:
    """The walk's finding: an administrator made "Hillside Farm", then their first product went to
    an automatic producer named after them. Now they add themselves (by username) as a member on
    the producer page, and their products go to Hillside Farm; an unknown username writes nothing."""
    await make_producer(client, sessionmaker, "ada", admin=True, producer=False)
    listing = await client.get("/market/admin/producers")
    # One tab for the producers page, not the site admin's "Producers" and the market's "Producer profile".
    assert listing.text.count('href="/market/admin/producers"') == 1 and "Producer profile<" not in listing.text
    token = await form_token(client, "/market/admin/producers")
    made = await client.post("/market/admin/producers", data={"_csrf_token": token, "name": "Hillside Farm"})
    assert made.status_code == 303
    page = made.headers["location"].split("?")[0]
    form = await client.get(page)
    assert f'action="{page}/members"' in form.text and "No members yet." in form.text
    unknown = await client.post(f"{page}/members", data={"_csrf_token": token, "username": "@nobody"})
    assert unknown.status_code == 422 and "No member is called @nobody." in unknown.text
    assert (await client.post(f"{page}/members", data={"username": "ada"})).status_code == 403  # no CSRF token
    async with sessionmaker() as session:
        assert (await session.execute(select(ProducerMember))).scalars().all() == []
    added = await client.post(f"{page}/members", data={"_csrf_token": token, "username": "@Ada"})
    assert added.status_code == 303
    assert "@ada" in (await client.get(page)).text
    product = await submit(client, {**THREE, "title": "Hillside eggs"})
    assert product.status_code == 303
    async with sessionmaker() as session:
        assert (await session.execute(select(Producer.name))).scalars().all() == ["Hillside Farm"]
        assert (await session.execute(select(Producer.name).join(Product, Product.producer_id == Producer.id))
                ).scalars().all() == ["Hillside Farm"]

    # A producer (not staff) may not add members, even to their own producer.
    client.cookies.clear()
    await make_producer(client, sessionmaker, "bea")
    token = await form_token(client, "/market/admin/producers")
    refused = await client.post(f"{page}/members", data={"_csrf_token": token, "username": "bea"})
    assert refused.status_code == 403


async def test_own_is_the_first_producer_by_name(db_session: Any) -> None:
    alice = await member(db_session, "alice")
    alice.is_producer = True
    producers = ProducerService(db_session)
    zed = await producers.save(None, ProducerInput(name="Zed Orchard"), members=[alice])
    apple = await producers.save(None, ProducerInput(name="Apple Barn"), members=[alice])
    assert (await producers.own(alice)).id == apple.id != zed.id
    assert len(await producers.all()) == 2  # nothing new named after alice
