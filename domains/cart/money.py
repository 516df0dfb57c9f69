"""The cart's money, computed in one place: line totals, subtotal, delivery, VAT and the total.

Every amount is an ``int`` in the currency's minor unit (app/money.py) and travels with its
currency; no float ever takes part, and amounts in two currencies are never added (MixedCurrency).

**Prices include VAT** (the EU's consumer-price rule, Directive 98/6/EC art. 3: shown prices are
final prices), so VAT never changes what is paid; it is the part of each gross amount that is
tax: ``gross * rate / (100% + rate)``. Each product carries a tax class (``standard``,
``reduced``, ...; the market's ``Product.tax_class``, empty for the default) whose rate comes
from settings (``ROSE_ASH_CART_VAT_RATES``). VAT is worked out **once per rate over the order's
gross amount at that rate**, not per line and then summed: that is how an invoice states it
(Directive 2006/112/EC art. 226(8)-(10): the taxable amount and the VAT *per rate*) and it keeps
per-line rounding errors from piling up. Delivery is an ancillary supply that follows the
principal one in EU law (CJEU C-349/96 *Card Protection Plan*); we tax it at the default class's
rate, the common case, and say so in the README.

**The one rounding rule is half-up** (half away from zero; every amount here is ≥ 0). It is the
rule tax administrations publish for VAT amounts (HMRC VAT Notice 700 §17.5 "round to the
nearest penny"; Germany's and France's commercial rounding), so the figure on our receipt is the
one a customer's or an auditor's calculator gives. Half-to-even would be less biased over many
roundings, but we round once per rate per order, so the bias it removes is at most half a minor
unit per rate, and a receipt that disagrees with a calculator costs more trust than that.

Delivery is a flat rate or weight bands (``ROSE_ASH_CART_DELIVERY_RATES``,
``0-1000:450,1000-5000:750,5000-:1200``: grams from (inclusive) to (exclusive) → minor units;
an open last band has no upper bound; a weight past the last closed band cannot be delivered).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Final

from app.money import CURRENCY_EXPONENTS, format_minor, parse_major

__all__ = [
    "BASIS", "ROUNDING", "DeliveryBand", "Line", "MixedCurrency", "MoneyError", "Totals", "VatShare",
    "compute", "delivery_charge", "line_total", "parse_delivery_rates", "parse_rate", "parse_shown",
    "parse_vat_rates", "rate_label", "round_half_up", "show", "vat_included",
]

ROUNDING: Final = "half-up"
# Rates are kept in basis points (hundredths of a percent: 20% = 2000, 5.5% = 550), so every
# rate a European VAT table uses is an integer and the arithmetic stays exact.
BASIS: Final = 10_000
MAX_AMOUNT: Final = 10**15  # far beyond any cart; keeps a tampered number from growing without end


class MoneyError(ValueError):
    """An amount that cannot be: negative, not an integer, or a rate or band that makes no sense."""


class MixedCurrency(MoneyError):
    """Two currencies in one sum."""


def _amount(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoneyError(f"{what} must be a whole number of minor units, not {value!r}")
    if value < 0:
        raise MoneyError(f"{what} cannot be negative ({value})")
    if value > MAX_AMOUNT:
        raise MoneyError(f"{what} is out of range ({value})")
    return value


def round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, halves up; both ≥ 0, exact."""
    if numerator < 0 or denominator <= 0:
        raise MoneyError("round_half_up takes a numerator ≥ 0 and a denominator > 0")
    return (2 * numerator + denominator) // (2 * denominator)


def line_total(unit_price_minor: int, quantity: int) -> int:
    """The price of ``quantity`` units: exact, no rounding (prices are whole minor units)."""
    return _amount(unit_price_minor, "a unit price") * _amount(quantity, "a quantity")


