"""Registers the newsletters' sign-up listener (a ``setup`` module of the account domain)."""

from __future__ import annotations

from domains.account import hooks
from domains.account.newsletters.services import subscribe_new_member

hooks.on_member_verified(subscribe_new_member)
