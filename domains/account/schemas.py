"""Account contracts: form inputs and the JSON shapes other domains and the API see."""

from __future__ import annotations

import re
from datetime import datetime
from uuid import UUID

import msgspec

from app.mail import valid_address

USERNAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,38}[a-z0-9])?$")
# Deliberately simple: one @, a dot in the domain, no spaces. Deliverability is the mail's job.
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
MIN_PASSWORD = 10

# Every URL prefix in the URL map, plus names that would impersonate the site.
RESERVED_USERNAMES = frozenset(
    {
        "account", "accounts", "admin", "administrator", "api", "blog", "cart", "embed", "events",
        "f", "forge", "healthz", "market", "oauth", "social", "static", "well-known", "nodeinfo",
        "inbox", "outbox", "users", "user", "login", "logout", "signup", "settings", "root",
        "system", "instance", "rose-ash", "roseash", "support", "help", "about", "www", "mail",
        "webmaster", "postmaster", "hostmaster", "abuse", "security", "noreply", "no-reply",
        "null", "undefined", "anonymous", "me", "hooks", "search", "new", "explore",
    }
)

SCOPES: dict[str, str] = {
    "repo:read": "Read repositories (clone and fetch, including private ones you can see)",
    "repo:write": "Write repositories (push) — includes repo:read",
    "api": "Use the JSON API on your behalf",
    "market": "Manage your market products and stock through the API",
    "events": "Check tickets in at the door and book event places through the API",
}

COMMON_PASSWORDS = frozenset(
    {
        "password", "password1", "password12", "password123", "passw0rd", "1234567890",
        "12345678910", "qwertyuiop", "qwerty1234", "iloveyou12", "letmein123", "welcome123",
        "abcdefghij", "0123456789", "1111111111", "aaaaaaaaaa", "administrator", "changeme123",
    }
)


# Forms (``parse_form(request, Form)``). Every field has a default: a missing field is an empty
# one, and the service's rules say what is wrong with it in words a person can act on.


class SignupInput(msgspec.Struct, kw_only=True):
    """The sign-up form, and what ``AccountService.signup`` takes (the CLI builds it too)."""

    username: str = ""
    email: str = ""
    password: str = ""
    display_name: str = ""
    next: str = ""  # where to go afterwards (the page "Sign up" was pressed on); forms.safe_next


class LoginForm(msgspec.Struct, kw_only=True):
    login: str = ""  # a username or an email address
    password: str = ""
    next: str = ""  # where to go afterwards; only same-site paths are honoured (forms.safe_next)


class ProfileForm(msgspec.Struct, kw_only=True):
    display_name: str = ""
    bio: str = ""


class PasswordForm(msgspec.Struct, kw_only=True):
    current_password: str = ""
    new_password: str = ""
    confirm_password: str = ""


class ForgotForm(msgspec.Struct, kw_only=True):
    email: str = ""


class ResetForm(msgspec.Struct, kw_only=True):
    """A new password from a reset or invitation link (the link's secret is in the path)."""

    password: str = ""
    confirm_password: str = ""


class EmailChangeForm(msgspec.Struct, kw_only=True):
    email: str = ""  # the new address
    password: str = ""  # the current password


class TokenForm(msgspec.Struct, kw_only=True):
    name: str = ""
    scopes: list[str] = []


class RolesForm(msgspec.Struct, kw_only=True):
    """An administrator's role checkboxes for one member. A checkbox is on when it is sent at all,
    whatever its value (browsers send ``on``), so each field is ``None`` exactly when it is off."""

    is_admin: str | None = None
    is_active: str | None = None
    is_author: str | None = None
    is_editor: str | None = None
    is_producer: str | None = None


class UserRead(msgspec.Struct, kw_only=True):
    """A user as the API and other domains see it (never the hash).

    The JSON API shows it with Gitea's field names (``login``, ``full_name``, ``description``,
    ``created``) beside ours, so Gitea clients read it unchanged.
    """

    id: UUID
    username: str
    display_name: str
    bio: str
    is_admin: bool
    created_at: datetime


class TokenRead(msgspec.Struct, kw_only=True):
    id: UUID
    name: str
    hint: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


def normalise_username(value: str) -> str:
    return value.strip().lower()


def normalise_email(value: str) -> str:
    return value.strip().lower()


def username_problem(username: str) -> str | None:
    if not username:
        return "Choose a username."
    if not USERNAME_RE.match(username):
        return "Use 1 to 40 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit."
    if username in RESERVED_USERNAMES:
        return f"'{username}' is reserved. Please choose another username."
    return None


def email_problem(email: str) -> str | None:
    if not email:
        return "Enter your email address."
    if len(email) > 254 or not EMAIL_RE.match(email) or valid_address(email) is None:
        # valid_address: the mail kernel must be able to write it into a To: header.
        return "That doesn't look like an email address."
    return None


def password_problem(password: str, *, username: str = "", email: str = "") -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"Use at least {MIN_PASSWORD} characters."
    if len(password) > 1024:
        return "That password is too long (1024 characters at most)."
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(password)) < 4:
        return "That password is too easy to guess."
    local = email.split("@")[0] if email else ""
    if (len(username) >= 3 and username in lowered) or (len(local) >= 3 and local in lowered):
        return "Don't use your username or email in your password."
    return None
