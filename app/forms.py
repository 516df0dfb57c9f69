"""Small helpers shared by HTML form handlers (PRG, re-render with errors)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Request
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER


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
