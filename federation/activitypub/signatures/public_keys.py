"""Keys as both specs see them: what a caller's resolver returns for a key id, what a verified
signature names, and PEM parsing (cached)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from federation.activitypub.signatures.messages import SignatureError, SigningKey, Spec, VerifyKey


@dataclass(frozen=True)
class ResolvedKey:
    """A public key found for a key id, with the actor that owns it (after the round trip)."""

    key_id: str
    owner: str
    public_pem: str


KeyResolver: TypeAlias = Callable[[str, bool], Awaitable[ResolvedKey | None]]
"""``await resolver(key_id, refresh)``: the key, or None if it cannot be found."""


@dataclass(frozen=True)
class VerifiedSignature:
    spec: Spec
    key_id: str
    owner: str
    algorithm: str
    covered: tuple[str, ...]


def load_public_key(pem: str | bytes) -> VerifyKey:
    """Parse a PEM public key (SPKI or PKCS#1); parsed keys are cached by their PEM text."""
    return _load_public_key(pem.decode("ascii") if isinstance(pem, bytes) else pem)


@lru_cache(maxsize=4096)
def _load_public_key(pem: str) -> VerifyKey:
    data = pem.encode("ascii")
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise SignatureError(f"Unsupported public key type {type(key).__name__}: only RSA and Ed25519 keys "
                             "are accepted")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise SignatureError("RSA key too small")
    return key


def dump_private_key(key: SigningKey) -> bytes:
    """PKCS#8 PEM of a private key (for test oracles only)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
