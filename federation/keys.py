"""The keypair registry: every signing key the instance owns lives in one table.

Owners are users, domain actors (``blog``, ``market``, ...), the instance actor, forge
repositories and the OAuth issuer. Each owner may hold an RSA-2048 key (draft-cavage HTTP
signatures, RS256) and an Ed25519 key (RFC 9421, EdDSA). Exactly one key per owner and
algorithm is *current* (a partial unique index enforces it); rotation demotes the old key but
keeps its row, so signatures made with it stay verifiable by key id and JWKS can go on
publishing it until the tokens it signed expire.

Private keys are encrypted at rest. A 32-byte key is derived from the application
``SECRET_KEY`` with HKDF-SHA256 and used with AES-256-GCM; a stored blob is
``version byte || 12-byte random nonce || ciphertext+tag``. The associated data binds a
ciphertext to its row's owner, algorithm and key id, so a blob copied into another row does
not decrypt. The version byte leaves room for a later format or secret rotation.

:class:`KeyRegistry` works on a caller's :class:`~sqlalchemy.ext.asyncio.AsyncSession` and only
flushes: the caller owns the transaction. Key generation runs in a worker thread, because
RSA-2048 generation takes tens of milliseconds of CPU.
"""

from __future__ import annotations

import os
import struct
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, get_args

import anyio.to_thread
from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Boolean, Index, LargeBinary, String, Text, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

__all__ = [
    "ALGORITHMS",
    "OWNER_TYPES",
    "Algorithm",
    "KeyDecryptionError",
    "KeyIdInUseError",
    "KeyPair",
    "KeyRegistry",
    "OwnerType",
    "PrivateKey",
    "PublicKey",
    "verify",
]

OwnerType: TypeAlias = Literal["user", "actor", "instance", "repository", "oauth"]
Algorithm: TypeAlias = Literal["rsa-2048", "ed25519"]
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

OWNER_TYPES: frozenset[str] = frozenset(get_args(OwnerType))
ALGORITHMS: frozenset[str] = frozenset(get_args(Algorithm))

RSA_KEY_BITS = 2048
# Peers' RSA keys smaller than this are refused by verify().
MIN_RSA_KEY_BITS = 2048

_FORMAT_V1 = b"\x01"
_NONCE_BYTES = 12
_HKDF_SALT = b"rose-ash/federation/keys/salt/v1"
_HKDF_INFO = b"rose-ash keypair registry v1"


class KeyDecryptionError(Exception):
    """A stored private key could not be decrypted (wrong SECRET_KEY or an altered row)."""


class KeyIdInUseError(ValueError):
    """The key id asked for already names another key."""


