"""The OAuth 2.0 / OpenID Connect authorization server (authlib core behind a Litestar adapter).

Its single sign-on middleware (``federation.oauth.sso.SSOMiddleware``) is placed by the
composition root, between the session and authentication middleware.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.kit import Domain, NavEntry

if TYPE_CHECKING:
    import click
    from litestar.types import ControllerRouterHandler

__all__ = ["domain"]


def _routes() -> list[ControllerRouterHandler]:
    from litestar import Router

    from app import access
    from federation.oauth.account import ApplicationsController
    from federation.oauth.admin import ClientAdminController
    from federation.oauth.controllers import (
        authorize,
        introspect,
        jwks_document,
        logout,
        logout_confirm,
        logout_confirm_page,
        oauth_metadata,
        openid_configuration,
        register,
        revoke,
        token,
        userinfo,
    )
    from federation.oauth.cors import CORSMiddleware
    from federation.oauth.sso import sso_callback, sso_login

    return [Router(
        path="/",
        opt=access.public(),  # authorize, discovery, logout and single sign-on: anyone; the session personalises
        route_handlers=[
            authorize, jwks_document, logout, sso_login, sso_callback,
            # Called by browser apps from other origins (Phanpy, Elk): CORS (federation/oauth/cors.py).
            Router(path="/", middleware=[CORSMiddleware()], route_handlers=[oauth_metadata, openid_configuration]),
            Router(path="/", opt=access.machine(), middleware=[CORSMiddleware()], route_handlers=[token, revoke]),
            # Client authentication (RFC 6749 §2.3) or an initial access token: machine endpoints.
            Router(path="/", opt=access.machine(), route_handlers=[introspect, register]),
            Router(path="/", opt=access.token("openid", oauth_only=True), route_handlers=[userinfo]),
            Router(path="/", opt=access.session(), route_handlers=[logout_confirm_page, logout_confirm]),
            Router(path="/", opt=access.session(owner="grant"), route_handlers=[ApplicationsController]),
            Router(path="/", opt=access.admin(owner="client"), route_handlers=[ClientAdminController]),
        ],
    )]


def _cli() -> list[click.Command]:
    from federation.oauth.cli import oauth_group

    return [oauth_group]


domain = Domain(
    name="oauth",
    routes=_routes,
    cli=_cli,
    models=("federation.oauth.models",),
    admin=(NavEntry("/oauth/admin/clients", "OAuth applications", 30),),
    machine_routes=(
        r"^/oauth/(token|revoke|introspect|userinfo|register)$",  # client- or bearer-authenticated, never the cookie
        r"^/oauth/logout$",  # OIDC RP-initiated logout: only continues to a CSRF-protected confirmation
    ),
)
