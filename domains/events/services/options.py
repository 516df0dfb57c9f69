"""An event's booking options as staff set them on the event form: the questions its booking form
asks (dietary needs, one free-text question with its label) and the members' cancellation cutoff."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.events.booking_models import DEFAULT_CANCEL_HOURS, BookingOptions
from domains.events.models import Event

__all__ = ["MAX_CUTOFF_HOURS", "OptionsForm", "check_options", "options_values", "save_options"]

MAX_CUTOFF_HOURS: Final = 24 * 60  # two months: beyond that, a booking could hardly be cancelled at all


class OptionsForm(msgspec.Struct, kw_only=True):
    """The booking part of the event form (fields beside EventForm's in the same POST)."""

    ask_dietary: str = ""
    question: str = ""
    question_required: str = ""
    cancel_until_hours: str = str(DEFAULT_CANCEL_HOURS)


def check_options(form: OptionsForm, errors: dict[str, str]) -> dict[str, Any]:
    """The options as they will be stored; problems go to ``errors`` (nothing is written by this)."""
    question = " ".join(form.question.split())
    if len(question) > 200:
        errors["question"] = "A question of at most 200 characters."
    if form.question_required and not question:
        errors["question"] = "Give the question a label, or do not require an answer."
    hours = DEFAULT_CANCEL_HOURS
    raw = form.cancel_until_hours.strip()
    try:
        hours = int(raw) if raw else DEFAULT_CANCEL_HOURS
        if not 0 <= hours <= MAX_CUTOFF_HOURS:
            raise ValueError
    except ValueError:
        errors["cancel_until_hours"] = (f"A whole number of hours from 0 (until the start) to {MAX_CUTOFF_HOURS}.")
    return {"ask_dietary": bool(form.ask_dietary), "question": question,
            "question_required": bool(form.question_required) and bool(question), "cancel_until_hours": hours}


async def save_options(session: AsyncSession, event: Event, values: dict[str, Any]) -> BookingOptions:
    row = (await session.execute(select(BookingOptions).where(BookingOptions.event_id == event.id))
           ).scalar_one_or_none()
    if row is None:
        row = BookingOptions(event_id=event.id)
        session.add(row)
    row.ask_dietary, row.question = values["ask_dietary"], values["question"]
    row.question_required, row.cancel_until_hours = values["question_required"], values["cancel_until_hours"]
    await session.flush()
    return row


async def options_values(session: AsyncSession, event: Event | None) -> dict[str, Any]:
    """The form's values for the options (defaults for a new event)."""
    row = None
    if event is not None:
        row = (await session.execute(select(BookingOptions).where(BookingOptions.event_id == event.id))
               ).scalar_one_or_none()
    if row is None:
        return {"ask_dietary": False, "question": "", "question_required": False,
                "cancel_until_hours": str(DEFAULT_CANCEL_HOURS)}
    return {"ask_dietary": row.ask_dietary, "question": row.question, "question_required": row.question_required,
            "cancel_until_hours": str(row.cancel_until_hours)}
