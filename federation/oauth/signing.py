"""ID-token signing keys from the keypair registry, published as a JWKS.

The issuer owns one current RSA-2048 key (RS256, the OIDC default) and one Ed25519 key (EdDSA),
both under owner ``("oauth", "issuer")``. Rotation makes a new current key and keeps the old one
in the JWKS for ``KEEP_ROTATED`` (longer than any ID token lives), so tokens it signed still verify.
"""

from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from joserfc.jwk import KeySet, OKPKey, RSAKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from federation.keys import Algorithm, KeyPair, KeyRegistry

OWNER_ID = "issuer"
JWS_ALGS: dict[str, Algorithm] = {"RS256": "rsa-2048", "EdDSA": "ed25519"}
KEEP_ROTATED = timedelta(days=2)
ID_TOKEN_TTL = 3600

# RFC 9864 deprecates the name "EdDSA" in favour of "Ed25519"; clients still expect "EdDSA".
warnings.filterwarnings("ignore", message="EdDSA is deprecated", module="joserfc.*")

JoseKey = RSAKey | OKPKey


def _new_kid(jws_alg: str) -> str:
    return f"oauth-{jws_alg.lower()}-{secrets.token_hex(6)}"


def _jose_key(registry: KeyRegistry | None, kp: KeyPair, jws_alg: str, *, private: bool) -> JoseKey:
    params: Any = {"kid": kp.key_id, "use": "sig", "alg": jws_alg}
    if private:
        assert registry is not None
        from cryptography.hazmat.primitives import serialization

        pem = registry.private_key(kp).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    else:
        pem = kp.public_pem.encode("ascii")
    if kp.algorithm == "rsa-2048":
        return RSAKey.import_key(pem, parameters=params)
    return OKPKey.import_key(pem, parameters=params)


@dataclass(frozen=True)
class SigningKey:
    alg: str
    kid: str
    key: JoseKey


async def ensure_keys(session: AsyncSession, secret_key: str) -> None:
    """Create any missing issuer key in a transaction of its own, committed at once.

    Callers then only read keys, so an OAuth request never holds a write lock of its own
    before it might need a side transaction (family revocation) — on SQLite that would wait
    on itself — and a request that fails does not throw away a freshly made key.
    """
    registry = KeyRegistry(session, secret_key)
    missing = [alg for alg, algorithm in JWS_ALGS.items()
               if await registry.current("oauth", OWNER_ID, algorithm) is None]
    if not missing:
        return
    maker = async_sessionmaker(session.bind, expire_on_commit=False)
    async with maker() as side, side.begin():
        side_registry = KeyRegistry(side, secret_key)
        for jws_alg in missing:
            await side_registry.ensure("oauth", OWNER_ID, JWS_ALGS[jws_alg], _new_kid(jws_alg))


async def signing_keys(session: AsyncSession, secret_key: str) -> dict[str, SigningKey]:
    """The current private signing key for each JWS algorithm (created on first use)."""
    await ensure_keys(session, secret_key)
    registry = KeyRegistry(session, secret_key)
    keys: dict[str, SigningKey] = {}
    for jws_alg, algorithm in JWS_ALGS.items():
        kp = await registry.current("oauth", OWNER_ID, algorithm)
        assert kp is not None
        keys[jws_alg] = SigningKey(jws_alg, kp.key_id, _jose_key(registry, kp, jws_alg, private=True))
    return keys


def _alg_for(kp: KeyPair) -> str:
    return "RS256" if kp.algorithm == "rsa-2048" else "EdDSA"


async def public_key_set(session: AsyncSession, secret_key: str) -> KeySet:
    """Current keys plus keys rotated out less than ``KEEP_ROTATED`` ago."""
    await ensure_keys(session, secret_key)
    registry = KeyRegistry(session, secret_key)
    cutoff = datetime.now(UTC) - KEEP_ROTATED
    keys: list[JoseKey] = []
    for kp in await registry.public_keys("oauth", OWNER_ID):
        if kp.is_current or (kp.rotated_at is not None and kp.rotated_at > cutoff):
            keys.append(_jose_key(None, kp, _alg_for(kp), private=False))
    return KeySet(keys)  # type: ignore[arg-type]


async def jwks(session: AsyncSession, secret_key: str) -> dict[str, Any]:
    data: Any = (await public_key_set(session, secret_key)).as_dict(private=False)
    return dict(data)


async def rotate(session: AsyncSession, secret_key: str, which: Literal["RS256", "EdDSA"] | None = None) -> list[str]:
    """Rotate the signing keys (all, or one algorithm); returns the new key ids."""
    registry = KeyRegistry(session, secret_key)
    new: list[str] = []
    for jws_alg, algorithm in JWS_ALGS.items():
        if which is None or which == jws_alg:
            kp = await registry.rotate("oauth", OWNER_ID, algorithm, _new_kid(jws_alg))
            new.append(kp.key_id)
    return new
