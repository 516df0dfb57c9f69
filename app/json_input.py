"""Strict decoding of JSON request bodies, for every JSON route (``/api/…`` and machine endpoints).

The checks run on the raw bytes before msgspec builds any object, so a hostile body costs at most
one linear pass: the size cap (413), the nesting cap (400; msgspec itself would recurse until
Python's recursion limit and raise RecursionError), strict UTF-8 (msgspec raises a bare
UnicodeDecodeError). After decoding, one walk refuses what the database would refuse later:
NUL characters in strings (PostgreSQL text cannot hold ``\\x00``) and integers outside int64.
Every refusal is a :class:`~litestar.exceptions.ClientException` with a message a person can act
on, rendered as problem+json by :mod:`app.errors`.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar.exceptions import ClientException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
)

JSON_MEDIA_TYPE = "application/json"
# Every JSON body this app accepts is a small document (a repository's settings, a client's
# metadata); 1 MiB leaves room for a long description and keeps a hostile body cheap.
MAX_JSON_BYTES = 1 << 20
# Our deepest legitimate document (RFC 7591 metadata, Gitea options) is three levels deep.
MAX_JSON_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# A JSON string with its escapes; what is left outside them is structure. An unterminated string
# runs to the end (possessive, no restart at every later quote), so the scan stays linear on
# hostile input; msgspec refuses such a body afterwards anyway.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+\\?(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")


def bad_input(detail: str, status: int = HTTP_400_BAD_REQUEST) -> ClientException:
    return ClientException(detail, status_code=status)


def is_json_media_type(content_type: str) -> bool:
    """``application/json``, with or without parameters (``; charset=utf-8``)."""
    return content_type.split(";", 1)[0].strip().lower() == JSON_MEDIA_TYPE


def require_json_media_type(content_type: str | None) -> None:
    if not is_json_media_type(content_type or ""):
        shown = (content_type or "").split(";", 1)[0].strip() or "none"
        raise bad_input(f"Send the body as {JSON_MEDIA_TYPE} (the Content-Type was {shown}).",
                        HTTP_415_UNSUPPORTED_MEDIA_TYPE)


def nesting_exceeds(body: bytes, max_depth: int) -> bool:
    """Whether the arrays and objects of ``body`` nest deeper than ``max_depth``.

    Strings are cut out first (brackets inside them are text); each pass of the loop then removes
    the innermost empty pairs, so a document of depth d is empty after d passes, each a C-speed
    regex over at most ``MAX_JSON_BYTES``. If one more pass still finds a pair, something nests
    deeper; what is left then is brackets that never close, which the parser reports with a
    position, unless there are so many that parsing them would recurse past the cap.
    """
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets = _INNERMOST_PAIR.sub(b"", brackets)
    if _INNERMOST_PAIR.search(brackets):
        return True
    return brackets.count(b"[") + brackets.count(b"{") > max_depth


def _check_values(value: Any) -> None:
    """Refuse NUL in any string or key and integers outside int64 (the decoded depth is capped)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise bad_input("Text may not contain NUL characters (\\u0000).")
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise bad_input("A number is out of range (integers must fit in 64 bits).")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def decode_json(body: bytes, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of ``body`` or a ClientException (400/413) saying what is wrong with it."""
    if len(body) > max_bytes:
        raise bad_input(f"The JSON is larger than {max_bytes} bytes.", HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_input(f"This is not valid UTF-8 text (byte {exc.start}).") from None
    if nesting_exceeds(body, max_depth):
        raise bad_input(f"The JSON nests deeper than {max_depth} levels.")
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise bad_input(f"This is not valid JSON: {exc}.") from None
    _check_values(value)
    return value
