"""Argon2id password hashing (argon2-cffi defaults follow RFC 9106's recommendations).

``ROSE_ASH_PASSWORD_HASH_COST=test`` switches new hashes to the cheapest sound parameters so the
test suite does not spend half a second per sign-up; it is read once at import and is never set
in production. Verifying reads the parameters from the stored hash itself (RFC 9106 §4's encoded
form carries m, t and p), so a hash of either cost verifies under either setting.
"""

from __future__ import annotations

import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

COST_ENV = "ROSE_ASH_PASSWORD_HASH_COST"


def make_hasher(cost: str) -> PasswordHasher:
    """``production`` (the default, argon2-cffi's RFC 9106 low-memory profile) or ``test``."""
    if cost in {"", "production"}:
        return PasswordHasher()
    if cost == "test":
        return PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    raise ValueError(f"{COST_ENV} must be 'production' or 'test', not {cost!r}")


_hasher = make_hasher(os.environ.get(COST_ENV, "").strip().lower())
# Verified against when the user does not exist, so timing doesn't reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("rose-ash-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