def vat_included(gross_minor: int, rate_bp: int) -> int:
    """The VAT inside a VAT-inclusive amount: ``gross * rate / (1 + rate)``, rounded half-up."""
    _amount(gross_minor, "an amount")
    _amount(rate_bp, "a VAT rate")
    return round_half_up(gross_minor * rate_bp, BASIS + rate_bp)


def parse_rate(text: str) -> int:
    """``"20"``, ``"5.5"``, ``"0"`` (percent) → basis points; MoneyError for anything else."""
    value = text.strip().removesuffix("%").strip()
    if not re.fullmatch(r"\d{1,3}(\.\d{1,2})?", value):
        raise MoneyError(f"{text!r} is not a VAT rate in percent (e.g. 20 or 5.5)")
    bp = int(Decimal(value) * 100)
    if bp > BASIS:
        raise MoneyError(f"{text!r}: a VAT rate above 100% is surely a typo")
    return bp


def rate_label(rate_bp: int) -> str:
    """2000 → ``20%``; 550 → ``5.5%``; 1025 → ``10.25%``."""
    whole, frac = divmod(rate_bp, 100)
    return f"{whole}%" if not frac else f"{whole}.{frac:02d}".rstrip("0") + "%"


_CLASS = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@lru_cache(maxsize=16)
def parse_vat_rates(text: str) -> Mapping[str, int]:
    """``standard=20,reduced=5,zero=0`` → ``{class: basis points}``; empty → no VAT at all."""
    rates: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, eq, rate = item.partition("=")
        name = name.strip().lower()
        if not eq or not _CLASS.fullmatch(name):
            raise MoneyError(f"{item!r} is not class=rate (e.g. standard=20); class names are lower-case words")
        if name in rates:
            raise MoneyError(f"the tax class {name!r} is given twice")
        rates[name] = parse_rate(rate)
    return rates


@dataclass(frozen=True)
class DeliveryBand:
    """Orders weighing ``from_grams`` ≤ w < ``to_grams`` (None: no upper bound) cost ``rate_minor``."""

    from_grams: int
    to_grams: int | None
    rate_minor: int

    def holds(self, grams: int) -> bool:
        return self.from_grams <= grams and (self.to_grams is None or grams < self.to_grams)


@lru_cache(maxsize=16)
def parse_delivery_rates(text: str) -> tuple[DeliveryBand, ...]:
    """``0-1000:450,1000-5000:750,5000-:1200`` → bands; empty → () (the flat rate applies).

    The bands must start at 0 and follow each other without gap or overlap, so every weight up
    to the last band's end has exactly one price; only the last band may be open-ended."""
    bands: list[DeliveryBand] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = re.fullmatch(r"(\d{1,9})\s*-\s*(\d{1,9})?\s*:\s*(\d{1,9})", item)
        if match is None:
            raise MoneyError(f"{item!r} is not a band like 0-1000:450 (grams from-to: minor units) or 5000-:1200")
        low, high = int(match[1]), int(match[2]) if match[2] else None
        if high is not None and high <= low:
            raise MoneyError(f"{item!r}: the band ends before it starts")
        expected = bands[-1].to_grams if bands else 0
        if bands and bands[-1].to_grams is None:
            raise MoneyError(f"{item!r} follows an open-ended band: only the last band may be open")
        if low != expected:
            raise MoneyError(f"{item!r} should start at {expected} g: bands start at 0 and follow each other")
        bands.append(DeliveryBand(low, high, int(match[3])))
    return tuple(bands)


def delivery_charge(weight_grams: int, *, bands: Iterable[DeliveryBand] = (), flat_minor: int = 0) -> int | None:
    """What delivering ``weight_grams`` costs: the band holding it, or the flat rate when there are
    no bands; None when it is heavier than every band (it cannot be delivered)."""
    _amount(weight_grams, "a weight")
    band_list = list(bands)
    if not band_list:
        return _amount(flat_minor, "the delivery rate")
    return next((band.rate_minor for band in band_list if band.holds(weight_grams)), None)


