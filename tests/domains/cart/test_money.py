"""domains/cart/money.py, the cart's one place for money: properties checked with hypothesis
(totals are sums, the VAT split per rate adds back up under the half-up rule, nothing negative,
currencies never mixed, shown amounts read back to the same minor units) and the settings parsers."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.money import CURRENCY_EXPONENTS
from app.settings import Settings
from domains.cart.money import (
    BASIS,
    DeliveryBand,
    Line,
    MixedCurrency,
    MoneyError,
    compute,
    delivery_charge,
    line_total,
    parse_delivery_rates,
    parse_rate,
    parse_shown,
    parse_vat_rates,
    rate_label,
    round_half_up,
    show,
    vat_included,
)
from domains.cart.slots import CollectionPoint, SlotError, check_settings, parse_collection_slots

# No per-example deadline: the machine running the suite may be busy; these are pure and fast.
RELAXED = hypothesis_settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
RATES = st.sampled_from([0, 500, 550, 700, 1000, 1900, 2000, 2100, 2500, 2700])
CURRENCIES = st.sampled_from(sorted(CURRENCY_EXPONENTS))
PRICES = st.integers(min_value=0, max_value=10**7)
QUANTITIES = st.integers(min_value=0, max_value=99)


def lines_in(currency: str) -> st.SearchStrategy[list[Line]]:
    return st.lists(st.builds(Line, unit_price_minor=PRICES, quantity=QUANTITIES, currency=st.just(currency),
                              rate_bp=RATES, unit_weight_grams=st.none() | st.integers(0, 50_000)),
                    max_size=12)


@st.composite
def orders(draw: st.DrawFn) -> tuple[str, list[Line], int, int]:
    currency = draw(CURRENCIES)
    return currency, draw(lines_in(currency)), draw(st.integers(0, 10**5)), draw(RATES)


@RELAXED
@given(orders())
def test_totals_are_sums(order: tuple[str, list[Line], int, int]) -> None:
    currency, lines, shipping, shipping_rate = order
    totals = compute(currency, lines, shipping_minor=shipping, shipping_rate_bp=shipping_rate)
    assert totals.line_totals == tuple(x.unit_price_minor * x.quantity for x in lines)
    assert totals.subtotal_minor == sum(totals.line_totals)
    assert totals.total_minor == totals.subtotal_minor + totals.shipping_minor
    assert totals.shipping_minor == shipping
    assert totals.weight_grams == sum((x.unit_weight_grams or 0) * x.quantity for x in lines)
    assert totals.currency == currency


@RELAXED
@given(orders())
def test_vat_split_per_rate_adds_back_up(order: tuple[str, list[Line], int, int]) -> None:
    currency, lines, shipping, shipping_rate = order
    totals = compute(currency, lines, shipping_minor=shipping, shipping_rate_bp=shipping_rate)
    # The gross amounts per rate are a partition of the total: every minor unit is at exactly one rate.
    assert sum(share.gross_minor for share in totals.vat) == totals.total_minor
    assert len({share.rate_bp for share in totals.vat}) == len(totals.vat)
    for share in totals.vat:
        expected = sum(x.unit_price_minor * x.quantity for x in lines if x.rate_bp == share.rate_bp) + (
            shipping if shipping_rate == share.rate_bp else 0)
        assert share.gross_minor == expected
        exact = Fraction(share.gross_minor * share.rate_bp, BASIS + share.rate_bp)
        # The rounding rule: nearest minor unit, a half rounded up; never off by more than half.
        assert abs(share.vat_minor - exact) <= Fraction(1, 2)
        if exact.denominator == 2:
            assert share.vat_minor == exact + Fraction(1, 2)
        assert share.net_minor + share.vat_minor == share.gross_minor
        assert 0 <= share.vat_minor <= share.gross_minor
    # Summed over rates, the VAT is within half a minor unit per rate of the exact VAT.
    exact_total = sum(Fraction(s.gross_minor * s.rate_bp, BASIS + s.rate_bp) for s in totals.vat)
    assert abs(totals.tax_minor - exact_total) <= Fraction(len(totals.vat), 2)


@RELAXED
@given(st.integers(0, 10**12), st.integers(1, 10**6))
def test_round_half_up_matches_decimal(numerator: int, denominator: int) -> None:
    expected = (Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    # Decimal's default precision (28 digits) is exact for these sizes.
    assert round_half_up(numerator, denominator) == int(expected)


def test_the_vat_example_and_half_up() -> None:
    assert vat_included(1000, 2000) == 167  # €10.00 at 20%: 166.67 → €1.67
    assert vat_included(21, 500) == 1  # 21 * 5/105 = exactly 1
    assert vat_included(1050, 500) == 50
    assert vat_included(63, 2000) == 11  # 10.5 → 11 (half-up; half-to-even would give 10)
    totals = compute("EUR", [Line(1000, 1, "EUR", 2000), Line(500, 1, "EUR", 500), Line(300, 1, "EUR", 0)])
    assert totals.vat_lines() == ["VAT 20% included: €1.67", "VAT 5% included: €0.24"]
    assert totals.tax_minor == 167 + 24 and totals.total_minor == 1800


@RELAXED
@given(st.one_of(st.integers(max_value=-1), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3)))
def test_no_negative_or_non_integer_amount(bad: object) -> None:
    with pytest.raises(MoneyError):
        compute("EUR", [Line(bad, 1, "EUR")])  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        compute("EUR", [Line(100, bad, "EUR")])  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        compute("EUR", [], shipping_minor=bad)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        line_total(bad, 1)  # type: ignore[arg-type]


@RELAXED
@given(orders())
def test_nothing_computed_is_negative(order: tuple[str, list[Line], int, int]) -> None:
    currency, lines, shipping, rate = order
    totals = compute(currency, lines, shipping_minor=shipping, shipping_rate_bp=rate)
    figures = [*totals.line_totals, totals.subtotal_minor, totals.shipping_minor, totals.total_minor,
               totals.tax_minor, totals.weight_grams]
    figures += [x for s in totals.vat for x in (s.gross_minor, s.vat_minor, s.net_minor)]
    assert all(isinstance(x, int) and x >= 0 for x in figures)


@RELAXED
@given(st.data())
def test_currencies_are_never_mixed(data: st.DataObject) -> None:
    currency = data.draw(CURRENCIES)
    other = data.draw(CURRENCIES.filter(lambda c: c != currency))
    lines = data.draw(lines_in(currency))
    stray = data.draw(st.builds(Line, unit_price_minor=PRICES, quantity=QUANTITIES, currency=st.just(other)))
    position = data.draw(st.integers(0, len(lines)))
    with pytest.raises(MixedCurrency):
        compute(currency, [*lines[:position], stray, *lines[position:]])
    with pytest.raises(MoneyError):
        compute("XXX", [])


@RELAXED
@given(CURRENCIES, st.integers(0, 10**13))
def test_amounts_shown_round_trip(currency: str, amount: int) -> None:
    shown = show(amount, currency)
    assert parse_shown(shown, currency) == amount
    # And the VAT lines show the figure they computed.
    totals = compute(currency, [Line(amount % 10**9, 1, currency, 2000)])
    for text, share in zip(totals.vat_lines(), totals.vat, strict=True):
        assert parse_shown(text.rsplit(": ", 1)[1], currency) == share.vat_minor


@pytest.mark.parametrize("text", ["", "12", "€", "€1.2.3", "€1,23.00", "$1.00", "€-1.00", "€1.001"])
def test_parse_shown_refuses_what_show_never_writes(text: str) -> None:
    with pytest.raises(ValueError, match=r".*"):
        parse_shown(text, "EUR")


def test_rates_parse_and_label() -> None:
    assert parse_vat_rates("standard=20, reduced=5.5,zero=0") == {"standard": 2000, "reduced": 550, "zero": 0}
    assert parse_vat_rates("") == {}
    assert [rate_label(x) for x in (2000, 550, 1025, 0, 10000)] == ["20%", "5.5%", "10.25%", "0%", "100%"]
    assert parse_rate("7.7%") == 770
    for bad in ("standard", "standard=abc", "standard=20,standard=5", "Standard Rate=20", "a=101", "a=5.555",
                "a=-5", "a=1e2"):
        with pytest.raises(MoneyError):
            parse_vat_rates(bad)


def test_delivery_bands() -> None:
    bands = parse_delivery_rates("0-1000:450, 1000-5000:750,5000-:1200")
    assert bands == (DeliveryBand(0, 1000, 450), DeliveryBand(1000, 5000, 750), DeliveryBand(5000, None, 1200))
    assert [delivery_charge(w, bands=bands) for w in (0, 999, 1000, 4999, 5000, 10**8)] == [
        450, 450, 750, 750, 1200, 1200]
    closed = parse_delivery_rates("0-1000:450,1000-2000:700")
    assert delivery_charge(1999, bands=closed) == 700 and delivery_charge(2000, bands=closed) is None
    assert delivery_charge(123_456, flat_minor=500) == 500  # no bands: the flat rate
    for bad in ("100-1000:450", "0-1000:450,1200-2000:5", "0-1000:450,900-2000:5", "0-:450,1000-:5",
                "0-1000", "0-0:5", "1000-500:5", "0-1000:-5", "a-b:c"):
        with pytest.raises(MoneyError):
            parse_delivery_rates(bad)


@RELAXED
@given(st.lists(st.integers(1, 10**5), min_size=1, max_size=6, unique=True), st.integers(0, 10**6), st.booleans())
def test_every_weight_has_one_band_until_the_end(cuts: list[int], weight: int, open_end: bool) -> None:
    edges = [0, *sorted(cuts)]
    spec = ",".join(f"{a}-{b}:{i * 100}" for i, (a, b) in enumerate(pairwise(edges)))
    spec += f",{edges[-1]}-:999" if open_end else ""
    bands = parse_delivery_rates(spec)
    assert sum(band.holds(weight) for band in bands) == (1 if open_end or weight < edges[-1] else 0)
    charge = delivery_charge(weight, bands=bands)
    assert (charge is None) == (not open_end and weight >= edges[-1])


def test_collection_slots() -> None:
    points = parse_collection_slots("Market hall:Sat 09:00-12:00, Sat 12:00-15:00; Farm shop : Wed 16:00-18:00")
    assert points == (CollectionPoint("Market hall", ("Sat 09:00-12:00", "Sat 12:00-15:00")),
                      CollectionPoint("Farm shop", ("Wed 16:00-18:00",)))
    assert parse_collection_slots("") == ()
    for bad in ("Market hall", "Market hall:", "Hall:Sat 9-12", "Hall:Sat 12:00-09:00", "Hall:Sun 25:00-26:00",
                "Hall:Sat 09:00-12:00,Sat 09:00-12:00", "A:Mon 09:00-10:00;a:Tue 09:00-10:00",
                "A|B:Mon 09:00-10:00", "Hall:Saturday 09:00-12:00"):
        with pytest.raises(SlotError):
            parse_collection_slots(bad)


def test_settings_are_checked_when_the_app_starts(tmp_path: Path) -> None:
    base = {"ROSE_ASH_SECRET_KEY": "k" * 40, "ROSE_ASH_DATA_DIR": str(tmp_path)}
    check_settings(Settings.from_env({**base, "ROSE_ASH_CART_VAT_RATES": "standard=20,reduced=5,zero=0",
                                      "ROSE_ASH_CART_VAT_DEFAULT": "Reduced",
                                      "ROSE_ASH_CART_DELIVERY_RATES": "0-1000:450,1000-:900",
                                      "ROSE_ASH_CART_COLLECTION_SLOTS": "Market hall:Sat 09:00-12:00"}))
    check_settings(Settings.from_env(base))  # nothing set: no VAT, the flat rate, no slots
    for name, value in (("CART_VAT_RATES", "standard=twenty"), ("CART_VAT_DEFAULT", "luxury"),
                        ("CART_DELIVERY_RATES", "5-10:1"), ("CART_COLLECTION_SLOTS", "Hall:someday")):
        env = {**base, "ROSE_ASH_CART_VAT_RATES": "standard=20", "ROSE_ASH_" + name: value}
        with pytest.raises(ValueError, match="ROSE_ASH_" + name):
            check_settings(Settings.from_env(env))


@pytest.mark.anyio
async def test_an_app_with_a_typo_does_not_start(tmp_path: Path) -> None:
    from litestar.testing import AsyncTestClient

    from app import create_app

    settings = Settings.from_env({"ROSE_ASH_SECRET_KEY": "k" * 40, "ROSE_ASH_DATA_DIR": str(tmp_path),
                                  "ROSE_ASH_WORKER_IN_PROCESS": "false",
                                  "ROSE_ASH_CART_DELIVERY_RATES": "0-1000:450,2000-:900"})
    with pytest.raises(ExceptionGroup) as failed:  # the lifespan's task group re-raises it
        async with AsyncTestClient(app=create_app(settings)):
            pass
    assert failed.group_contains(ValueError, match="ROSE_ASH_CART_DELIVERY_RATES: '2000-:900' should start at 1000 g",
                                 depth=None)
