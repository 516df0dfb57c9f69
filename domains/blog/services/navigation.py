"""The site's navigation menus; saving them purges the ``nav`` surrogate key."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.forms import InputProblems
from domains.blog.models import Navigation
from domains.blog.schemas import NavigationRead, NavLink
from domains.blog.services.posts import url_problem
from fragments import keys as site_keys
from fragments.purge import emit_purge

__all__ = ["MAX_NAV_LINKS", "NavigationService", "default_navigation"]

def default_navigation(menu: str) -> list[NavLink]:
    """Before anything is saved: the installed domains' links (fragments.site), none secondary."""
    from fragments import site

    return [NavLink(label=label, url=url) for url, label in site.NAV_LINKS] if menu == "primary" else []


MAX_NAV_LINKS = 20


def _valid_link(link: NavLink) -> str | None:
    if not link.label.strip():
        return "Every link needs a label."
    if len(link.label) > 60:
        return "Labels are 60 characters at most."
    url = link.url.strip()
    if re.match(r"^#[A-Za-z0-9_-]*$", url):
        return None
    return url_problem(url) if url else "Every link needs a URL."


class NavigationService:
    """The site's primary and secondary menus (Ghost's ``navigation``/``secondary_navigation``)."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def _rows(self) -> dict[str, Navigation]:
        rows = (await self.db.execute(select(Navigation))).scalars().all()
        return {row.menu: row for row in rows}

    async def current(self) -> NavigationRead:
        rows = await self._rows()

        def links(menu: str) -> list[NavLink]:
            row = rows.get(menu)
            if row is None:
                return default_navigation(menu)
            return [NavLink(label=str(x.get("label", "")), url=str(x.get("url", ""))) for x in row.links]

        revision = ".".join(str(rows[m].revision) if m in rows else "0" for m in ("primary", "secondary"))
        return NavigationRead(primary=links("primary"), secondary=links("secondary"), revision=revision)

    async def save(self, primary: Sequence[NavLink], secondary: Sequence[NavLink]) -> NavigationRead:
        errors: dict[str, str] = {}
        for menu, links in (("primary", primary), ("secondary", secondary)):
            if len(links) > MAX_NAV_LINKS:
                errors[menu] = f"Use {MAX_NAV_LINKS} links at most."
            for link in links:
                if problem := _valid_link(link):
                    errors[menu] = f"“{link.label or link.url}”: {problem}"
                    break
        if errors:
            raise InputProblems(errors, 422)
        rows = await self._rows()
        for menu, links in (("primary", primary), ("secondary", secondary)):
            value = [{"label": link.label.strip(), "url": link.url.strip()} for link in links]
            row = rows.get(menu)
            if row is None:
                self.db.add(Navigation(menu=menu, links=value, revision=1))
            elif row.links != value:
                row.links = value
                row.revision += 1
        await self.db.flush()
        await emit_purge(self.db, [site_keys.NAV])
        return await self.current()
