"""The keypair registry: signing, encryption at rest, rotation and idempotent creation."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from federation import keys
from federation.keys import KeyDecryptionError, KeyIdInUseError, KeyPair, KeyRegistry, verify

SECRET = "test-secret-key-not-for-production-0123456789"
ALICE = "https://example.test/@alice#main-key"
BOB = "https://example.test/@bob#main-key"
MESSAGE = b"(request-target): post /inbox\nhost: remote.test\ndate: Tue, 07 Jun 2022 20:51:35 GMT"

pytestmark = pytest.mark.anyio
both_algorithms = pytest.mark.parametrize("algorithm", ["rsa-2048", "ed25519"])


def _registry(session: AsyncSession, secret: str = SECRET) -> KeyRegistry:
    return KeyRegistry(session, secret)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


async def _count(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(KeyPair))).scalar_one())


# --- signing and verification -------------------------------------------------------------


@both_algorithms
async def test_sign_and_verify_round_trip(db_session: AsyncSession, algorithm: Any) -> None:
    registry = _registry(db_session)
    alice = await registry.ensure("user", "alice", algorithm, ALICE)
    bob = await registry.ensure("user", "bob", algorithm, BOB)

    signature = registry.sign(alice, MESSAGE)

    assert verify(alice.public_pem, algorithm, signature, MESSAGE) is True
    assert verify(alice.public_pem.encode(), algorithm, signature, MESSAGE) is True
    assert verify(alice.public_pem, algorithm, signature, MESSAGE + b"x") is False
    tampered = bytes([signature[0] ^ 0x01]) + signature[1:]
    assert verify(alice.public_pem, algorithm, tampered, MESSAGE) is False
    assert verify(bob.public_pem, algorithm, signature, MESSAGE) is False


async def test_rsa_signature_is_pkcs1v15_sha256_and_ed25519_is_native(db_session: AsyncSession) -> None:
    registry = _registry(db_session)
    rsa_kp = await registry.ensure("actor", "blog", "rsa-2048", "https://example.test/blog#main-key")
    ed_kp = await registry.ensure("actor", "blog", "ed25519", "https://example.test/blog#ed25519-key")

    rsa_public = registry.public_key(rsa_kp)
    assert isinstance(rsa_public, rsa.RSAPublicKey)
    assert rsa_public.key_size == 2048
    # Raises InvalidSignature unless the scheme is exactly RSASSA-PKCS1-v1_5 with SHA-256.
    rsa_public.verify(registry.sign(rsa_kp, MESSAGE), MESSAGE, padding.PKCS1v15(), hashes.SHA256())

    ed_public = registry.public_key(ed_kp)
    assert isinstance(ed_public, ed25519.Ed25519PublicKey)
    ed_public.verify(registry.sign(ed_kp, MESSAGE), MESSAGE)

    assert isinstance(registry.private_key(rsa_kp), rsa.RSAPrivateKey)
    assert isinstance(registry.private_key(ed_kp), ed25519.Ed25519PrivateKey)
    assert rsa_kp.public_pem.startswith("-----BEGIN PUBLIC KEY-----")


def test_verify_rejects_mismatched_weak_and_garbage_keys() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    rsa_sig = rsa_key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    rsa_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, spki)
    pkcs1 = serialization.PublicFormat.PKCS1
    pkcs1_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, pkcs1)
    ed_pem = ed_key.public_key().public_bytes(serialization.Encoding.PEM, spki)

    # Peers publish PKCS#1 as well as SPKI PEMs.
    assert verify(pkcs1_pem, "rsa-2048", rsa_sig, MESSAGE) is True
    # The key type must match the algorithm.
    assert verify(ed_pem, "rsa-2048", rsa_sig, MESSAGE) is False
    assert verify(rsa_pem, "ed25519", ed_key.sign(MESSAGE), MESSAGE) is False
    # A PSS signature is not a PKCS#1 v1.5 signature.
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    assert verify(rsa_pem, "rsa-2048", rsa_key.sign(MESSAGE, pss, hashes.SHA256()), MESSAGE) is False
    # RSA keys below 2048 bits are refused even with a valid signature.
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_pem = weak.public_key().public_bytes(serialization.Encoding.PEM, spki)
    weak_sig = weak.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    assert verify(weak_pem, "rsa-2048", weak_sig, MESSAGE) is False
    # An unparsable PEM is a failed verification, not a crash.
    garbage = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"
    assert verify(garbage, "rsa-2048", rsa_sig, MESSAGE) is False
    # An unknown algorithm name is the caller's bug.
    with pytest.raises(ValueError, match="unknown key algorithm"):
        verify(rsa_pem, "rsa-sha256", rsa_sig, MESSAGE)


# --- encryption at rest ---------------------------------------------------------------------


@both_algorithms
async def test_database_row_holds_no_plaintext_private_key(db_session: AsyncSession, algorithm: Any) -> None:
    registry = _registry(db_session)
    kp = await registry.ensure("instance", "instance", algorithm, "https://example.test/actor#main-key")
    private = registry.private_key(kp)

    forbidden: dict[str, bytes] = {
        "PKCS#8 DER": private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "PKCS#8 PEM body": private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).splitlines()[1],
    }
    if isinstance(private, rsa.RSAPrivateKey):
        forbidden["PKCS#1 DER"] = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        d = private.private_numbers().d
        forbidden["private exponent"] = d.to_bytes((d.bit_length() + 7) // 8, "big")
    else:
        forbidden["raw Ed25519 seed"] = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    result = await db_session.execute(
        text("SELECT * FROM federation_keypair WHERE key_id = :key_id"), {"key_id": kp.key_id}
    )
    row = result.mappings().one()
    stored = [_as_bytes(value) for value in row.values()]

    assert any(kp.public_pem.encode() == value for value in stored), "expected the row of this key"
    for value in stored:
        assert b"PRIVATE KEY" not in value
        for label, secret_bytes in forbidden.items():
            assert secret_bytes not in value, f"{label} found in the stored row"
    # Ciphertext is version byte + 12-byte nonce + ciphertext and 16-byte tag, and is not empty.
    assert len(_as_bytes(row["private_pem_encrypted"])) > 1 + 12 + 16


async def test_another_secret_cannot_decrypt(db_session: AsyncSession) -> None:
    kp = await _registry(db_session).ensure("oauth", "issuer", "rsa-2048", "https://example.test/oauth#k1")
    intruder = _registry(db_session, secret="a-different-secret-key-0123456789abcdef")

    with pytest.raises(KeyDecryptionError, match="SECRET_KEY differs"):
        intruder.private_key(kp)
    with pytest.raises(KeyDecryptionError, match="SECRET_KEY differs"):
        intruder.sign(kp, MESSAGE)
    # A fresh registry with the right secret reads it: the key lives in the secret, not the object.
    signature = _registry(db_session).sign(kp, MESSAGE)
    assert verify(kp.public_pem, "rsa-2048", signature, MESSAGE)


async def test_ciphertext_cannot_be_moved_to_another_row(db_session: AsyncSession) -> None:
    registry = _registry(db_session)
    alice = await registry.ensure("user", "alice", "ed25519", ALICE)
    mallory = await registry.ensure("user", "mallory", "ed25519", "https://example.test/@mallory#main-key")

    await db_session.execute(
        update(KeyPair)
        .where(KeyPair.id == mallory.id)
        .values(private_pem_encrypted=alice.private_pem_encrypted)
        .execution_options(synchronize_session="fetch")
    )
    moved = await registry.by_key_id(mallory.key_id)
    assert moved is not None
    assert moved.private_pem_encrypted == alice.private_pem_encrypted

    with pytest.raises(KeyDecryptionError):
        registry.private_key(moved)


def test_registry_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="SECRET_KEY"):
        KeyRegistry(None, "")  # type: ignore[arg-type]


# --- lookup, creation, rotation --------------------------------------------------------------


async def test_by_key_id_of_unknown_key_is_none(db_session: AsyncSession) -> None:
    registry = _registry(db_session)
    await registry.ensure("user", "alice", "ed25519", ALICE)

    assert await registry.by_key_id("https://example.test/@nobody#main-key") is None
    assert await registry.current("user", "nobody", "ed25519") is None
    assert await registry.current("user", "alice", "rsa-2048") is None


async def test_ensure_is_idempotent(db_session: AsyncSession) -> None:
    registry = _registry(db_session)
    first = await registry.ensure("repository", "0190e0a0-0000-7000-8000-000000000001", "rsa-2048", ALICE)
    again = await registry.ensure("repository", "0190e0a0-0000-7000-8000-000000000001", "rsa-2048", ALICE)
    # The key id is only used on creation; an existing current key is returned as it is.
    other_id = await registry.ensure(
        "repository", "0190e0a0-0000-7000-8000-000000000001", "rsa-2048", "https://example.test/other"
    )

    assert again.id == first.id
    assert other_id.id == first.id
    assert again.public_pem == first.public_pem
    assert await _count(db_session) == 1
    assert await registry.by_key_id("https://example.test/other") is None

    found = await registry.by_key_id(ALICE)
    assert found is not None
    assert found.id == first.id


async def test_ensure_refuses_a_key_id_that_names_another_key(db_session: AsyncSession) -> None:
    registry = _registry(db_session)
    await registry.ensure("user", "alice", "rsa-2048", ALICE)

    with pytest.raises(KeyIdInUseError):
        await registry.ensure("user", "bob", "rsa-2048", ALICE)
    assert await _count(db_session) == 1


async def test_rotation_keeps_old_key_resolvable(engine: AsyncEngine, db_session: AsyncSession) -> None:
    registry = _registry(db_session)
    old = await registry.ensure("actor", "events", "rsa-2048", "https://example.test/events#key-1")
    await registry.ensure("actor", "events", "ed25519", "https://example.test/events#ed-1")
    await registry.ensure("actor", "market", "rsa-2048", "https://example.test/market#key-1")
    old_signature = registry.sign(old, MESSAGE)

    new = await registry.rotate("actor", "events", "rsa-2048", "https://example.test/events#key-2")
    await db_session.commit()

    # Read back through a separate session, so the assertions see the stored rows.
    async with async_sessionmaker(engine, expire_on_commit=False)() as other:
        fresh = _registry(other)
        current = await fresh.current("actor", "events", "rsa-2048")
        assert current is not None
        assert current.id == new.id
        assert current.key_id == "https://example.test/events#key-2"
        assert current.is_current is True
        assert current.rotated_at is None
        assert current.public_pem != old.public_pem

        retired = await fresh.by_key_id("https://example.test/events#key-1")
        assert retired is not None
        assert retired.id == old.id
        assert retired.is_current is False
        assert retired.rotated_at is not None
        # Signatures made before the rotation still verify against the retired key.
        assert verify(retired.public_pem, "rsa-2048", old_signature, MESSAGE)
        assert not verify(current.public_pem, "rsa-2048", old_signature, MESSAGE)
        # The retired key can still be decrypted, and the new one signs.
        assert verify(retired.public_pem, "rsa-2048", fresh.sign(retired, MESSAGE), MESSAGE)
        assert verify(current.public_pem, "rsa-2048", fresh.sign(current, MESSAGE), MESSAGE)

        published = await fresh.public_keys("actor", "events")
        assert {kp.key_id for kp in published} == {
            "https://example.test/events#key-1",
            "https://example.test/events#key-2",
            "https://example.test/events#ed-1",
        }
        # ensure() after a rotation returns the new key, not the retired one.
        ensured = await fresh.ensure("actor", "events", "rsa-2048", "https://example.test/events#key-1")
        assert ensured.id == new.id


async def test_rotate_refuses_a_key_id_in_use_and_creates_when_no_key(db_session: AsyncSession) -> None:
    registry = _registry(db_session)
    kp = await registry.ensure("user", "alice", "ed25519", ALICE)

    with pytest.raises(KeyIdInUseError):
        await registry.rotate("user", "alice", "ed25519", ALICE)
    current = await registry.current("user", "alice", "ed25519")
    assert current is not None
    assert current.id == kp.id

    created = await registry.rotate("user", "bob", "ed25519", BOB)
    assert created.is_current is True
    assert (await registry.current("user", "bob", "ed25519")) is created


async def test_database_allows_one_current_key_per_owner_and_algorithm(db_session: AsyncSession) -> None:
    registry = _registry(db_session)
    kp = await registry.ensure("user", "alice", "ed25519", ALICE)
    db_session.add(
        KeyPair(
            owner_type="user",
            owner_id="alice",
            algorithm="ed25519",
            key_id="https://example.test/@alice#second",
            public_pem=kp.public_pem,
            private_pem_encrypted=kp.private_pem_encrypted,
            is_current=True,
        )
    )
    with pytest.raises(IntegrityError):
        await db_session.flush()
    await db_session.rollback()


@pytest.mark.parametrize("rival_key_id", [ALICE, "https://example.test/@alice#rival"])
async def test_concurrent_ensure_returns_the_winner(
    engine: AsyncEngine, db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch, rival_key_id: str
) -> None:
    """Another transaction creates the key while ours generates one: ours yields to it."""
    real_generate = keys._generate
    rival: dict[str, Any] = {}

    async def generate_while_a_rival_commits(algorithm: str) -> tuple[str, bytes]:
        if not rival:  # only our own call; the rival's ensure() generates normally
            rival["started"] = True
            async with async_sessionmaker(engine, expire_on_commit=False)() as other:
                kp = await KeyRegistry(other, SECRET).ensure("user", "alice", "ed25519", rival_key_id)
                await other.commit()
                rival["id"] = kp.id
        return await real_generate(algorithm)

    registry = _registry(db_session)
    assert await registry.current("user", "alice", "ed25519") is None
    monkeypatch.setattr(keys, "_generate", generate_while_a_rival_commits)

    kp = await registry.ensure("user", "alice", "ed25519", ALICE)

    assert kp.id == rival["id"]
    assert kp.key_id == rival_key_id
    assert await _count(db_session) == 1
    assert verify(kp.public_pem, "ed25519", registry.sign(kp, MESSAGE), MESSAGE)


async def test_key_generation_runs_off_the_event_loop_thread(
    db_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = keys._generate_material
    threads: list[int] = []

    def recording(algorithm: str) -> tuple[str, bytes]:
        threads.append(threading.get_ident())
        return real(algorithm)

    monkeypatch.setattr(keys, "_generate_material", recording)
    registry = _registry(db_session)
    await registry.ensure("user", "alice", "rsa-2048", ALICE)
    await registry.rotate("user", "alice", "rsa-2048", "https://example.test/@alice#key-2")

    assert len(threads) == 2
    assert threading.get_ident() not in threads


async def test_invalid_owner_and_algorithm_are_refused(db_session: AsyncSession) -> None:
    registry = _registry(db_session)
    with pytest.raises(ValueError, match="unknown owner type"):
        await registry.ensure("group", "x", "rsa-2048", ALICE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown key algorithm"):
        await registry.ensure("user", "alice", "rsa-4096", ALICE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="owner_id"):
        await registry.current("user", "", "ed25519")
    with pytest.raises(ValueError, match="key_id"):
        await registry.ensure("user", "alice", "ed25519", "")
    assert await _count(db_session) == 0


async def test_by_key_id_finds_a_key_stored_under_its_path_on_the_given_origin(db_session: AsyncSession) -> None:
    """ActivityPub keys are stored under a path (``/@carol#main-key``); the id peers see carries
    whatever origin the instance serves now."""
    registry = _registry(db_session)
    kp = await registry.ensure("user", "carol", "rsa-2048", "/@carol#main-key")
    for origin in ("https://example.test", "http://127.0.0.1:9000"):
        assert await registry.by_key_id(f"{origin}/@carol#main-key", origin=origin) is kp
    assert await registry.by_key_id("https://example.test/@carol#main-key") is None  # no origin given
    assert await registry.by_key_id("https://elsewhere.test/@carol#main-key", origin="https://example.test") is None
    assert await registry.by_key_id("/@carol#main-key") is kp
