"""``parse_form``/``convert_form``: a form as a msgspec Struct, bad input as InputProblems."""

from __future__ import annotations

from datetime import date

import msgspec
import pytest

from app.forms import InputProblems, convert_form, field_label


class Form(msgspec.Struct, forbid_unknown_fields=False):
    title: str
    count: int = 1
    tags: list[str] = msgspec.field(default_factory=list)
    publish: bool = False
    on: date | None = None


def test_strings_convert_to_the_declared_types() -> None:
    form = convert_form({"title": "Hi", "count": "3", "tags": "one", "publish": "true", "on": "2026-12-06"}, Form)
    assert form == Form(title="Hi", count=3, tags=["one"], publish=True, on=date(2026, 12, 6))


def test_repeated_names_fill_sequences_and_take_the_first_value_elsewhere() -> None:
    form = convert_form({"title": ["A", "B"], "tags": ["x", "y"]}, Form)
    assert (form.title, form.tags) == ("A", ["x", "y"])


def test_a_missing_field_names_the_field() -> None:
    with pytest.raises(InputProblems) as caught:
        convert_form({"count": "2"}, Form)
    assert caught.value.errors == {"title": "This field is required."}
    assert caught.value.status == 422


def test_a_value_of_the_wrong_kind_names_the_field() -> None:
    with pytest.raises(InputProblems) as caught:
        convert_form({"title": "x", "count": "many"}, Form)
    assert list(caught.value.errors) == ["count"]


def test_field_labels_read_as_words_and_count_rows_from_one() -> None:
    assert field_label("unit_price") == "Unit price"
    assert field_label("variants.0.price") == "Variant 1 price"
    assert field_label("variants.11.compare_at") == "Variant 12 compare-at price"
    assert field_label("variants.2.sku") == "Variant 3 SKU"
