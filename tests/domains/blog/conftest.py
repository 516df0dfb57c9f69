"""Blog test fixtures: settings with a Ghost webhook secret, signed-in authors, the guard log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.settings import Settings
from tests.helpers.web import post_form, signup

WEBHOOK_SECRET = "ghost-webhook-secret-for-tests"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ghost"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings plus a Ghost webhook secret and origin."""
    return msgspec.structs.replace(settings, ghost_webhook_secret=WEBHOOK_SECRET,
                                   ghost_url="https://old-ghost.example")


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class GuardLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def public_guard() -> Iterator[None]:
    """Any public blog response that touched the session fails the test (design/fragments.md §2)."""
    handler = GuardLog()
    logger = logging.getLogger("rose_ash.fragments.guard")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.records:
        pytest.fail("public-response guard fired: " + "; ".join(r.getMessage() for r in handler.records))


async def make_author(client: Any, sessionmaker: async_sessionmaker[AsyncSession], username: str = "alice",
                      *, admin: bool = False) -> None:
    """Sign ``username`` up through HTTP (the client is then signed in) and grant the author role."""
    from app.jobs import Job
    from domains.account.models import User
    from domains.account.services import AccountService
    from fragments.purge import PURGE_KIND

    response = await signup(client, username)
    assert response.status_code == 303, response.text[:500]
    async with sessionmaker() as session, session.begin():
        user = (await session.execute(select(User).where(User.username == username))).scalar_one()
        await AccountService(session).set_author(user, True)
        if admin:
            user.is_admin = True
        # The sign-up's own purges (member listings, author page) are not what blog tests look at.
        await session.execute(delete(Job).where(Job.kind == PURGE_KIND))


@pytest.fixture
async def author_client(client: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Any]:
    await make_author(client, sessionmaker, "alice", admin=True)
    yield client


async def write(client: Any, data: dict[str, Any], *, path: str = "/blog/admin/posts",
                headers: dict[str, str] | None = None) -> Any:
    """Submit the editor form as a browser would (CSRF token from the editor page)."""
    token_page = await client.get("/blog/admin/new")
    assert token_page.status_code == 200, token_page.text[:300]
    from tests.helpers.web import CSRF_FIELD

    token = CSRF_FIELD.search(token_page.text)
    assert token
    return await client.post(path, data={**data, "_csrf_token": token.group(1)}, headers=headers or {})


__all__ = ["FIXTURES", "WEBHOOK_SECRET", "make_author", "post_form", "write"]
