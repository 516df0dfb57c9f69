"""Hypothesis properties of the request decoders (issue 11 item 10): the JSON body decoder and the
form decoder accept what they should, give it back unchanged, and refuse anything else only with
the ClientException the error handler turns into a 400/413, never another exception."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.exceptions import ClientException

from app.forms import decode_form_body as parse_form
from app.json_input import INT64_MAX, INT64_MIN, MAX_JSON_DEPTH, decode_json, nesting_exceeds

# A bounded number of examples keeps CI time fixed; no deadline (no wall-clock thresholds).
BOUNDED = settings(max_examples=300, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
scalars = st.none() | st.booleans() | st.integers(INT64_MIN, INT64_MAX) \
    | st.floats(allow_nan=False, allow_infinity=False) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(text, inner, max_size=4), max_leaves=30)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@BOUNDED
@given(json_values)
def test_valid_json_round_trips(value: Any) -> None:
    body = msgspec.json.encode(value)
    if depth(value) <= MAX_JSON_DEPTH:
        assert decode_json(body) == value
        # Python's encoder (other spacing and escapes) gives the same answer.
        assert decode_json(json.dumps(value).encode()) == value


@BOUNDED
@given(st.integers(min_value=0, max_value=3 * MAX_JSON_DEPTH), st.sampled_from(["[", '{"k":']),
       st.sampled_from(["", '"x]}[{"', "1"]))
def test_nesting_cap_is_exact(levels: int, opener: str, inner: str) -> None:
    closer = "]" if opener == "[" else "}"
    body = (opener * levels + inner + closer * levels).encode()
    assert nesting_exceeds(body, MAX_JSON_DEPTH) == (levels > MAX_JSON_DEPTH)


@BOUNDED
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bodies_decode_or_get_a_client_error(body: bytes) -> None:
    try:
        decode_json(body)
    except ClientException as exc:
        assert exc.status_code in (400, 413) and exc.detail


@BOUNDED
@given(st.lists(st.sampled_from(["[", "]", "{", "}", '"', "\\", ",", ":", "1", " ", '"a":']), max_size=400))
def test_bracket_soup_never_escapes_as_another_error(parts: list[str]) -> None:
    try:
        decode_json("".join(parts).encode())
    except ClientException as exc:
        assert exc.status_code == 400


@BOUNDED
@given(st.lists(st.tuples(text.filter(bool), text.filter(bool)), max_size=8))
def test_form_round_trips_utf8_text(pairs: list[tuple[str, str]]) -> None:
    parsed = parse_form(urlencode(pairs).encode())
    expected: dict[str, list[str]] = {}
    for name, value in pairs:
        expected.setdefault(name, []).append(value)
    assert parsed == {k: v if len(v) > 1 else v[0] for k, v in expected.items()}


@BOUNDED
@given(st.binary(max_size=200))
def test_arbitrary_form_bodies_parse_or_get_a_400(body: bytes) -> None:
    try:
        parsed = parse_form(body)
    except ClientException as exc:
        assert exc.status_code == 400
        return
    for name, value in parsed.items():
        values = value if isinstance(value, list) else [value]
        assert "\x00" not in name and all("\x00" not in v for v in values)
        assert "\ufffd" not in name or "\ufffd".encode() in body or quote("\ufffd").encode() in body


@BOUNDED
@given(text, st.sampled_from(["%00", "%ff", "\xff", "%C3%28", "%e2%82"]))
def test_forms_with_nul_or_bad_utf8_are_400(value: str, bad: str) -> None:
    body = b"a=" + quote(value).encode() + bad.encode("latin-1")
    try:
        parse_form(body)
    except ClientException as exc:
        assert exc.status_code == 400
    else:
        raise AssertionError(f"accepted {body!r}")
