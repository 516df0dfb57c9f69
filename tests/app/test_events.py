"""app.events.Topic: one durable job per subscriber, written in the emitting transaction."""

from __future__ import annotations

from uuid import UUID, uuid4

import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.events import Topic
from app.jobs import Job, JobContext, JobRegistry, UnknownJobKind, Worker

pytestmark = pytest.mark.anyio

SessionMaker = async_sessionmaker[AsyncSession]


class Happened(msgspec.Struct, frozen=True):
    thing_id: UUID


class Unrelated(msgspec.Struct, frozen=True):
    n: int


@pytest.fixture
def sm(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


async def kinds_written(sm: SessionMaker) -> list[str]:
    async with sm() as session:
        return sorted((await session.execute(select(Job.kind))).scalars())


async def test_emit_writes_one_job_per_subscriber_in_the_callers_transaction(sm: SessionMaker) -> None:
    reg = JobRegistry()
    seen: list[tuple[str, Happened]] = []

    @reg.handler("tests.events.first")
    async def first(ctx: JobContext, event: Happened) -> None:
        seen.append(("first", event))

    @reg.handler("tests.events.second")
    async def second(ctx: JobContext, event: Happened) -> None:
        raise RuntimeError("fails alone")

    topic: Topic[Happened] = Topic("tests.happened", Happened, jobs=reg)
    topic.subscribe(first)
    topic.subscribe("tests.events.second")  # by name, checked when emitting
    topic.subscribe(first)  # idempotent
    assert topic.subscribers == ("tests.events.first", "tests.events.second")

    event = Happened(thing_id=uuid4())
    async with sm() as session:
        assert await topic.emit(session, event) == 2
        await session.rollback()  # the change did not happen: neither did its event
    assert await kinds_written(sm) == []

    async with sm() as session, session.begin():
        await topic.emit(session, event)
    assert await kinds_written(sm) == ["tests.events.first", "tests.events.second"]
    assert await Worker(sm, registry=reg).run_once() == 2
    assert seen == [("first", event)]  # the failing subscriber did not stop the other

    topic.unsubscribe(first)
    remaining: tuple[str, ...] = topic.subscribers
    assert remaining == ("tests.events.second",)


async def test_in_transaction_listeners_run_inside_the_write(sm: SessionMaker) -> None:
    topic: Topic[Happened] = Topic("tests.inside", Happened, jobs=JobRegistry())
    sessions: list[AsyncSession] = []

    @topic.subscribe_in_transaction
    async def inside(session: AsyncSession, event: Happened) -> None:
        sessions.append(session)
        raise ValueError("refused")

    async with sm() as session:
        with pytest.raises(ValueError, match="refused"):
            await topic.emit(session, Happened(thing_id=uuid4()))
        assert sessions == [session]
    topic.unsubscribe_in_transaction(inside)
    async with sm() as session:
        assert await topic.emit(session, Happened(thing_id=uuid4())) == 0


async def test_types_and_unknown_kinds_fail_at_the_call_site(sm: SessionMaker) -> None:
    reg = JobRegistry()

    @reg.handler("tests.events.unrelated")
    async def unrelated(ctx: JobContext, event: Unrelated) -> None: ...

    topic: Topic[Happened] = Topic("tests.typed", Happened, jobs=reg)
    with pytest.raises(TypeError, match=r"takes Unrelated, but topic 'tests\.typed' carries Happened"):
        topic.subscribe(unrelated)  # type: ignore[arg-type]
    async with sm() as session:
        with pytest.raises(TypeError, match="carries Happened, not Unrelated"):
            await topic.emit(session, Unrelated(n=1))  # type: ignore[arg-type]
        topic.subscribe("tests.events.nobody")
        with pytest.raises(UnknownJobKind, match=r"tests\.events\.nobody"):
            await topic.emit(session, Happened(thing_id=uuid4()))


def test_blog_forge_and_account_events_are_topics() -> None:
    from domains.account import hooks
    from domains.blog import events
    from forge import events as forge_events

    assert isinstance(events.post_changed, Topic) and isinstance(forge_events.push_events, Topic)
    assert isinstance(hooks.member_saved, Topic)
    assert "forge.push" in forge_events.push_events.subscribers
