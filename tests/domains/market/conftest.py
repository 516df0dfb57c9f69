"""Market test fixtures: producers signed in through HTTP, products made through the service."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domains.account.models import User
from domains.market.schemas import ProductInput, VariantInput
from tests.helpers.web import CSRF_FIELD, signup


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def make_producer(client: Any, sessionmaker: async_sessionmaker[AsyncSession], username: str = "alice",
                        *, admin: bool = False, producer: bool = True) -> User:
    """Sign ``username`` up through HTTP (the client is then signed in) and grant the producer role."""
    from app.jobs import Job

    response = await signup(client, username)
    assert response.status_code == 303, response.text[:500]
    async with sessionmaker() as session, session.begin():
        user = (await session.execute(select(User).where(User.username == username))).scalar_one()
        user.is_producer = producer
        user.is_admin = admin
        await session.execute(delete(Job))  # the sign-up's own jobs are not what these tests look at
    return user


async def form_token(client: Any, page: str) -> str:
    response = await client.get(page)
    assert response.status_code == 200, (page, response.status_code, response.text[:300])
    match = CSRF_FIELD.search(response.text)
    assert match, f"no CSRF field on {page}"
    return match.group(1)


def product_input(title: str = "Heritage tomatoes", *, skus: tuple[str, ...] = ("TOM-S", "TOM-M", "TOM-L"),
                  status: str = "draft", **extra: Any) -> ProductInput:
    sizes = ("S", "M", "L", "XL", "XXL")
    return ProductInput(title=title, status=status, description_md="Grown **outdoors**.",  # type: ignore[arg-type]
                        variants=[VariantInput(sku=sku, options={"size": sizes[i]}, price_minor=250 + 100 * i)
                                  for i, sku in enumerate(skus)], **extra)


__all__ = ["form_token", "make_producer", "product_input"]
