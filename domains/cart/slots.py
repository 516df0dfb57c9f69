"""Collection points and their weekly time slots, from ``ROSE_ASH_CART_COLLECTION_SLOTS``.

Format: locations separated by ``;``, each ``Name:slot,slot,...``; a slot is a weekday and a time
range, ``Sat 09:00-12:00`` (24-hour clock, the shop's local time). Example::

    Market hall:Sat 09:00-12:00,Sat 12:00-15:00;Farm shop:Wed 16:00-18:00

A location name may not hold ``:``, ``;`` or ``,`` (they separate the parts) nor ``|`` (the
checkout form's value joins location and slot with it). Empty: collection needs no slot (the
shop's opening hours apply), as before slots existed. A typo stops the start (app/settings.py),
never a customer's checkout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from app.settings import Settings
from domains.cart.money import parse_delivery_rates, parse_vat_rates

__all__ = ["DAYS", "CollectionPoint", "SlotError", "check_settings", "parse_collection_slots"]

DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_SLOT = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)")


class SlotError(ValueError):
    pass


@dataclass(frozen=True)
class CollectionPoint:
    location: str
    slots: tuple[str, ...]


def _slot(text: str) -> str:
    value = " ".join(text.split())
    match = _SLOT.fullmatch(value)
    if match is None:
        raise SlotError(f"{text!r} is not a slot like 'Sat 09:00-12:00'")
    start = int(match[2]) * 60 + int(match[3])
    end = int(match[4]) * 60 + int(match[5])
    if end <= start or end > 24 * 60:
        raise SlotError(f"{text!r}: the slot ends before it starts")
    return value


@lru_cache(maxsize=16)
def parse_collection_slots(text: str) -> tuple[CollectionPoint, ...]:
    points: list[CollectionPoint] = []
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        name, colon, rest = item.partition(":")
        name = " ".join(name.split())
        if not colon or not name or len(name) > 120 or "|" in name:
            raise SlotError(f"{item!r} is not 'Location:Sat 09:00-12:00,...'")
        if any(p.location.casefold() == name.casefold() for p in points):
            raise SlotError(f"the location {name!r} is given twice")
        slots = tuple(_slot(s) for s in rest.split(",") if s.strip())
        if not slots:
            raise SlotError(f"{name!r} has no time slots")
        if len(set(slots)) != len(slots):
            raise SlotError(f"{name!r} lists a slot twice")
        points.append(CollectionPoint(name, slots))
    return tuple(points)


def check_settings(settings: Settings) -> None:
    """The cart's VAT rates, delivery bands and collection slots parse, and the default tax class is
    one of the rates; else ValueError naming the variable. Run when the web app starts (the
    domain's on_startup), so a typo stops the start instead of mis-taxing or refusing every order."""
    checks = (("CART_VAT_RATES", parse_vat_rates, settings.cart_vat_rates),
              ("CART_DELIVERY_RATES", parse_delivery_rates, settings.cart_delivery_rates),
              ("CART_COLLECTION_SLOTS", parse_collection_slots, settings.cart_collection_slots))
    for name, parse, value in checks:
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"ROSE_ASH_{name}: {exc}") from exc
    rates = parse_vat_rates(settings.cart_vat_rates)
    default = settings.cart_vat_default.strip().lower()
    if rates and default not in rates:
        raise ValueError(f"ROSE_ASH_CART_VAT_DEFAULT: {default!r} is not one of the classes in "
                         f"ROSE_ASH_CART_VAT_RATES ({', '.join(rates)})")