class KeyPair(UUIDv7AuditBase):
    """One keypair of one owner. ``created_at``/``updated_at`` come from the audit base."""

    __tablename__ = "federation_keypair"
    __table_args__ = (
        Index("ix_federation_keypair_owner", "owner_type", "owner_id", "algorithm"),
        # At most one current key per owner and algorithm.
        Index(
            "uq_federation_keypair_current",
            "owner_type",
            "owner_id",
            "algorithm",
            unique=True,
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
    )

    owner_type: Mapped[str] = mapped_column(String(20))
    owner_id: Mapped[str] = mapped_column(String(255))
    algorithm: Mapped[str] = mapped_column(String(16))
    # The key id, also the JWK ``kid``. ActivityPub actors' keys are stored under a path on the
    # instance's origin (``/@alice#main-key``): the id peers see is derived from the origin served
    # now, so changing BASE_URL does not strand them. Ids stored absolute by earlier versions stay
    # as they are and resolvable (:meth:`KeyRegistry.by_key_id`).
    key_id: Mapped[str] = mapped_column(String(1024), unique=True)
    public_pem: Mapped[str] = mapped_column(Text)
    private_pem_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


# --- key material ------------------------------------------------------------------------


def _generate_material(algorithm: str) -> tuple[str, bytes]:
    """Generate a keypair; return (SPKI public PEM, unencrypted PKCS#8 private PEM). CPU-bound."""
    private: PrivateKey
    if algorithm == "rsa-2048":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return public_pem, private_pem


async def _generate(algorithm: str) -> tuple[str, bytes]:
    return await anyio.to_thread.run_sync(_generate_material, algorithm)


def _derive_key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return hkdf.derive(secret_key.encode("utf-8"))


def _associated_data(owner_type: str, owner_id: str, algorithm: str, key_id: str) -> bytes:
    """Length-prefixed row identity, so no two different rows share associated data."""
    parts = [p.encode("utf-8") for p in (owner_type, owner_id, algorithm, key_id)]
    return _FORMAT_V1 + b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _check_owner(owner_type: str, owner_id: str) -> None:
    if owner_type not in OWNER_TYPES:
        raise ValueError(f"unknown owner type {owner_type!r}; expected one of {sorted(OWNER_TYPES)}")
    if not owner_id:
        raise ValueError("owner_id must not be empty")


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown key algorithm {algorithm!r}; expected one of {sorted(ALGORITHMS)}")


def _check_key_id(key_id: str) -> None:
    if not key_id:
        raise ValueError("key_id must not be empty")


def _load_public(public_pem: str | bytes) -> PublicKey:
    data = public_pem.encode("ascii") if isinstance(public_pem, str) else public_pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    return key


def verify(public_pem: str | bytes, algorithm: str, signature: bytes, data: bytes) -> bool:
    """Check ``signature`` over ``data`` with a PEM public key (SPKI or PKCS#1).

    ``algorithm`` is a registry algorithm name: ``"rsa-2048"`` means RSASSA-PKCS1-v1_5 with
    SHA-256 (any RSA key of at least ``MIN_RSA_KEY_BITS`` bits, since peers' keys vary),
    ``"ed25519"`` means Ed25519. Returns False for a bad signature, an unparsable PEM or a key
    of the wrong type; raises ValueError only for an unknown algorithm name (a caller's bug).
    """
    _check_algorithm(algorithm)
    try:
        key = _load_public(public_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    try:
        if algorithm == "rsa-2048":
            if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_KEY_BITS:
                return False
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            if not isinstance(key, ed25519.Ed25519PublicKey):
                return False
            key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


# --- the registry ------------------------------------------------------------------------


class KeyRegistry:
    """Creates, finds, rotates and uses keypairs on the caller's session (flush, never commit)."""

    def __init__(self, session: AsyncSession, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("the keypair registry needs a non-empty SECRET_KEY")
        self._session = session
        self._aead = AESGCM(_derive_key(secret_key))

    # queries

    async def current(self, owner_type: OwnerType, owner_id: str, algorithm: Algorithm) -> KeyPair | None:
        """Return the owner's current key for ``algorithm``, or None."""
        _check_owner(owner_type, owner_id)
        _check_algorithm(algorithm)
        stmt = select(KeyPair).where(
            KeyPair.owner_type == owner_type,
            KeyPair.owner_id == owner_id,
            KeyPair.algorithm == algorithm,
            KeyPair.is_current.is_(True),
        )
        return (await self._session.execute(stmt)).scalar_one_or_none()

    async def by_key_id(self, key_id: str, *, origin: str = "") -> KeyPair | None:
        """Return the key with this key id, current or rotated, or None.

        With ``origin``, a key id on that origin also finds a key stored under the id's path
        (``https://host/@alice#main-key`` finds ``/@alice#main-key``); the exact id wins.
        """
        ids = [key_id]
        if origin and key_id.startswith(origin + "/"):
            ids.append(key_id[len(origin):])
        stmt = select(KeyPair).where(KeyPair.key_id.in_(ids))
        found = list((await self._session.execute(stmt)).scalars())
        return next((kp for kp in found if kp.key_id == key_id), found[0] if found else None)

    async def public_keys(self, owner_type: OwnerType, owner_id: str) -> list[KeyPair]:
        """Return all of the owner's keys, current and rotated, oldest first (for JWKS)."""
        _check_owner(owner_type, owner_id)
        stmt = (
            select(KeyPair)
            .where(KeyPair.owner_type == owner_type, KeyPair.owner_id == owner_id)
            .order_by(KeyPair.created_at, KeyPair.id)
        )
        return list((await self._session.execute(stmt)).scalars())

    # changes

    async def ensure(self, owner_type: OwnerType, owner_id: str, algorithm: Algorithm, key_id: str) -> KeyPair:
        """Return the owner's current key, creating it under ``key_id`` if there is none.

        ``key_id`` is used only when a key is created; an existing current key is returned as
        it is. Safe against a concurrent ``ensure`` for the same owner: the loser's insert is
        skipped (``ON CONFLICT DO NOTHING``) and the winner's key is returned. Raises
        :class:`KeyIdInUseError` if ``key_id`` already names another key.
        """
        _check_key_id(key_id)
        existing = await self.current(owner_type, owner_id, algorithm)
        if existing is not None:
            return existing
        await self._check_key_id_free(key_id)
        public_pem, private_pem = await _generate(algorithm)
        values: dict[str, Any] = {
            "owner_type": owner_type,
            "owner_id": owner_id,
            "algorithm": algorithm,
            "key_id": key_id,
            "public_pem": public_pem,
            "private_pem_encrypted": self._encrypt(private_pem, owner_type, owner_id, algorithm, key_id),
            "is_current": True,
            "rotated_at": None,
        }
        await self._insert_unless_conflict(values)
        created = await self.current(owner_type, owner_id, algorithm)
        if created is None:
            # The insert was skipped, yet the owner has no current key: the key id was taken
            # (by a concurrent writer) for another key.
            raise KeyIdInUseError(f"key id {key_id!r} already names another key")
        return created

    async def rotate(self, owner_type: OwnerType, owner_id: str, algorithm: Algorithm, new_key_id: str) -> KeyPair:
        """Make a new current key under ``new_key_id`` and demote the current one, if any.

        The old key keeps its row (``is_current`` False, ``rotated_at`` set), so it stays
        resolvable by key id. Two concurrent rotations of the same key cannot both succeed: the
        second fails on the one-current-key index when it flushes.
        """
        _check_owner(owner_type, owner_id)
        _check_algorithm(algorithm)
        _check_key_id(new_key_id)
        await self._check_key_id_free(new_key_id)
        public_pem, private_pem = await _generate(algorithm)
        old = await self.current(owner_type, owner_id, algorithm)
        if old is not None:
            old.is_current = False
            old.rotated_at = datetime.now(UTC)
            # Flush the demotion first: the one-current-key index is checked per statement.
            await self._session.flush()
        new = KeyPair(
            owner_type=owner_type,
            owner_id=owner_id,
            algorithm=algorithm,
            key_id=new_key_id,
            public_pem=public_pem,
            private_pem_encrypted=self._encrypt(private_pem, owner_type, owner_id, algorithm, new_key_id),
            is_current=True,
            rotated_at=None,
        )
        self._session.add(new)
        await self._session.flush()
        return new

    # using keys (sync: no I/O)

    def private_key(self, kp: KeyPair) -> PrivateKey:
        """Decrypt and load the private key; raises :class:`KeyDecryptionError` on failure."""
        pem = self._decrypt(kp)
        # AES-GCM has authenticated these bytes as the ones we generated, so the slow RSA
        # consistency checks on load add nothing.
        key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
        expected = rsa.RSAPrivateKey if kp.algorithm == "rsa-2048" else ed25519.Ed25519PrivateKey
        if not isinstance(key, expected):
            raise KeyDecryptionError(f"stored private key of {kp.key_id!r} is not an {kp.algorithm} key")
        return key

    def public_key(self, kp: KeyPair) -> PublicKey:
        """Load the public key from its PEM."""
        return _load_public(kp.public_pem)

    def sign(self, kp: KeyPair, data: bytes) -> bytes:
        """Sign ``data``: RSASSA-PKCS1-v1_5 with SHA-256 for RSA, plain Ed25519 otherwise."""
        key = self.private_key(kp)
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return key.sign(data)

    # internals

    async def _check_key_id_free(self, key_id: str) -> None:
        if await self.by_key_id(key_id) is not None:
            raise KeyIdInUseError(f"key id {key_id!r} already names another key")

    async def _insert_unless_conflict(self, values: dict[str, Any]) -> None:
        """INSERT, doing nothing if any unique constraint (key id, one current key) conflicts."""
        dialect = self._session.get_bind().dialect.name
        if dialect == "postgresql":
            await self._session.execute(pg_insert(KeyPair).values(**values).on_conflict_do_nothing())
        elif dialect == "sqlite":
            await self._session.execute(sqlite_insert(KeyPair).values(**values).on_conflict_do_nothing())
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            self._session.add(KeyPair(**values))
            await self._session.flush()

    def _encrypt(self, private_pem: bytes, owner_type: str, owner_id: str, algorithm: str, key_id: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        aad = _associated_data(owner_type, owner_id, algorithm, key_id)
        return _FORMAT_V1 + nonce + self._aead.encrypt(nonce, private_pem, aad)

    def _decrypt(self, kp: KeyPair) -> bytes:
        blob = bytes(kp.private_pem_encrypted)
        if blob[:1] != _FORMAT_V1 or len(blob) <= 1 + _NONCE_BYTES:
            raise KeyDecryptionError(f"stored private key of {kp.key_id!r} has an unknown format")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        aad = _associated_data(kp.owner_type, kp.owner_id, kp.algorithm, kp.key_id)
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise KeyDecryptionError(
                f"cannot decrypt the private key of {kp.key_id!r}: SECRET_KEY differs from the one "
                "it was encrypted with, or the stored row was altered"
            ) from None