@dataclass(frozen=True)
class Line:
    """What money needs of an order line: its unit price and currency, quantity, VAT rate and the
    weight of one unit (None: not given; counted as 0 g)."""

    unit_price_minor: int
    quantity: int
    currency: str
    rate_bp: int = 0
    unit_weight_grams: int | None = None


@dataclass(frozen=True)
class VatShare:
    """The order's gross amount at one VAT rate and the VAT included in it."""

    rate_bp: int
    gross_minor: int
    vat_minor: int

    @property
    def net_minor(self) -> int:
        return self.gross_minor - self.vat_minor

    @property
    def label(self) -> str:
        return rate_label(self.rate_bp)


@dataclass(frozen=True)
class Totals:
    currency: str
    line_totals: tuple[int, ...]
    subtotal_minor: int
    shipping_minor: int
    total_minor: int
    vat: tuple[VatShare, ...]  # per rate, highest rate first; rates with nothing at them left out
    weight_grams: int

    @property
    def tax_minor(self) -> int:
        return sum(share.vat_minor for share in self.vat)

    def vat_lines(self) -> list[str]:
        """``VAT 20% included: €1.67`` per rate (0% rates are not shown: there is no VAT in them)."""
        return [f"VAT {share.label} included: {show(share.vat_minor, self.currency)}"
                for share in self.vat if share.rate_bp > 0]


def compute(currency: str, lines: Iterable[Line], *, shipping_minor: int = 0, shipping_rate_bp: int = 0) -> Totals:
    """The totals of an order: line totals, their sum, delivery, the grand total and the VAT
    included per rate (delivery taxed at ``shipping_rate_bp``). MixedCurrency if a line is priced in
    another currency; MoneyError for a negative or non-integer amount."""
    if currency not in CURRENCY_EXPONENTS:
        raise MoneyError(f"{currency!r} is not an ISO 4217 currency")
    totals: list[int] = []
    gross: dict[int, int] = {}
    weight = 0
    for line in lines:
        if line.currency != currency:
            raise MixedCurrency(f"a line priced in {line.currency} cannot be added to an order in {currency}")
        amount = line_total(line.unit_price_minor, line.quantity)
        _amount(line.rate_bp, "a VAT rate")
        totals.append(amount)
        gross[line.rate_bp] = gross.get(line.rate_bp, 0) + amount
        weight += _amount(line.unit_weight_grams or 0, "a weight") * line.quantity
    shipping = _amount(shipping_minor, "the delivery charge")
    if shipping:
        gross[shipping_rate_bp] = gross.get(shipping_rate_bp, 0) + shipping
    subtotal = sum(totals)
    shares = tuple(VatShare(rate, amount, vat_included(amount, rate))
                   for rate, amount in sorted(gross.items(), reverse=True) if amount)
    return Totals(currency=currency, line_totals=tuple(totals), subtotal_minor=subtotal, shipping_minor=shipping,
                  total_minor=subtotal + shipping, vat=shares, weight_grams=weight)


def show(amount_minor: int, currency: str) -> str:
    """An amount as people read it (``€1,234.50``): app/money.py's one format."""
    return format_minor(amount_minor, currency)


def parse_shown(text: str, currency: str) -> int:
    """The inverse of :func:`show` (its symbol or code and thousands separators taken off), so a
    figure shown can be read back to the same minor units; ValueError for anything else."""
    value = text.strip()
    zero = format_minor(0, currency)  # "€0.00", "¥0" or "0.00 SEK": what stands around the number
    prefix, suffix = zero[: zero.index("0")], zero[zero.rindex("0") + 1:]
    if not value.startswith(prefix) or not value.endswith(suffix) or len(value) <= len(prefix) + len(suffix):
        raise ValueError(text)
    value = value[len(prefix): len(value) - len(suffix)]
    if not re.fullmatch(r"\d{1,3}(,\d{3})*(\.\d+)?", value):
        raise ValueError(text)
    return parse_major(value.replace(",", ""), currency)
