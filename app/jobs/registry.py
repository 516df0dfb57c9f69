"""Job kinds: a name, a msgspec payload type, an async handler and its retry policy.

``@job_handler("kind")`` returns the :class:`JobKind`, which is how callers enqueue it with a
payload the type checker checks (``await publish_scheduled.enqueue(session, payload)``). The
kind object is also callable like the handler it wraps, so tests can run a handler directly.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from app.jobs.models import Job

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "JobContext",
    "JobKind",
    "JobRegistry",
    "PermanentFailure",
    "RetryLater",
    "Schedule",
    "Snooze",
    "UnknownJobKind",
    "job_handler",
    "registry",
]

DEFAULT_BACKOFF_BASE = 2.0
DEFAULT_BACKOFF_CAP = 3600.0

P = TypeVar("P", bound=msgspec.Struct)
JobHandler = Callable[["JobContext", P], Awaitable[None]]


class RetryLater(Exception):
    """Raised by a handler to run the job again after ``seconds`` (e.g. a peer's Retry-After).

    The run still counts as an attempt, so a job that keeps asking to be retried ends dead
    after ``max_attempts``.
    """

    def __init__(self, seconds: float, reason: str = "") -> None:
        self.seconds = max(0.0, float(seconds))
        self.reason = reason
        super().__init__(reason or f"retry requested in {self.seconds:g}s")


class Snooze(Exception):
    """Raised by a handler that cannot start yet (its peer is known to be down): run the job
    again after ``seconds`` without counting this run as an attempt.

    The handler bounds how long it snoozes (e.g. by the age of what it holds); the queue does not.
    """

    def __init__(self, seconds: float, reason: str = "") -> None:
        self.seconds = max(0.0, float(seconds))
        self.reason = reason
        super().__init__(reason or f"snoozing for {self.seconds:g}s")


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help: the job goes dead at once."""


class UnknownJobKind(LookupError):
    """``enqueue`` was given a kind no handler is registered for.

    Raised where the job is written, not later in the worker: a typo or a handler module that
    this process never imported would otherwise queue jobs that can only go dead.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(
            f"no handler is registered for job kind {kind!r} (is the module that declares it imported?)"
        )


@dataclass(frozen=True, kw_only=True)
class JobContext:
    """What a handler gets besides its payload.

    ``settings`` is the application's settings object (``app.settings.Settings`` in the app);
    ``sessionmaker`` opens sessions on the worker's engine so a handler does its database work
    in its own transactions; ``services`` carries shared helpers (e.g. an HTTP client). The
    ``job_*``/``attempt`` fields describe the run in progress (unset on the worker's template).
    """

    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Any = None
    services: Mapping[str, Any] = field(default_factory=dict)
    job_id: UUID | None = None
    kind: str = ""
    attempt: int = 0
    max_attempts: int = 0
    worker_id: str = ""

    @property
    def is_last_attempt(self) -> bool:
        return self.max_attempts > 0 and self.attempt >= self.max_attempts


@dataclass(frozen=True, kw_only=True)
class JobKind(Generic[P]):
    name: str
    payload_type: type[P]
    handler: JobHandler[P]
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    max_attempts: int | None = None

    registry: JobRegistry | None = field(default=None, repr=False, compare=False)

    def decode(self, data: Any) -> P:
        """Turn the stored JSON back into the typed payload (raises ``msgspec.ValidationError``)."""
        return msgspec.convert(data, self.payload_type)

    async def run(self, ctx: JobContext, data: Any) -> None:
        await self.handler(ctx, self.decode(data))

    async def __call__(self, ctx: JobContext, payload: P) -> None:
        await self.handler(ctx, payload)

    async def enqueue(
        self,
        session: AsyncSession,
        payload: P,
        *,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
    ) -> Job:
        """Add a job of this kind in ``session``'s transaction (see :func:`app.jobs.queue.enqueue`)."""
        from app.jobs.queue import enqueue  # the queue imports this module

        return await enqueue(session, self, payload, run_at=run_at, unique_key=unique_key,
                             max_attempts=max_attempts, jobs=self.registry)


@dataclass(frozen=True)
class Schedule:
    """A recurring job declared with :meth:`JobRegistry.every`."""

    kind: JobKind[Any]
    interval: timedelta
    unique_key: str
    payload: msgspec.Struct


WorkerStartup = Callable[[async_sessionmaker[AsyncSession]], Awaitable[None]]


class JobRegistry:
    """Maps kind names to handlers. The module-level :data:`registry` is the app's one."""

    def __init__(self) -> None:
        self._kinds: dict[str, JobKind[Any]] = {}
        self._schedules: dict[str, Schedule] = {}
        self._startup: list[WorkerStartup] = []

    def every(self, kind: JobKind[P], interval: timedelta, unique_key: str, payload: P) -> None:
        """Declare a recurring job that every worker ensures when it starts.

        The schedule itself is the durable row that :func:`app.jobs.queue.every` writes; the
        declaration only makes sure that row exists (after a first deploy, or after a run went
        dead), idempotently, so any number of workers starting together make one.
        """
        self._schedules[unique_key] = Schedule(kind, interval, unique_key, payload)

    def on_worker_start(self, fn: WorkerStartup) -> WorkerStartup:
        """Run ``fn(sessionmaker)`` when a worker starts (e.g. ensure per-row schedules); a decorator."""
        if fn not in self._startup:
            self._startup.append(fn)
        return fn

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        return tuple(self._schedules.values())

    @property
    def startup_hooks(self) -> tuple[WorkerStartup, ...]:
        return tuple(self._startup)

    def register(
        self,
        kind: str,
        payload_type: type[P],
        handler: JobHandler[P],
        *,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        max_attempts: int | None = None,
        replace: bool = False,
    ) -> JobKind[P]:
        """Register ``handler`` for ``kind``.

        ``backoff_base``/``backoff_cap`` (seconds) shape the retry delay: a uniformly random
        delay in ``[0, min(cap, base * 2 ** (attempt - 1))]`` ("full jitter").
        ``max_attempts`` is the default for jobs of this kind that do not set their own.
        Registering a different handler under a taken name is an error unless ``replace``.
        """
        if not kind or len(kind) > 100:
            raise ValueError(f"job kind must be 1-100 characters: {kind!r}")
        if not (isinstance(payload_type, type) and issubclass(payload_type, msgspec.Struct)):
            raise TypeError(f"payload type for {kind!r} must be a msgspec.Struct subclass, not {payload_type!r}")
        if not inspect.iscoroutinefunction(handler) and not inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004
        ):
            raise TypeError(f"handler for {kind!r} must be an async function")
        if backoff_base < 0 or backoff_cap < 0:
            raise ValueError("backoff_base and backoff_cap must not be negative")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        existing = self._kinds.get(kind)
        if existing is not None and not replace and not _same_definition(existing.handler, handler):
            raise ValueError(f"job kind {kind!r} is already registered to {existing.handler!r}")
        entry = JobKind(
            name=kind,
            payload_type=payload_type,
            handler=handler,
            backoff_base=float(backoff_base),
            backoff_cap=float(backoff_cap),
            max_attempts=max_attempts,
            registry=self,
        )
        self._kinds[kind] = entry
        return entry

    def handler(
        self,
        kind: str,
        *,
        payload_type: type[msgspec.Struct] | None = None,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        max_attempts: int | None = None,
        replace: bool = False,
    ) -> Callable[[JobHandler[P]], JobKind[P]]:
        """Decorator form of :meth:`register`, returning the :class:`JobKind`; the payload type
        comes from the second parameter's annotation unless ``payload_type`` is given::

            @job_handler("edge.purge")
            async def purge(ctx: JobContext, payload: PurgePayload) -> None: ...

            await purge.enqueue(session, PurgePayload(keys=["blog"]))
        """

        def decorate(fn: JobHandler[P]) -> JobKind[P]:
            ptype: Any = payload_type if payload_type is not None else _payload_annotation(kind, fn)
            return self.register(
                kind,
                ptype,
                fn,
                backoff_base=backoff_base,
                backoff_cap=backoff_cap,
                max_attempts=max_attempts,
                replace=replace,
            )

        return decorate

    def get(self, kind: str) -> JobKind[Any] | None:
        return self._kinds.get(kind)

    def require(self, kind: str) -> JobKind[Any]:
        """The registered kind, or :class:`UnknownJobKind` naming it."""
        entry = self._kinds.get(kind)
        if entry is None:
            raise UnknownJobKind(kind)
        return entry

    def unregister(self, kind: str) -> None:
        self._kinds.pop(kind, None)

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._kinds))

    def __len__(self) -> int:
        return len(self._kinds)


def _same_definition(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """The same handler, or the same module-level definition executed again (a module reload)."""
    if a is b:
        return True
    qualname = getattr(a, "__qualname__", "")
    return (
        "<locals>" not in qualname
        and qualname == getattr(b, "__qualname__", None)
        and getattr(a, "__module__", None) == getattr(b, "__module__", None)
    )


def _payload_annotation(kind: str, fn: Callable[..., Any]) -> type[msgspec.Struct]:
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise TypeError(f"handler for {kind!r} must take (ctx: JobContext, payload: <Struct>)")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # a forward reference the module cannot resolve
        raise TypeError(
            f"cannot resolve the payload annotation of the handler for {kind!r}; pass payload_type="
        ) from exc
    ptype = hints.get(params[1].name)
    if not (isinstance(ptype, type) and issubclass(ptype, msgspec.Struct)):
        raise TypeError(f"the payload parameter of the handler for {kind!r} must be annotated with a Struct")
    return ptype


registry = JobRegistry()
"""The application's job registry; domains register their kinds on import."""

job_handler = registry.handler
"""``@job_handler("kind")`` registers an async ``(ctx, payload)`` handler on :data:`registry`."""
