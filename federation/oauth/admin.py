"""Admin pages: register and edit OAuth clients; switch dynamic registration on or off."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.forms import form_page, parse_form, see_other
from app.responses import PRIVATE
from app.security import requires_admin
from app.settings import Settings
from domains.account.models import User
from federation.oauth.deps import DEPENDENCIES
from federation.oauth.models import OAuthClient
from federation.oauth.registration import redirect_uri_problem
from federation.oauth.schemas import CHECKED, ClientForm, RegistrationSwitchForm
from federation.oauth.scopes import SCOPE_TEXT
from federation.oauth.store import OAuthStore


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def check_client_form(form: ClientForm) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as the values the page shows again, and what is wrong with them."""
    values: dict[str, Any] = {
        "name": form.name.strip(),
        "redirect_uris": _lines(form.redirect_uris),
        "post_logout_redirect_uris": _lines(form.post_logout_redirect_uris),
        "scopes": [] if form.scopes == [""] else form.scopes,  # a lone empty field is no choice
        "first_party": form.first_party == CHECKED,
        "public": form.public == CHECKED,
        "disabled": form.disabled == CHECKED,
        "alg": form.alg,
        "frontchannel_logout_uri": form.frontchannel_logout_uri.strip(),
    }
    errors: dict[str, str] = {}
    if not values["name"] or len(values["name"]) > 100:
        errors["name"] = "Give the application a name (at most 100 characters)."
    if not values["redirect_uris"]:
        errors["redirect_uris"] = "Add at least one redirect URI."
    for uri in values["redirect_uris"]:
        if problem := redirect_uri_problem(uri):
            errors["redirect_uris"] = f"{uri} {problem}."
    for uri in values["post_logout_redirect_uris"]:
        if problem := redirect_uri_problem(uri):
            errors["post_logout_redirect_uris"] = f"{uri} {problem}."
    if values["frontchannel_logout_uri"] and redirect_uri_problem(values["frontchannel_logout_uri"]):
        errors["frontchannel_logout_uri"] = "Use an https URL (or http on a loopback address)."
    if any(s not in SCOPE_TEXT for s in values["scopes"]) or not values["scopes"]:
        errors["scopes"] = "Choose at least one known scope."
    if values["alg"] not in {"RS256", "EdDSA"}:
        errors["alg"] = "Choose RS256 or EdDSA."
    return values, errors


