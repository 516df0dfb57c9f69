"""Topics: how one part of the app tells others that something happened, without knowing them.

A topic is declared by the emitter, next to its payload Struct::

    post_changed: Topic[PostEvent] = Topic("blog.post")

and a consumer subscribes one of its job kinds (in its own module, which the emitter never
imports)::

    @job_handler("activitypub.blog-post")
    async def federate(ctx: JobContext, event: PostEvent) -> None: ...

    post_changed.subscribe(federate)

``await post_changed.emit(session, event)`` then writes **one durable job per subscriber in the
emitting transaction**: the event exists if and only if the change does, and one subscriber's
failures (retried by the worker) never touch another's.

A few listeners must act inside the write itself (a member's signing key is provisioned in the
transaction that creates the member, so reading an actor never has to write). They subscribe
with the explicitly named :meth:`Topic.subscribe_in_transaction`: they run during ``emit``, in
the emitter's session, must do no network I/O, and an exception from one rolls the write back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs.queue import enqueue, enqueue_many
from app.jobs.registry import JobKind, JobRegistry

__all__ = ["InTransactionListener", "Topic"]

P = TypeVar("P", bound=msgspec.Struct)

InTransactionListener = Callable[[AsyncSession, P], Awaitable[None]]


class Topic(Generic[P]):
    """A named event with a payload type ``P``, its job-kind subscribers and in-transaction listeners."""

    def __init__(self, name: str, payload_type: type[P], *, jobs: JobRegistry | None = None) -> None:
        self.name = name
        self.payload_type = payload_type
        self._jobs = jobs
        self._kinds: list[JobKind[P] | str] = []
        self._in_transaction: list[InTransactionListener[P]] = []

    def __repr__(self) -> str:
        return f"<Topic {self.name} ({self.payload_type.__name__})>"

    # Subscribing -----------------------------------------------------------------------------

    def subscribe(self, kind: JobKind[P] | str) -> JobKind[P] | str:
        """Have every future event enqueued as a job of ``kind`` (idempotent; usable as a
        decorator on the kind ``@job_handler`` returned). A kind name is checked when an event
        is emitted: enqueueing a name nobody registered raises there."""
        if isinstance(kind, JobKind) and not issubclass(self.payload_type, kind.payload_type):
            raise TypeError(
                f"job kind {kind.name!r} takes {kind.payload_type.__name__}, "
                f"but topic {self.name!r} carries {self.payload_type.__name__}"
            )
        if _name(kind) not in {_name(k) for k in self._kinds}:
            self._kinds.append(kind)
        return kind

    def unsubscribe(self, kind: JobKind[P] | str) -> None:
        self._kinds = [k for k in self._kinds if _name(k) != _name(kind)]

    def subscribe_in_transaction(self, listener: InTransactionListener[P]) -> InTransactionListener[P]:
        """Run ``listener(session, payload)`` inside the emitting transaction (idempotent;
        usable as a decorator). Only for work that must be part of the write; no network I/O."""
        if listener not in self._in_transaction:
            self._in_transaction.append(listener)
        return listener

    def unsubscribe_in_transaction(self, listener: InTransactionListener[P]) -> None:
        if listener in self._in_transaction:
            self._in_transaction.remove(listener)

    @property
    def subscribers(self) -> tuple[str, ...]:
        """The subscribed job kinds' names, in subscription order."""
        return tuple(_name(k) for k in self._kinds)

    # Emitting --------------------------------------------------------------------------------

    async def emit(self, session: AsyncSession, payload: P) -> int:
        """Run the in-transaction listeners, then enqueue one job per subscribed kind, all in
        ``session``'s transaction (flushed, not committed); returns how many jobs were written."""
        if not isinstance(payload, self.payload_type):
            raise TypeError(f"topic {self.name!r} carries {self.payload_type.__name__}, not {type(payload).__name__}")
        for listener in list(self._in_transaction):
            await listener(session, payload)
        kinds = list(self._kinds)
        for kind in kinds:
            job_kind: Any = kind
            await enqueue(session, job_kind, payload, jobs=self._jobs)
        return len(kinds)


    async def emit_many(self, session: AsyncSession, payloads: Sequence[P]) -> int:
        """:meth:`emit` for many events at once: listeners run per event, then each subscribed kind
        gets all its jobs in one flush. Returns how many jobs were written."""
        for payload in payloads:
            if not isinstance(payload, self.payload_type):
                raise TypeError(f"topic {self.name!r} carries {self.payload_type.__name__}, "
                                f"not {type(payload).__name__}")
            for listener in list(self._in_transaction):
                await listener(session, payload)
        written = 0
        for kind in list(self._kinds):
            job_kind: Any = kind
            written += await enqueue_many(session, job_kind, payloads, jobs=self._jobs)
        return written


def _name(kind: JobKind[Any] | str) -> str:
    return kind if isinstance(kind, str) else kind.name
