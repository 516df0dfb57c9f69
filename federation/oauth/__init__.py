"""The OAuth 2.0 / OpenID Connect authorization server (authlib core behind a Litestar adapter)."""

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
from federation.oauth.sso import SSOMiddleware, sso_callback, sso_login

router = Router(
    path="/",
    opt=access.public(),  # authorize, discovery, logout and single sign-on: anyone; the session personalises
    route_handlers=[
        authorize, oauth_metadata, openid_configuration, jwks_document, logout, sso_login, sso_callback,
        # Client authentication (RFC 6749 §2.3) or an initial access token: machine endpoints.
        Router(path="/", opt=access.machine(), route_handlers=[token, revoke, introspect, register]),
        Router(path="/", opt=access.token("openid", oauth_only=True), route_handlers=[userinfo]),
        Router(path="/", opt=access.session(), route_handlers=[logout_confirm_page, logout_confirm]),
        Router(path="/", opt=access.session(owner="grant"), route_handlers=[ApplicationsController]),
        Router(path="/", opt=access.admin(owner="client"), route_handlers=[ClientAdminController]),
    ],
)

__all__ = ["SSOMiddleware", "router"]
