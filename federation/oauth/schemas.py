"""What the OAuth pages' forms hold (read with ``app.forms.parse_form``).

The protocol endpoints (authorize, token, revoke, introspect, logout) hand their parameters to
authlib as they came (``controllers.oauth_request``); only our own fields are Structs here.
Checkboxes send ``on``; the handlers compare with :data:`CHECKED` and keep their own messages.
"""

from __future__ import annotations

import msgspec

CHECKED = "on"  # what a checked HTML checkbox sends


class ClientForm(msgspec.Struct, kw_only=True):
    """The admin's client form; the URI lists are one URI a line."""

    name: str = ""
    redirect_uris: str = ""
    post_logout_redirect_uris: str = ""
    scopes: list[str] = msgspec.field(default_factory=list)
    first_party: str = ""
    public: str = ""
    disabled: str = ""
    alg: str = "RS256"
    frontchannel_logout_uri: str = ""


class RegistrationSwitchForm(msgspec.Struct, kw_only=True):
    """Dynamic client registration on (``enabled`` checked) or off."""

    enabled: str = ""


class ConsentForm(msgspec.Struct, kw_only=True):
    """The consent page's answer: ``allow`` or anything else (deny)."""

    decision: str = ""


class LogoutConfirmForm(msgspec.Struct, kw_only=True):
    redirect_uri: str = ""
