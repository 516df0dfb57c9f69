"""``rose-ash events create``: a real process on a migrated database prints the event's URL."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

REPO_ROOT = Path(__file__).resolve().parents[3]
ROSE_ASH = str(Path(sys.executable).with_name("rose-ash"))


@pytest.mark.e2e
def test_events_create_prints_the_public_url_last(tmp_path: Path, server_database_url: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSE_ASH_")}
    env.update({"ROSE_ASH_DATA_DIR": str(tmp_path / "data"), "ROSE_ASH_SECRET_KEY": "cli-test-secret-0123456789",
                "ROSE_ASH_BASE_URL": "http://127.0.0.1:8000"})
    if server_database_url:
        env["ROSE_ASH_DATABASE_URL"] = server_database_url

    def rose_ash(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ROSE_ASH, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    assert rose_ash("database", "upgrade", "--no-prompt").returncode == 0
    made = rose_ash("events", "create", "--title", "Repair café", "--start", "2027-01-12T18:00",
                    "--end", "2027-01-12T20:30", "--tz", "Europe/London", "--rrule", "FREQ=WEEKLY;COUNT=8")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().splitlines()[-1] == "http://127.0.0.1:8000/events/repair-cafe"
    backwards = rose_ash("events", "create", "--title", "Oops", "--start", "2027-01-12T18:00",
                         "--end", "2027-01-12T17:00", "--tz", "Europe/London")
    assert backwards.returncode == 1 and "ends before it starts" in backwards.stderr
    zone = rose_ash("events", "create", "--title", "Oops", "--start", "2027-01-12T18:00",
                    "--end", "2027-01-12T19:00", "--tz", "Nowhere/Land")
    assert zone.returncode == 1 and "not a time zone we know" in zone.stderr
    offset = rose_ash("events", "create", "--title", "Oops", "--start", "2027-01-12T18:00+01:00",
                      "--end", "2027-01-12T19:00", "--tz", "Europe/London")
    assert offset.returncode == 1 and "without an offset" in offset.stderr

    # --capacity: places per date, so bookings are limited (the full date takes a waiting list).
    limited = rose_ash("events", "create", "--title", "Sourdough", "--start", "2027-01-14T18:00",
                       "--end", "2027-01-14T20:00", "--tz", "Europe/London", "--capacity", "2")
    assert limited.returncode == 0, limited.stderr
    assert limited.stdout.strip().splitlines()[-1] == "http://127.0.0.1:8000/events/sourdough"
    assert book_three(env) == (2, ["confirmed", "confirmed", "waiting"], "Only 1 place is left on that date")

    # The rest in this process (a real process costs seconds of start-up each): the same command
    # on the same database, through click's runner.
    def in_process(*extra: str) -> Any:
        return _invoke(env, "--title", "Never", "--start", "2027-01-12T18:00", "--end", "2027-01-12T19:00",
                       "--tz", "Europe/London", *extra)

    # Bad input: a clear error, exit 1, and nothing written.
    def refused(*extra: str) -> str:
        done = in_process(*extra)
        assert done.exit_code == 1, (extra, done.output, done.stderr)
        return str(done.stderr)

    # A time the clocks skip is refused; one they pass twice needs --dst, then it is created.
    assert "does not exist on 28 March 2027" in refused("--start", "2027-03-28T01:30", "--end", "2027-03-28T03:00")
    twice = ("--title", "Late", "--start", "2026-10-25T01:15", "--end", "2026-10-25T01:45")
    assert "happens twice" in refused(*twice) and "--dst later" in refused(*twice)
    chosen = in_process(*twice, "--dst", "later")
    assert chosen.exit_code == 0 and chosen.stdout.strip().splitlines()[-1].endswith("/events/late"), chosen.stderr
    assert "from 1 to 100,000" in refused("--capacity", "0")
    assert "from 1 to 100,000" in refused("--capacity", "-3")
    assert "from 1 to 100,000" in refused("--capacity", "twelve")
    assert "from 1 to 100,000" in refused("--capacity", "")
    assert "not a whole number of minor units" in refused("--capacity", "12", "--price", "12.50")
    assert "cannot be negative" in refused("--capacity", "12", "--price", "-100")
    assert "give --capacity too" in refused("--price", "1250")
    assert "a free place" in refused("--capacity", "12", "--price", "0")
    assert event_slugs(env) == ["late", "repair-cafe", "sourdough"]
    # A valid price: each date sells its places as a priced "Standard" ticket through the cart.
    paid = in_process("--title", "Pasta class", "--capacity", "12", "--price", "1250", "--rrule", "FREQ=WEEKLY;COUNT=3")
    assert paid.exit_code == 0 and paid.stdout.strip().splitlines()[-1].endswith("/events/pasta-class"), paid.stderr
    assert ticket_types(env, "pasta-class") == [("Standard", 1250, "EUR")] * 3
    # A past one-off date has nothing to sell: refused, and the event is not left behind.
    assert "no upcoming dates" in refused("--title", "Gone", "--start", "2020-01-12T18:00", "--end",
                                          "2020-01-12T19:00", "--capacity", "5", "--price", "500")
    assert event_slugs(env) == ["late", "pasta-class", "repair-cafe", "sourdough"]


def ticket_types(env: dict[str, str], slug: str) -> list[tuple[str, int, str]]:
    async def work(session: AsyncSession) -> list[tuple[str, int, str]]:
        from domains.events.booking_models import TicketType
        from domains.events.models import Event

        event_id = (await session.execute(select(Event.id).where(Event.slug == slug))).scalar_one()
        rows = await session.execute(select(TicketType.name, TicketType.price_minor, TicketType.currency)
                                     .where(TicketType.event_id == event_id))
        return [tuple(r) for r in rows]

    return list(_session_work(env, work))


def _invoke(env: dict[str, str], *args: str) -> Any:
    """``rose-ash events create ARGS`` in this process, with the settings ``env`` gives."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from app.settings import Settings
    from domains.events.cli import events_group
    from tests.helpers.server import _load_every_domain

    settings = Settings.from_env(env)
    _load_every_domain(settings)
    obj = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=settings)))
    with ThreadPoolExecutor(max_workers=1) as pool:  # the command runs its own event loop
        return pool.submit(CliRunner().invoke, events_group, ["create", *args], obj=obj).result()


