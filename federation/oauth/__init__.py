"""The OAuth 2.0 / OpenID Connect authorization server (authlib core behind a Litestar adapter)."""

from litestar import Router

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
from federation.oauth.sso import SSOMiddleware, sso_callback, sso_login

router = Router(
    path="/",
    route_handlers=[
        authorize, token, revoke, introspect, userinfo, oauth_metadata, openid_configuration, jwks_document,
        register, logout, logout_confirm_page, logout_confirm, ApplicationsController, ClientAdminController,
        sso_login, sso_callback,
    ],
)

__all__ = ["SSOMiddleware", "router"]
