"""Jinja configuration: autoescaped templates from templates/, plus site-wide globals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from app.forms import field_label
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
HTMX_PATH = "/static/vendor/htmx-2.0.11/htmx.min.js"


def make_template_config(settings: Settings) -> TemplateConfig[JinjaTemplateEngine]:
    def configure(engine: JinjaTemplateEngine) -> None:
        env = engine.engine
        env.autoescape = True  # every template, whatever its extension
        env.trim_blocks = True
        env.lstrip_blocks = True
        # Jinja's default stats every template (and each one it extends or includes) on every
        # render to see whether it changed on disk: about nine stat calls per composed page. The
        # files only change with a deploy, which restarts the workers; ROSE_ASH_DEBUG keeps the
        # edit-and-reload loop of development.
        env.auto_reload = settings.debug
        globals_: dict[str, Any] = {
            "site_name": "Rose Ash",
            "base_url": settings.base_url,
            "htmx_path": HTMX_PATH,
        }
        env.globals.update(globals_)
        env.filters["field_label"] = field_label

    return TemplateConfig(directory=TEMPLATES_DIR, engine=JinjaTemplateEngine, engine_callback=configure)