def _session_work(env: dict[str, str], work: Any) -> Any:
    from app.commands import with_session
    from app.settings import Settings
    from tests.helpers.server import _load_every_domain

    settings = Settings.from_env(env)
    _load_every_domain(settings)
    with ThreadPoolExecutor(max_workers=1) as pool:  # with_session runs its own event loop
        return pool.submit(with_session, settings, work).result()


def event_slugs(env: dict[str, str]) -> list[str]:
    async def work(session: AsyncSession) -> list[str]:
        from domains.events.models import Event

        return sorted((await session.execute(select(Event.slug))).scalars())

    return list(_session_work(env, work))


def book_three(env: dict[str, str]) -> tuple[int | None, list[str], str]:
    """The CLI's two-place event booked in process: one place, then two when one is left (refused),
    then one and one more. Its capacity, the three bookings' states, and the refusal's message."""

    async def work(session: AsyncSession) -> tuple[int | None, list[str], str]:
        from app.forms import InputProblems
        from domains.events.services.bookings import BookingService
        from domains.events.services.events import EventService

        event = await EventService(session).get("sourdough")
        assert event is not None
        service = BookingService(session)
        key = (await service.dates(event, limit=1))[0].key
        first = await service.book(event, key, user=None, name="Ann", email="ann@example.org", quantity=1)
        try:
            await service.book(event, key, user=None, name="Bo", email="bo@example.org", quantity=2)
            refusal = ""
        except InputProblems as exc:
            refusal = exc.errors.get("quantity", "")
        second = await service.book(event, key, user=None, name="Cy", email="cy@example.org", quantity=1)
        third = await service.book(event, key, user=None, name="Di", email="di@example.org", quantity=1)
        return event.capacity, [first.state, second.state, third.state], refusal

    capacity, states, refusal = _session_work(env, work)
    return capacity, states, refusal.split(":")[0]
