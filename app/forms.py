"""Small helpers shared by HTML form handlers: strict form decoding, PRG, re-render with errors."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request
from litestar.exceptions import ClientException
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER


def parse_form(body: bytes) -> dict[str, str | list[str]]:
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


def as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def see_other(path: str, request: Request[Any, Any, Any] | None = None, message: str | None = None,
              category: str = "success") -> Redirect:
    """Post/Redirect/Get: a 303 to the page that shows the result."""
    if request is not None and message:
        flash(request, message, category=category)
    return Redirect(path=path, status_code=HTTP_303_SEE_OTHER)


def form_page(template: str, context: Mapping[str, Any], errors: Mapping[str, str], status: int) -> Template:
    """Re-render a form with its errors and the values the person typed (never passwords)."""
    return Template(template_name=template, context={**context, "errors": dict(errors)}, status_code=status)


def safe_next(value: str | None, default: str = "/account") -> str:
    """Only same-site absolute paths may be a post-login destination (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value
