"""Handlers take the forge's services as Litestar dependencies (forge/deps.py), never build one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HANDLER_DECORATORS = {"get", "post", "put", "patch", "delete", "route", "public_get"}


def handlers_building(path: Path, constructors: set[str]) -> list[str]:
    """``module:function`` for every route handler in ``path`` whose body calls one of ``constructors``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            continue
        names = {d.func.id if isinstance(d, ast.Call) and isinstance(d.func, ast.Name) else
                 d.id if isinstance(d, ast.Name) else "" for d in node.decorator_list}
        if not names & HANDLER_DECORATORS:
            continue
        calls = {c.func.id for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
        if calls & constructors:
            found.append(f"{path.name}:{node.name}")
    return found


def test_forge_handlers_take_their_services_as_dependencies() -> None:
    modules = ["forge/web.py", "forge/api.py", "forge/gitea_api.py", "forge/smart_http.py"]
    built = [h for m in modules for h in handlers_building(ROOT / m, {"RepoService", "MirrorService", "runtime_for"})]
    assert built == []
