"""Money for every domain: ISO 4217 currency codes, their minor-unit exponents, and formatting.

Amounts are integers in the currency's minor unit (cents for EUR), never floats, so sums and
comparisons are exact. The table is ISO 4217's list of active codes (the "List one" table
published by the maintenance agency, SIX) with each code's number of minor-unit digits; fund
codes and precious metals (XAU, XDR ...) are left out because nobody prices goods in them.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CURRENCY_EXPONENTS", "format_minor", "is_currency", "minor_exponent", "parse_major"]

_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD "
    "GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD "
    "MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP "
    "PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
    "TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VED VES WST XCD YER ZAR ZMW ZWG"
)
CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    **{code: 2 for code in _TWO.split()},
    **{code: 0 for code in _ZERO.split()},
    **{code: 3 for code in _THREE.split()},
}
_SYMBOLS: Final = {"EUR": "€", "GBP": "£", "USD": "$", "JPY": "¥", "CHF": "CHF "}


def is_currency(code: str) -> bool:
    """Whether ``code`` is an active ISO 4217 alphabetic code (upper case, as the standard writes it)."""
    return code in CURRENCY_EXPONENTS


def minor_exponent(code: str) -> int:
    """Digits after the decimal point (EUR 2, JPY 0, KWD 3); KeyError for an unknown code."""
    exponent: int = CURRENCY_EXPONENTS[code]
    return exponent


def format_minor(amount: int, currency: str) -> str:
    """``1250, "EUR"`` → ``€12.50``; codes without a symbol here print as ``12.50 SEK``."""
    exp = CURRENCY_EXPONENTS.get(currency, 2)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10 ** exp)
    number = f"{whole:,}" + (f".{frac:0{exp}d}" if exp else "")
    symbol = _SYMBOLS.get(currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency}"


def parse_major(text: str, currency: str) -> int:
    """A price as a person types it (``12``, ``12.5``, ``12.50``) → minor units, exactly.

    ValueError for anything else: a negative amount, more decimals than the currency has,
    thousands separators, exponents or words.
    """
    value = text.strip()
    exp = CURRENCY_EXPONENTS.get(currency, 2)
    whole, dot, frac = value.partition(".")
    if not whole.isdigit() or not whole.isascii() or (dot and (not frac.isdigit() or not frac.isascii())):
        raise ValueError(value)
    if len(frac) > exp:
        raise ValueError(value)
    minor: int = int(whole) * 10**exp + (int(frac.ljust(exp, "0")) if exp else 0)
    return minor