class ClientAdminController(Controller):
    path = "/oauth/admin/clients"
    guards = [requires_admin]
    cache_control = PRIVATE
    dependencies = DEPENDENCIES

    async def _index(self, request: Request[User, Any, Any], store: OAuthStore, settings: Settings, *,
                     values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                     status: int = 200) -> Template:
        new_secret = request.session.pop("new_client_secret", None) if request.session else None
        return Template("oauth/admin_clients.html", status_code=status, context={
            "clients": await store.list_clients(),
            "scopes": SCOPE_TEXT,
            "values": values or {"scopes": ["openid", "profile", "email"], "alg": "RS256"},
            "errors": errors or {},
            "new_secret": new_secret,
            "registration_allowed": settings.oauth_dynamic_registration,
            "registration_on": await store.get_setting("dynamic_registration") != "off",
        })

    @get("/", name="oauth:admin-clients")
    async def index(self, request: Request[User, Any, Any], oauth_store: OAuthStore, settings: Settings) -> Template:
        return await self._index(request, oauth_store, settings)

    @post("/", status_code=303)
    async def create(self, request: Request[User, Any, Any], oauth_store: OAuthStore,
                     settings: Settings) -> Template | Redirect:
        values, errors = check_client_form(await parse_form(request, ClientForm))
        if errors:
            return await self._index(request, oauth_store, settings, values=values, errors=errors, status=422)
        client, secret = await oauth_store.create_client(
            name=values["name"], redirect_uris=values["redirect_uris"], public=values["public"],
            scope=" ".join(values["scopes"]), first_party=values["first_party"],
            post_logout_redirect_uris=values["post_logout_redirect_uris"], id_token_alg=values["alg"],
            created_by=request.user.id, frontchannel_logout_uri=values["frontchannel_logout_uri"] or None,
        )
        if secret:
            request.session["new_client_secret"] = {"client_id": client.client_id, "secret": secret}
        return see_other(f"/oauth/admin/clients/{client.id}", request,
                         f"Registered {client.name}. Client id: {client.client_id}")

    @post("/registration", status_code=303)
    async def registration(self, request: Request[User, Any, Any], oauth_store: OAuthStore) -> Redirect:
        on = (await parse_form(request, RegistrationSwitchForm)).enabled == CHECKED
        await oauth_store.set_setting("dynamic_registration", "on" if on else "off")
        return see_other("/oauth/admin/clients", request,
                         f"Dynamic client registration is {'on' if on else 'off'}.")

    async def _client(self, store: OAuthStore, pk: UUID) -> OAuthClient:
        client = await store.client_by_pk(pk)
        if client is None:
            raise NotFoundException("No such client.")
        return client

    def _values(self, client: OAuthClient) -> dict[str, Any]:
        return {
            "name": client.name, "redirect_uris": client.redirect_uris,
            "post_logout_redirect_uris": client.post_logout_redirect_uris, "scopes": client.scope.split(),
            "first_party": client.is_first_party, "public": client.is_public, "disabled": client.is_disabled,
            "alg": client.id_token_signed_response_alg, "frontchannel_logout_uri": client.frontchannel_logout_uri or "",
        }

    @get("/{pk:uuid}", name="oauth:admin-client")
    async def edit_form(self, request: Request[User, Any, Any], oauth_store: OAuthStore, pk: UUID) -> Template:
        client = await self._client(oauth_store, pk)
        new_secret = request.session.pop("new_client_secret", None) if request.session else None
        return Template("oauth/admin_client.html", context={
            "client": client, "values": self._values(client), "errors": {}, "scopes": SCOPE_TEXT,
            "new_secret": new_secret,
        })

    @post("/{pk:uuid}", status_code=303)
    async def edit(self, request: Request[User, Any, Any], db_session: AsyncSession, oauth_store: OAuthStore,
                   pk: UUID) -> Template | Redirect:
        client = await self._client(oauth_store, pk)
        values, errors = check_client_form(await parse_form(request, ClientForm))
        if errors:
            return form_page("oauth/admin_client.html", {"client": client, "values": values, "scopes": SCOPE_TEXT,
                                                        "new_secret": None}, errors, 422)
        client.name = values["name"]
        client.redirect_uris = values["redirect_uris"]
        client.post_logout_redirect_uris = values["post_logout_redirect_uris"]
        client.scope = " ".join(values["scopes"])
        client.is_first_party = values["first_party"]
        client.is_disabled = values["disabled"]
        client.id_token_signed_response_alg = values["alg"]
        client.frontchannel_logout_uri = values["frontchannel_logout_uri"] or None
        await db_session.flush()
        await audit.record(db_session, request.user, "oauth.client.edit", f"OAuth client {client.name} "
                           f"({client.client_id})", f"scopes {client.scope}; redirect URIs "
                           f"{', '.join(client.redirect_uris)}; {'disabled' if client.is_disabled else 'enabled'}",
                           subject_id=client.created_by_id)
        return see_other(f"/oauth/admin/clients/{client.id}", request, "Client saved.")

    @post("/{pk:uuid}/secret", status_code=303)
    async def reset_secret(self, request: Request[User, Any, Any], db_session: AsyncSession, oauth_store: OAuthStore,
                           pk: UUID) -> Redirect:
        client = await self._client(oauth_store, pk)
        if client.is_public:
            raise NotFoundException("Public clients have no secret.")
        secret = await oauth_store.reset_secret(client)
        await audit.record(db_session, request.user, "oauth.client.secret", f"OAuth client {client.name} "
                           f"({client.client_id})", "new secret issued; the old one stopped working",
                           subject_id=client.created_by_id)
        request.session["new_client_secret"] = {"client_id": client.client_id, "secret": secret}
        return see_other(f"/oauth/admin/clients/{client.id}", request,
                         "New secret issued; the old one stopped working.")
