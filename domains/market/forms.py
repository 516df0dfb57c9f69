"""The admin forms' shapes: what a product form (with its variant rows), the stock form and the
image forms send, turned into the service inputs or field-level problems.

Variant rows are indexed fields (``v0_sku``, ``v0_price``, ``v0_o1`` ...) rather than repeated
names: browsers leave empty fields out of nothing, but form decoding drops empty values, so
parallel lists would shift a row's compare-at price onto the next row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from app.money import parse_major
from domains.market.schemas import MAX_OPTIONS, MAX_VARIANTS, ProductInput, VariantInput

__all__ = ["OPTION_COLUMNS", "VariantRow", "option_columns", "parse_product_form", "rows_of"]

OPTION_COLUMNS = 3  # option names the form offers (size, colour, material); the service takes up to MAX_OPTIONS
_ROW_FIELD = re.compile(r"^v(\d{1,3})_([a-z0-9_]+)$")
_INT = re.compile(r"^\d+$")


class VariantRow(dict[str, str]):
    """One variant row as typed (all strings): id, sku, price, compare_at, weight, barcode,
    threshold, o0..o2 (option values), remove."""


def _first(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    return value if isinstance(value, str) else ""


def option_columns(names: Iterable[str]) -> list[str]:
    """The option names the form shows: at least OPTION_COLUMNS, more when a product has more (the
    API and CSV take up to MAX_OPTIONS), so saving the form never drops an option it did not show."""
    names = list(names)[:MAX_OPTIONS]
    while len(names) > OPTION_COLUMNS and not names[-1]:
        names.pop()
    return names + [""] * (OPTION_COLUMNS - len(names))


def rows_of(data: Mapping[str, Any]) -> list[VariantRow]:
    """The variant rows in the form, in index order (at most MAX_VARIANTS + a few blank rows)."""
    rows: dict[int, VariantRow] = {}
    for key, value in data.items():
        match = _ROW_FIELD.match(key)
        if match is None:
            continue
        index = int(match.group(1))
        if index > MAX_VARIANTS + 10:
            continue
        rows.setdefault(index, VariantRow())[match.group(2)] = _first(value).strip()
    return [rows[i] for i in sorted(rows)]


def _blank(row: Mapping[str, str]) -> bool:
    return not any(v for k, v in row.items() if k not in ("id", "remove"))


def _whole(value: str, label: str, errors: dict[str, str], key: str) -> int | None:
    if not value:
        return None
    if not _INT.match(value):
        errors[key] = f"{label} must be a whole number of 0 or more (not “{value[:20]}”)."
        return None
    return int(value)


def parse_product_form(data: Mapping[str, Any], currency: str) -> tuple[ProductInput, list[VariantRow], dict[str, str]]:
    """``(ProductInput, the rows as typed, problems)``: problems are keyed as the service keys
    them (``variants.<i>.price``) so one template shows both kinds next to the row."""
    errors: dict[str, str] = {}
    option_names = option_columns(" ".join(_first(data.get(f"option_{j}", "")).split()) for j in range(MAX_OPTIONS))
    if len({n.casefold() for n in option_names if n}) != len([n for n in option_names if n]):
        errors["options"] = "Give each option a different name."
    kept_rows = [r for r in rows_of(data) if not r.get("remove") and not (_blank(r) and not r.get("id"))]
    variants: list[VariantInput] = []
    for i, row in enumerate(kept_rows):
        price_text = row.get("price", "")
        price = 0
        if not price_text:
            errors[f"variants.{i}.price"] = "Give a price (for example 4.50)."
        else:
            try:
                price = parse_major(price_text, currency)
            except ValueError:
                errors[f"variants.{i}.price"] = (f"“{price_text[:20]}” is not a price: use a number of 0 or more "
                                                 f"like 4.50, in {currency}.")
        compare_at = None
        if row.get("compare_at"):
            try:
                compare_at = parse_major(row["compare_at"], currency)
            except ValueError:
                errors[f"variants.{i}.compare_at"] = "The compare-at price must be a number of 0 or more like 6.00."
        weight = _whole(row.get("weight", ""), "Weight (grams)", errors, f"variants.{i}.weight_grams")
        threshold = _whole(row.get("threshold", ""), "The low-stock threshold", errors,
                           f"variants.{i}.low_stock_threshold")
        options: dict[str, str] = {}
        for j, name in enumerate(option_names[:MAX_OPTIONS]):
            value = " ".join(row.get(f"o{j}", "").split())
            if name and value:
                options[name] = value
            elif value and not name:
                errors["options"] = f"Name option {j + 1} (for example size) or clear its values."
            elif name and not value:
                errors[f"variants.{i}.options"] = f"Give this variant a {name}."
        variant_id: UUID | None = None
        if row.get("id"):
            try:
                variant_id = UUID(row["id"])
            except ValueError:
                errors[f"variants.{i}.id"] = "That variant is not one of this product's."
        variants.append(VariantInput(sku=row.get("sku", ""), price_minor=price, compare_at_minor=compare_at,
                                     weight_grams=weight, barcode=row.get("barcode", ""),
                                     low_stock_threshold=threshold or 0, options=options, id=variant_id))
    categories: list[UUID] = []
    raw_categories = data.get("categories", [])
    for raw in raw_categories if isinstance(raw_categories, list) else [raw_categories]:
        try:
            categories.append(UUID(str(raw)))
        except ValueError:
            errors["categories"] = "Choose categories from the list."
    status = _first(data.get("status", "draft")) or "draft"
    product = ProductInput(
        title=_first(data.get("title", "")), slug=_first(data.get("slug", "")),
        description_md=_first(data.get("description_md", "")),
        status=status if status in ("draft", "active", "archived") else "draft",  # type: ignore[arg-type]
        featured=bool(_first(data.get("featured", ""))),
        tags=[t for t in _first(data.get("tags", "")).split(",") if t.strip()],
        category_ids=categories, variants=variants, tax_class=_first(data.get("tax_class", "")))
    if status not in ("draft", "active", "archived"):
        errors["status"] = "Choose draft, active or archived."
    return product, kept_rows, errors
