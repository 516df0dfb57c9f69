"""app.fsm: transition tables and the conditional UPDATE, under real concurrency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import anyio
import pytest
from sqlalchemy import String, Uuid, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.db import make_engine
from app.fsm import IllegalTransition, TransitionLost, machine_of, state_machine, transition

pytestmark = pytest.mark.anyio

SessionMaker = async_sessionmaker[AsyncSession]


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "test_fsm_order"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid4)
    state: Mapped[str] = mapped_column(String(16), default="new")
    note: Mapped[str] = mapped_column(String(100), default="")


ORDER_STATES = state_machine(Order, "state", {
    "new": {"paid", "cancelled"},
    "paid": {"shipped", "refunded"},
})


@pytest.fixture
async def sm(engine: AsyncEngine) -> AsyncIterator[SessionMaker]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)


async def new_order(sm: SessionMaker) -> UUID:
    async with sm() as session, session.begin():
        order = Order()
        session.add(order)
        await session.flush()
        return order.id


async def state_of(sm: SessionMaker, order_id: UUID) -> str:
    async with sm() as session:
        return (await session.execute(select(Order.state).where(Order.id == order_id))).scalar_one()


def test_the_table_is_declared_once_per_model() -> None:
    assert machine_of(Order) is ORDER_STATES
    assert ORDER_STATES.states == {"new", "paid", "cancelled", "shipped", "refunded"}
    assert ORDER_STATES.allows("new", "paid") and not ORDER_STATES.allows("paid", "new")
    with pytest.raises(ValueError, match="already has a different state machine"):
        state_machine(Order, "state", {"new": {"paid"}})
    with pytest.raises(LookupError, match="Base has no state machine"):
        machine_of(Base)


async def test_a_move_moves_the_row_and_the_sessions_copy(sm: SessionMaker) -> None:
    order_id = await new_order(sm)
    async with sm() as session, session.begin():
        order = await session.get(Order, order_id)
        assert order is not None
        await transition(session, Order, order_id, from_="new", to="paid", values={"note": "card"})
        assert order.state == "paid" and order.note == "card"
    assert await state_of(sm, order_id) == "paid"


async def test_a_move_the_table_forbids_raises_naming_the_states_and_writes_nothing(sm: SessionMaker) -> None:
    order_id = await new_order(sm)
    async with sm() as session, session.begin():
        with pytest.raises(IllegalTransition, match=r"Order\.state may not move from 'new' to 'shipped'"):
            await transition(session, Order, order_id, from_="new", to="shipped")
        with pytest.raises(IllegalTransition, match="from 'shipped' to 'new'"):
            await transition(session, Order, order_id, from_="shipped", to="new")
    assert await state_of(sm, order_id) == "new"


async def test_a_row_in_another_state_is_a_lost_transition(sm: SessionMaker) -> None:
    order_id = await new_order(sm)
    async with sm() as session, session.begin():
        await transition(session, Order, order_id, from_="new", to="cancelled")
    async with sm() as session, session.begin():
        with pytest.raises(TransitionLost, match="no longer 'new'"):
            await transition(session, Order, order_id, from_="new", to="paid")
        with pytest.raises(TransitionLost):
            await transition(session, Order, uuid4(), from_="new", to="paid")
    assert await state_of(sm, order_id) == "cancelled"


async def test_two_concurrent_moves_from_one_state_exactly_one_wins(database_url: str, engine: AsyncEngine,
                                                                    sm: SessionMaker) -> None:
    """Two engines (two connections, two transactions) race to move the same rows out of "new":
    "paid" against "cancelled". On PostgreSQL both transactions first read the row as "new" (the
    check-then-act race a plain ORM assignment loses); the second UPDATE then waits for the
    first's row lock and re-reads the row. Whatever the interleaving, each row ends in exactly
    one state and exactly one transaction saw TransitionLost. (SQLite's transactions take the
    write lock when they begin, so there the two run one after the other.)"""
    read_first = database_url.startswith("postgresql")
    other = make_engine(database_url)
    try:
        makers = [sm, async_sessionmaker(other, expire_on_commit=False)]
        for _ in range(5):
            order_id = await new_order(sm)
            outcomes: dict[str, str] = {}
            ready = anyio.Event()
            started = 0

            async def move(maker: SessionMaker, to: str, order_id: UUID = order_id, ready: anyio.Event = ready,
                           outcomes: dict[str, str] = outcomes) -> None:
                nonlocal started
                try:
                    async with maker() as session, session.begin():
                        if read_first:
                            assert (await session.get(Order, order_id)) is not None
                            assert (await session.get(Order, order_id)).state == "new"  # type: ignore[union-attr]
                        started += 1
                        if started == 2:
                            ready.set()
                        if read_first:
                            await ready.wait()  # both transactions have read "new" before either writes
                        await transition(session, Order, order_id, from_="new", to=to)
                    outcomes[to] = "won"
                except TransitionLost:
                    outcomes[to] = "lost"

            async with anyio.create_task_group() as tg:
                tg.start_soon(move, makers[0], "paid")
                tg.start_soon(move, makers[1], "cancelled")
            assert sorted(outcomes.values()) == ["lost", "won"]
            winner = next(to for to, outcome in outcomes.items() if outcome == "won")
            assert await state_of(sm, order_id) == winner
    finally:
        await other.dispose()
