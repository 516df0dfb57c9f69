"""Form input for every domain: strict decoding, ``parse_form(request, Struct)``, ``InputProblems``,
PRG and re-rendering a form with its errors.

A handler states what its form holds as a msgspec Struct (in the domain's ``schemas.py``) and calls
``await parse_form(request, TheForm)``; bad input comes back as :class:`InputProblems`, which the
handler re-renders (422) or the app-wide error handler turns into a clear 422.
"""

from __future__ import annotations

import re
import types
import typing
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import msgspec
from litestar import Request
from litestar.exceptions import ClientException
from litestar.plugins.flash import flash
from litestar.response import Redirect, Response, Template
from litestar.status_codes import HTTP_200_OK, HTTP_303_SEE_OTHER

S = TypeVar("S", bound=msgspec.Struct)


@dataclass
class InputProblems(Exception):
    """Field-level problems with submitted input. ``status`` is 422 or 409 (already taken)."""

    errors: dict[str, str] = field(default_factory=dict)
    status: int = 422

    def __str__(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.errors.items())


def decode_form_body(body: bytes) -> dict[str, str | list[str]]:
    """An ``application/x-www-form-urlencoded`` body (WHATWG URL §5.1), strictly: its bytes and
    its percent-escapes must be UTF-8 and no name or value may hold a NUL (PostgreSQL text cannot).
    Litestar's own parser swaps bad bytes for U+FFFD and keeps NULs; this one answers 400 instead.
    Same shape as Litestar's: a repeated name gives a list, empty values are left out.
    """
    try:
        pairs = parse_qsl(body.decode("utf-8"), separator="&", encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ClientException("The form was not sent as UTF-8 text.") from None
    except ValueError as exc:  # parse_qsl's own limits (max_num_fields is unset; kept for safety)
        raise ClientException(f"The form could not be read: {exc}.") from None
    values: defaultdict[str, list[str]] = defaultdict(list)
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise ClientException("The form may not contain NUL characters.")
        values[name].append(value)
    return {name: v if len(v) > 1 else v[0] for name, v in values.items()}


async def form_data(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The submitted form as a dict; repeated fields (checkboxes) become lists."""
    form = await request.form()
    data: dict[str, Any] = {}
    for key in form:
        values = form.getall(key)
        data[key] = values if len(values) > 1 else values[0]
    return data


_PATH = re.compile(r"`\$\.([A-Za-z_][A-Za-z0-9_]*)")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset)


def problems_from(exc: msgspec.ValidationError) -> InputProblems:
    """msgspec's one-line message as ``{field: what a person should fix}``."""
    text = str(exc)
    missing = _MISSING.search(text)
    if missing:
        return InputProblems({missing.group(1): "This field is required."})
    where = _PATH.search(text)
    name = where.group(1) if where else "form"
    message = text.split(" - at ", 1)[0]
    if message.startswith("Expected"):
        message = "This value is not valid here."
    return InputProblems({name: message})


def convert_form(data: Mapping[str, Any], schema: type[S]) -> S:
    """``data`` (a decoded form: strings, lists for repeated names) as ``schema``, or InputProblems.

    Fields typed as sequences take one value or many (a single checked box arrives as a string);
    other fields take the first value of a repeated name. Strings convert to ints, bools, dates
    and UUIDs the way msgspec's ``strict=False`` does.
    """
    hints = typing.get_type_hints(schema)
    shaped: dict[str, Any] = {}
    for info in msgspec.structs.fields(schema):
        if info.encode_name not in data:
            continue
        value = data[info.encode_name]
        if _is_sequence(hints.get(info.name, Any)):
            shaped[info.encode_name] = value if isinstance(value, list) else [value]
        else:
            shaped[info.encode_name] = value[0] if isinstance(value, list) else value
    try:
        return msgspec.convert(shaped, schema, strict=False)
    except msgspec.ValidationError as exc:
        raise problems_from(exc) from None


async def parse_form(request: Request[Any, Any, Any], schema: type[S]) -> S:
    """The submitted form as ``schema`` (a msgspec Struct), or :class:`InputProblems` (422)."""
    return convert_form(await form_data(request), schema)


def see_other(path: str, request: Request[Any, Any, Any] | None = None, message: str | None = None,
              category: str = "success") -> Redirect:
    """Post/Redirect/Get: a 303 to the page that shows the result."""
    if request is not None and message:
        flash(request, message, category=category)
    return Redirect(path=path, status_code=HTTP_303_SEE_OTHER)


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    """Whether htmx sent this request (it always sends ``HX-Request: true``)."""
    return request.headers.get("hx-request") == "true"


def done(path: str, request: Request[Any, Any, Any], message: str, category: str = "success") -> Response[None]:
    """The answer to a confirmed action, sent by a plain form or by htmx (``hx-confirm``).

    A plain form gets Post/Redirect/Get. htmx would follow a 303 and swap the whole next page into
    the button, so it gets ``HX-Redirect`` instead: the browser navigates and the next page shows
    the one flash message in the toast region.
    """
    flash(request, message, category=category)
    if is_htmx(request):
        return Response(content=None, status_code=HTTP_200_OK, headers={"HX-Redirect": path})
    return Redirect(path=path, status_code=HTTP_303_SEE_OTHER)


def confirm_page(*, question: str, action: str, cancel: str, button: str = "Delete",
                 detail: str = "", values: Mapping[str, str] | None = None, title: str = "",
                 quote: str = "") -> Template:
    """The no-JavaScript confirmation of a destructive action: ``GET …/delete`` shows it and its
    form POSTs to the same path (with CSRF), carrying every value that was sent along as hidden fields.
    With JavaScript the button asks with ``hx-confirm`` and posts directly. ``quote`` is the plain
    text of what goes (a post's opening words), so the person sees which one they are deleting."""
    return Template(template_name="confirm.html", context={
        "question": question, "action": action, "cancel": cancel, "button": button, "detail": detail,
        "values": dict(values or {}), "title": title or question, "quote": quote,
    })


# Words in a field path that read better written out than with their underscores replaced.
_FIELD_WORDS = {"sku": "SKU", "compare_at": "compare-at price", "weight_grams": "weight (grams)",
                "low_stock_threshold": "low-stock threshold", "id": "row",
                "slot": "collection point and time"}


def field_label(name: str) -> str:
    """How an error summary names the field ``name``: ``"unit_price"`` → ``"Unit price"``; a nested
    path counts its rows from 1 and names the item, ``"variants.0.price"`` → ``"Variant 1 price"``
    (the raw path is only the input's id, never something a person should read)."""
    words: list[str] = []
    for part in name.split("."):
        if part.isdigit() and words:
            plural = words.pop()
            words += [plural[:-1] if plural.endswith("s") and len(plural) > 1 else plural, str(int(part) + 1)]
        else:
            words.append(_FIELD_WORDS.get(part, part.replace("_", " ")))
    label = " ".join(word for word in words if word)
    return label[:1].upper() + label[1:]


def form_page(template: str, context: Mapping[str, Any], errors: Mapping[str, str], status: int) -> Template:
    """Re-render a form with its errors and the values the person typed (never passwords)."""
    return Template(template_name=template, context={**context, "errors": dict(errors)}, status_code=status)


def safe_next(value: str | None, default: str = "/account") -> str:
    """Only same-site absolute paths may be a post-login destination (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return default  # browsers drop tabs and newlines: "/\t/evil" would become "//evil"
    return value
