"""State machines on a row: a transition table declared beside the model, and one conditional UPDATE.

Declare the table next to the model (the states a row may move between)::

    POST_STATUS = state_machine(Post, "status", {
        DRAFT: {SCHEDULED, PUBLISHED},
        SCHEDULED: {DRAFT, PUBLISHED},
        PUBLISHED: {DRAFT},
    })

and move a row with::

    await transition(session, Post, post.id, from_=SCHEDULED, to=PUBLISHED, values={"revision": 3})

which is checked against the table first (a move it does not allow raises
:class:`IllegalTransition`, naming both states, before anything is written) and then compiled to
one ``UPDATE ... SET state = :to WHERE id = :id AND state = :from`` whose row count is checked,
the job queue's pattern: of two transactions moving the same row out of the same state, exactly
one matches; the other (it waits for the first on PostgreSQL, then re-reads the row) gets
:class:`TransitionLost`. A lost race is an exception rather than a ``False`` so that it cannot be
ignored by accident; callers for whom losing is normal (a scheduled job that finds the post
already published) catch it. The UPDATE is ORM-enabled, so the session's copy of the row shows
the new state afterwards.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["IllegalTransition", "StateMachine", "TransitionLost", "machine_of", "state_machine", "transition"]


class IllegalTransition(ValueError):
    """The model's transition table does not allow ``from_`` -> ``to`` (a bug at the call site)."""

    def __init__(self, model: str, column: str, from_: str, to: str) -> None:
        self.from_, self.to = from_, to
        super().__init__(f"{model}.{column} may not move from {from_!r} to {to!r}")


class TransitionLost(Exception):
    """The row was not in the expected state when the UPDATE ran: another transaction moved it
    first (or it is gone). Nothing was written by this transition."""

    def __init__(self, model: str, row_id: object, from_: str, to: str) -> None:
        self.row_id, self.from_, self.to = row_id, from_, to
        super().__init__(f"{model} {row_id} was no longer {from_!r}: the move to {to!r} lost the race")


@dataclass(frozen=True)
class StateMachine:
    """The allowed moves of one state column of one model."""

    model: type[Any]
    column: str
    allowed: Mapping[str, frozenset[str]]

    @property
    def states(self) -> frozenset[str]:
        return frozenset(self.allowed) | frozenset().union(*self.allowed.values())

    def allows(self, from_: str, to: str) -> bool:
        return to in self.allowed.get(from_, frozenset())

    def check(self, from_: str, to: str) -> None:
        if not self.allows(from_, to):
            raise IllegalTransition(self.model.__name__, self.column, from_, to)


_machines: dict[type[Any], StateMachine] = {}


def state_machine(model: type[Any], column: str, table: Mapping[str, Collection[str]]) -> StateMachine:
    """Declare ``model.column``'s transition table (``{from: {to, ...}}``); one per model."""
    if not hasattr(model, column):
        raise AttributeError(f"{model.__name__} has no column {column!r}")
    machine = StateMachine(model, column, {src: frozenset(dst) for src, dst in table.items()})
    existing = _machines.get(model)
    if existing is not None and (existing.column, existing.allowed) != (machine.column, machine.allowed):
        raise ValueError(f"{model.__name__} already has a different state machine on {existing.column!r}")
    _machines[model] = machine
    return machine


def machine_of(model: type[Any]) -> StateMachine:
    machine = _machines.get(model)
    if machine is None:
        raise LookupError(f"{model.__name__} has no state machine: declare one with app.fsm.state_machine")
    return machine


async def transition(
    session: AsyncSession,
    model: type[Any],
    row_id: object,
    *,
    from_: str,
    to: str,
    values: Mapping[str, Any] | None = None,
) -> None:
    """Move row ``row_id`` of ``model`` from ``from_`` to ``to`` (with ``values`` set in the same
    UPDATE), in ``session``'s transaction.

    Raises :class:`IllegalTransition` if the table forbids the move, :class:`TransitionLost` if
    the row was not in ``from_`` when the UPDATE ran.
    """
    machine = machine_of(model)
    machine.check(from_, to)
    state = getattr(model, machine.column)
    stmt = (
        update(model)
        .where(model.id == row_id, state == from_)
        .values({machine.column: to, **(values or {})})
    )
    result = cast("CursorResult[Any]", await session.execute(stmt))
    if result.rowcount != 1:
        raise TransitionLost(model.__name__, row_id, from_, to)
