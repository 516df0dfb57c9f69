"""Account pages: the applications a member authorised, with revoke."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Template

from app.forms import confirm_page, done
from app.responses import PRIVATE
from app.security import requires_user
from domains.account.models import User
from federation.oauth.deps import DEPENDENCIES
from federation.oauth.scopes import SCOPE_TEXT
from federation.oauth.store import OAuthStore


class ApplicationsController(Controller):
    path = "/account/settings/applications"
    guards = [requires_user]
    cache_control = PRIVATE
    dependencies = DEPENDENCIES

    @get("/", name="oauth:applications")
    async def applications(self, request: Request[User, Any, Any], oauth_store: OAuthStore) -> Template:
        apps = await oauth_store.authorised_apps(request.user)
        return Template("oauth/applications.html", context={"apps": apps, "scope_text": SCOPE_TEXT})

    @get("/{client_pk:uuid}/revoke")
    async def revoke_confirm(self, request: Request[User, Any, Any], oauth_store: OAuthStore,
                             client_pk: UUID) -> Template:
        """Without JavaScript the Revoke button opens this page; with it, ``hx-confirm`` asks."""
        client = next((c for c, *_ in await oauth_store.authorised_apps(request.user) if c.id == client_pk), None)
        if client is None:
            raise NotFoundException("You have not authorised that application.")
        return confirm_page(question=f"Revoke access for “{client.name}”?", button="Revoke",
                            detail="It is signed out at once and must ask you again to act for you.",
                            action=f"/account/settings/applications/{client.id}/revoke",
                            cancel="/account/settings/applications")

    @post("/{client_pk:uuid}/revoke", status_code=303)
    async def revoke(self, request: Request[User, Any, Any], oauth_store: OAuthStore,
                     client_pk: UUID) -> Response[None]:
        if not await oauth_store.revoke_app(request.user, client_pk):
            raise NotFoundException("You have not authorised that application.")
        return done("/account/settings/applications", request, "Access revoked. The application was signed out.")
