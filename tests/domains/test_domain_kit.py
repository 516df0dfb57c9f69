"""The domain kit's conventions for account and blog: handlers get their services injected
(deps.py) and read forms as Structs (schemas.py), never field by field."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.forms import convert_form
from domains.account.schemas import RolesForm, TokenForm
from domains.blog.schemas import EditorForm, NavigationForm

ROOT = Path(__file__).resolve().parents[2]
HANDLER_MODULES = [ROOT / "domains" / domain / f"{name}.py" for domain in ("account", "blog", "cart")
                   for name in ("controllers", "admin", "api")
                   if (ROOT / "domains" / domain / f"{name}.py").exists()]
SERVICES = {"AccountService", "TokenService", "BlogService", "NavigationService", "CartService"}


@pytest.mark.parametrize("path", HANDLER_MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_handlers_build_no_service_and_parse_no_form_by_hand(path: Path) -> None:
    tree = ast.parse(path.read_text())
    built = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id in SERVICES]
    assert not built, f"{path.name} builds a service by hand at lines {built} (use deps.py)"
    by_hand = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "form_data"]
    assert not by_hand, f"{path.name} reads a form field by field at lines {by_hand} (use parse_form)"


def test_editor_form_keeps_the_browser_semantics() -> None:
    form = convert_form({"title": "Hello", "featured": "on", "action": "convert", "post_id": "x"}, EditorForm)
    values = form.post_input()
    assert values.featured is True and values.type == "post" and values.title == "Hello"
    assert form.post_action() == "save" and form.action == "convert"
    assert convert_form({"action": "publish"}, EditorForm).post_action() == "publish"
    assert convert_form({}, EditorForm).post_input().featured is False


def test_checkboxes_and_repeated_fields() -> None:
    roles = convert_form({"is_admin": "on", "is_active": ""}, RolesForm)
    assert roles.is_admin is not None and roles.is_active is not None and roles.is_author is None
    assert convert_form({"scopes": "api"}, TokenForm).scopes == ["api"]
    nav = convert_form({"primary_label": ["A", "B"], "primary_url": "/a"}, NavigationForm)
    assert nav.rows("primary") == (["A", "B"], ["/a"], []) and nav.rows("secondary") == ([], [], [])
