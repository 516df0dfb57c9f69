"""CSV cells safe to open in a spreadsheet (kernel helper for every CSV the site writes).

A cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return is run as a formula by
Excel, LibreOffice and Google Sheets ("CSV injection", OWASP): such a cell gets a leading
apostrophe, which spreadsheets show as text and do not display.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["csv_cell", "csv_row"]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """``value`` as a cell no spreadsheet runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in _FORMULA_STARTS else text


def csv_row(values: Iterable[object]) -> list[str]:
    """Every cell of a row through :func:`csv_cell`."""
    return [csv_cell(v) for v in values]
