"""Signatures: Mastodon's fixtures, RFC 9421 Appendix B, our own round trips and every bad case."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import MappingKeyResolver

from federation.activitypub.signatures import (
    KeyResolver,
    ResolvedKey,
    SignatureAuth,
    SignatureError,
    SignedMessage,
    SpecMemory,
    content_digest,
    digest_header,
    load_public_key,
    sign_cavage,
    sign_rfc9421,
    verify_request,
)
from federation.activitypub.signatures.rfc9421 import parse_rfc9421, rfc9421_verify_signature

FIXTURES = Path(__file__).parent / "fixtures"
MASTODON = json.loads((FIXTURES / "mastodon_signatures.json").read_text())

pytestmark = pytest.mark.anyio


def _public_pem(private_pem: str | bytes) -> str:
    key = serialization.load_pem_private_key(private_pem.encode() if isinstance(private_pem, str) else private_pem,
                                             password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _resolver(key_id: str, owner: str, pem: str, calls: list[bool] | None = None):  # type: ignore[no-untyped-def]
    async def resolve(kid: str, refresh: bool) -> ResolvedKey | None:
        if calls is not None:
            calls.append(refresh)
        return ResolvedKey(key_id, owner, pem) if kid == key_id else None

    return resolve


def _msg(request: httpx.Request) -> SignedMessage:
    return SignedMessage.build(request.method, str(request.url), list(request.headers.multi_items()),
                               request.content)


@pytest.mark.parametrize("case", MASTODON["cases"], ids=[c["name"] for c in MASTODON["cases"]])
async def test_mastodon_fixtures(case: dict[str, object]) -> None:
    now = datetime.fromisoformat(MASTODON["now"].replace("Z", "+00:00"))
    pem = _public_pem(MASTODON["private_key_pem"])
    headers = dict(case["headers"])  # type: ignore[call-overload]
    msg = SignedMessage.build(str(case["method"]), f"https://www.example.com{case['path']}", headers,
                              str(case.get("body", "")).encode())
    resolve = _resolver(MASTODON["key_id"], MASTODON["actor"], pem)
    if case["ok"]:
        result = await verify_request(msg, resolve, now=now)
        assert result.owner == MASTODON["actor"] and result.spec == "cavage"
    else:
        with pytest.raises(SignatureError) as err:
            await verify_request(msg, resolve, now=now)
        assert err.value.status == 401


def test_mastodon_digest_value() -> None:
    assert digest_header(b"Hello world") == "SHA-256=ZOyIygCyaOW6GjVnihtTFtIS9PNmskdyMlNKiuyjfzw="


# --- our own keys -----------------------------------------------------------------------

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUB = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
ED_KEY = ed25519.Ed25519PrivateKey.generate()
ED_PUB = ED_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode()
KID = "https://a.example/@alice#main-key"
ACTOR = "https://a.example/@alice"
BODY = b'{"type": "Follow", "actor": "https://a.example/@alice"}'


# --- RFC 9421 Appendix B ------------------------------------------------------------------
# Test data copied from RFC 9421 (B.1 keys, B.2 messages, signature bases and values), with the
# RFC 8792 line wrapping removed. Every value is checked below by a signature that verifies.

# B.1.2 test-key-rsa-pss (public part)
RFC_RSA_PSS_PUBLIC = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----
"""
# B.1.3 test-key-ecc-p256
RFC_P256_PRIVATE = """-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIFKbhfNZfpDsW43+0+JjUr9K+bTeuxopu653+hBaXGA7oAoGCCqGSM49
AwEHoUQDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lfw0EkjqF7xB4FivAxzic30tMM
4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==
-----END EC PRIVATE KEY-----
"""
RFC_P256_PUBLIC = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lf
w0EkjqF7xB4FivAxzic30tMM4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==
-----END PUBLIC KEY-----
"""
# B.1.4 test-key-ed25519
RFC_ED25519_PRIVATE = """-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
RFC_ED25519_PUBLIC = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
"""
# B.1.5 test-shared-secret
RFC_SHARED_SECRET = base64.b64decode("uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBt"
                                     "bmHhIDi6pcl8jsasjlTMtDQ==")

# B.2 test-request: POST /foo?param=Value&Pet=dog with these headers and body.
B2_URL = "https://example.com/foo?param=Value&Pet=dog"
B2_DIGEST = ("sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew"
             "==:")
B2_HEADERS = {
    "Host": "example.com",
    "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "Content-Type": "application/json",
    "Content-Digest": B2_DIGEST,
    "Content-Length": "18",
}
B2_BODY = b'{"hello": "world"}'
B2_CREATED = datetime.fromtimestamp(1618884473, tz=UTC)

# label -> (Signature-Input, Signature, signature base), B.2.1-B.2.3 (rsa-pss-sha512) and B.2.6.
RFC_B2 = {
    "sig-b21": (
        'sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"',
        "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8U"
        "dx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKh"
        "O4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV"
        "5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:",
        '"@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"',
    ),
    "sig-b22": (
        'sig-b22=("@authority" "content-digest" "@query-param";name="Pet");created=1618884473'
        ';keyid="test-key-rsa-pss";tag="header-example"',
        "sig-b22=:LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CDfKtjvuJyE5qH7"
        "KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1rLEuEfY17SARYhpTlaqwZVtR8N"
        "V7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ99PZfB4jY3I5rSV2DSBVkSFsURIjYErOs0tFT"
        "QosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==:",
        '"@authority": example.com\n'
        f'"content-digest": {B2_DIGEST}\n'
        '"@query-param";name="Pet": dog\n'
        '"@signature-params": ("@authority" "content-digest" "@query-param";name="Pet")'
        ';created=1618884473;keyid="test-key-rsa-pss";tag="header-example"',
    ),
    "sig-b23": (
        'sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length")'
        ';created=1618884473;keyid="test-key-rsa-pss"',
        "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5"
        "p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzN"
        "BXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9i"
        "yMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:",
        '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
        '"@method": POST\n'
        '"@path": /foo\n'
        '"@query": ?param=Value&Pet=dog\n'
        '"@authority": example.com\n'
        '"content-type": application/json\n'
        f'"content-digest": {B2_DIGEST}\n'
        '"content-length": 18\n'
        '"@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest"'
        ' "content-length");created=1618884473;keyid="test-key-rsa-pss"',
    ),
    "sig-b26": (
        'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473'
        ';keyid="test-key-ed25519"',
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
        '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
        '"@method": POST\n'
        '"@path": /foo\n'
        '"@authority": example.com\n'
        '"content-type": application/json\n'
        '"content-length": 18\n'
        '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length")'
        ';created=1618884473;keyid="test-key-ed25519"',
    ),
}
RFC_B2_KEYS = {"sig-b21": (RFC_RSA_PSS_PUBLIC, algorithms.RSA_PSS_SHA512),
               "sig-b22": (RFC_RSA_PSS_PUBLIC, algorithms.RSA_PSS_SHA512),
               "sig-b23": (RFC_RSA_PSS_PUBLIC, algorithms.RSA_PSS_SHA512),
               "sig-b26": (RFC_ED25519_PUBLIC, algorithms.ED25519)}
# B.2.5 (hmac-sha256 over test-request) and B.2.4 (ecdsa-p256-sha256 over the test-response).
B25_INPUT = 'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"'
B25_SIG = "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"
B25_BASE = ('"date": Tue, 20 Apr 2021 02:07:55 GMT\n"@authority": example.com\n"content-type": application/json\n'
            '"@signature-params": ("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"')
B24_BASE = ('"@status": 200\n"content-type": application/json\n"content-digest": sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1Xd'
            'EvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:\n"content-length": 23\n'
            '"@signature-params": ("@status" "content-type" "content-digest" "content-length");created=1618884473'
            ';keyid="test-key-ecc-p256"')
B24_SIG = "wNmSUAhwb5LxtOtOpNa6W5xj067m5hFrj0XQ4fvpaCLx0NKocgPquLgyahnzDnDAUy5eCdlYUEkLIj+32oiasw=="


def _b2(label: str, url: str = B2_URL, method: str = "POST", body: bytes = B2_BODY,
        **headers: str) -> SignedMessage:
    """The B.2 test-request carrying the signature ``label``; ``headers`` replace (or add) fields."""
    sig_input, signature, _ = RFC_B2[label]
    fields = {**B2_HEADERS, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return SignedMessage.build(method, url, {**fields, "Signature-Input": sig_input, "Signature": signature}, body)


def _run_vector(label: str, msg: SignedMessage) -> tuple[list[bytes], object]:
    """Verify ``msg`` through our RFC 9421 path (parse, then http-message-signatures with our
    adapter) with the vector's key and algorithm; returns the signature bases the algorithm was
    asked to check, and the verify result (None when it fails)."""
    pem, alg = RFC_B2_KEYS[label]
    seen: list[bytes] = []

    class Capture(alg):  # type: ignore[valid-type,misc]
        def verify(self, signature: bytes, message: bytes) -> None:
            seen.append(message)
            super().verify(signature, message)

    result = rfc9421_verify_signature(parse_rfc9421(msg), msg, load_public_key(pem), Capture)
    return seen, result


def _no_fetch(key_id: str) -> KeyResolver:
    async def resolve(kid: str, refresh: bool) -> ResolvedKey | None:
        raise AssertionError(f"key {kid} fetched for a signature that should be refused first")

    return resolve


def test_rfc9421_appendix_b_keys_are_the_spec_values() -> None:
    assert _public_pem(RFC_ED25519_PRIVATE) == RFC_ED25519_PUBLIC
    assert _public_pem(RFC_P256_PRIVATE) == RFC_P256_PUBLIC
    rsa_pss = serialization.load_pem_public_key(RFC_RSA_PSS_PUBLIC.encode())
    assert isinstance(rsa_pss, rsa.RSAPublicKey) and rsa_pss.key_size == 2048


@pytest.mark.parametrize("label", ["sig-b21", "sig-b22", "sig-b23", "sig-b26"])
def test_rfc9421_b2_rebuilds_the_base_and_verifies(label: str) -> None:
    """RFC 9421 B.2.1-B.2.3 (rsa-pss-sha512, randomized, so verify only) and B.2.6 (ed25519): from
    the spec's request our verification rebuilds the spec's signature base byte for byte (§2.5),
    and the spec's signature value verifies over it with the spec's public key."""
    seen, result = _run_vector(label, _b2(label))
    assert seen == [RFC_B2[label][2].encode("ascii")]
    assert result is not None
    assert result.label == label  # type: ignore[attr-defined]
    assert result.parameters["created"] == 1618884473  # type: ignore[attr-defined]


@pytest.mark.parametrize(("label", "change"), [
    ("sig-b21", {"sig_input": ";nonce=\"b3k2pp5k7z-50gnwp.yemd\""}),
    ("sig-b22", {"url": "https://example.com/foo?param=Value&Pet=cat"}),
    ("sig-b22", {"url": "https://example.org/foo?param=Value&Pet=dog"}),
    ("sig-b22", {"Content_Digest": B2_DIGEST.replace("WZDP", "XZDP")}),
    ("sig-b23", {"Date": "Tue, 20 Apr 2021 02:07:56 GMT"}),
    ("sig-b23", {"method": "PUT"}),
    ("sig-b23", {"url": "https://example.com/bar?param=Value&Pet=dog"}),
    ("sig-b23", {"Content_Length": "19"}),
    ("sig-b26", {"Content_Type": "text/plain"}),
    ("sig-b26", {"url": "https://example.com/bar?param=Value&Pet=dog"}),
], ids=["b21-params", "b22-query-param", "b22-authority", "b22-digest", "b23-date", "b23-method", "b23-path",
        "b23-length", "b26-content-type", "b26-path"])
def test_rfc9421_b2_tampered_fails(label: str, change: dict[str, str]) -> None:
    """Changing anything a vector covers makes it fail; for B.2.1, which covers no component,
    only a change to its signature parameters can (the nonce is dropped here)."""
    change = dict(change)
    sig_input = change.pop("sig_input", None)
    msg = _b2(label, **change)
    if sig_input is not None:
        msg.headers["Signature-Input"] = RFC_B2[label][0].replace(sig_input, "")
    seen, result = _run_vector(label, msg)
    assert result is None
    assert seen and seen != [RFC_B2[label][2].encode("ascii")]


def test_rfc9421_b21_covers_nothing_of_the_message() -> None:
    """B.2.1 only proves possession of the key: a different method, URL, header and body still
    verify. That is why the inbox policy requires coverage (next test)."""
    _, result = _run_vector("sig-b21", _b2("sig-b21", url="https://evil.example/x", method="PUT", body=b"{}",
                                           Content_Digest="sha-256=:AAAA:"))
    assert result is not None


async def test_rfc9421_b2_vectors_at_the_inbox() -> None:
    """The vectors through verify_request at their own ``created`` time. Our inbox policy
    (design/federation.md §3) refuses each, with a 401 and a reason, before fetching a key:
    B.2.1 and B.2.2 do not cover ``@method``; B.2.6 covers no ``content-digest`` on a POST.
    B.2.3 passes the policy (``@method``, ``@path`` + ``@authority``, and its sha-512
    ``Content-Digest`` matches the body) but carries no ``alg`` and its key is a plain RSA key:
    RFC 9421 §3.2 then leaves the algorithm to configuration, and ours is
    ``rsa-v1_5-sha256`` for RSA keys, so the rsa-pss-sha512 value fails (after the key fetch and
    one refetch). The vectors themselves verify through our code in the tests above."""
    for label, reason in (("sig-b21", "@method"), ("sig-b22", "@method"), ("sig-b26", "content-digest")):
        with pytest.raises(SignatureError, match=reason) as err:
            await verify_request(_b2(label), _no_fetch(label), now=B2_CREATED)
        assert err.value.status == 401
    calls: list[bool] = []
    with pytest.raises(SignatureError, match="Verification failed") as err:
        await verify_request(_b2("sig-b23"), _resolver("test-key-rsa-pss", "https://example.com/actor",
                                                        RFC_RSA_PSS_PUBLIC, calls), now=B2_CREATED)
    assert err.value.status == 401 and calls == [False, True]
    # A body that does not match the signed Content-Digest is refused before the key fetch.
    with pytest.raises(SignatureError, match="Content-Digest does not match the body"):
        await verify_request(_b2("sig-b23", body=b'{"hello": "world!"}'), _no_fetch("sig-b23"), now=B2_CREATED)
    # And outside the time window (2021) every one of them is refused.
    for label in RFC_B2:
        with pytest.raises(SignatureError, match=r"time window|@method|content-digest"):
            await verify_request(_b2(label), _no_fetch(label))


def test_rfc9421_b24_b25_spec_values_are_genuine() -> None:
    """B.2.5 (hmac-sha256) and B.2.4 (ecdsa-p256-sha256) are valid signatures: our parsing
    rebuilds B.2.5's base and the shared secret verifies it; B.2.4 signs a response (it covers
    ``@status``), which no inbox receives, so its base is checked with cryptography directly."""
    msg = SignedMessage.build("POST", B2_URL, {**B2_HEADERS, "Signature-Input": B25_INPUT, "Signature": B25_SIG},
                              B2_BODY)
    seen: list[bytes] = []

    class Capture(algorithms.HMAC_SHA256):
        def verify(self, signature: bytes, message: bytes) -> None:
            seen.append(message)
            super().verify(signature, message)

    assert rfc9421_verify_signature(parse_rfc9421(msg), msg, RFC_SHARED_SECRET, Capture) is not None  # type: ignore[arg-type]
    assert seen == [B25_BASE.encode("ascii")]
    assert hmac.new(RFC_SHARED_SECRET, B25_BASE.encode(), hashlib.sha256).digest() == base64.b64decode(
        B25_SIG.split(":")[1])
    raw = base64.b64decode(B24_SIG)
    p256 = serialization.load_pem_public_key(RFC_P256_PUBLIC.encode())
    assert isinstance(p256, ec.EllipticCurvePublicKey)
    p256.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                B24_BASE.encode(), ec.ECDSA(hashes.SHA256()))


def _signed_with(alg: type[algorithms.HTTPSignatureAlgorithm], key: object, *, include_alg: bool) -> SignedMessage:
    """A POST covering everything our inbox requires, signed by http-message-signatures."""
    msg = SignedMessage.build("POST", "https://b.example/inbox", {
        "Host": "b.example", "Content-Type": "application/activity+json", "Content-Digest": content_digest(BODY)},
        BODY)
    signer = HTTPMessageSigner(signature_algorithm=alg,
                               key_resolver=MappingKeyResolver(public_keys={}, private_keys={KID: key}))  # type: ignore[dict-item]
    signer.sign(msg, key_id=KID, created=datetime.now(UTC), label="sig1", include_alg=include_alg,
                covered_component_ids=("@method", "@target-uri", "@authority", "content-digest"),
                use_existing_digest=True)
    return msg


async def test_rfc9421_hmac_is_refused_with_a_reason() -> None:
    """hmac-sha256 (B.2.5) needs a shared secret, which an actor's key document cannot carry: the
    spec's B.2.5 request is refused (no ``@method``), and a request signed with the spec's secret
    over everything the inbox requires is refused for its algorithm, both before any key fetch."""
    b25 = SignedMessage.build("POST", B2_URL, {**B2_HEADERS, "Signature-Input": B25_INPUT, "Signature": B25_SIG},
                              B2_BODY)
    with pytest.raises(SignatureError, match="@method") as err:
        await verify_request(b25, _no_fetch("test-shared-secret"), now=B2_CREATED)
    assert err.value.status == 401
    msg = _signed_with(algorithms.HMAC_SHA256, RFC_SHARED_SECRET, include_alg=True)
    assert 'alg="hmac-sha256"' in (msg.headers.get("signature-input") or "")
    with pytest.raises(SignatureError, match="Unsupported RFC 9421 algorithm 'hmac-sha256'") as err:
        await verify_request(msg, _no_fetch(KID))
    assert err.value.status == 401 and err.value.key_id == KID


async def test_rfc9421_ecdsa_is_refused_with_a_reason() -> None:
    """ecdsa-p256-sha256 (B.2.4's algorithm, with the spec's B.1.3 key) is not accepted at an inbox:
    with ``alg`` it is refused for its algorithm before any key fetch; without ``alg`` the key
    decides, and a P-256 key is refused for its type."""
    key = serialization.load_pem_private_key(RFC_P256_PRIVATE.encode(), password=None)
    with pytest.raises(SignatureError, match="Unsupported RFC 9421 algorithm 'ecdsa-p256-sha256'") as err:
        await verify_request(_signed_with(algorithms.ECDSA_P256_SHA256, key, include_alg=True), _no_fetch(KID))
    assert err.value.status == 401
    with pytest.raises(SignatureError, match="Unsupported public key type") as err:
        await verify_request(_signed_with(algorithms.ECDSA_P256_SHA256, key, include_alg=False),
                             _resolver(KID, ACTOR, RFC_P256_PUBLIC))
    assert err.value.status == 401


# --- our own round trips ------------------------------------------------------------------


def _post(url: str = "https://b.example/inbox?x=1") -> httpx.Request:
    return httpx.Request("POST", url, content=BODY, headers={"Content-Type": "application/activity+json"})


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
@pytest.mark.parametrize("keytype", ["rsa", "ed25519"])
async def test_sign_then_verify(spec: str, keytype: str) -> None:
    key, pub = (RSA_KEY, RSA_PUB) if keytype == "rsa" else (ED_KEY, ED_PUB)
    req = _post()
    (sign_cavage if spec == "cavage" else sign_rfc9421)(req, KID, key)
    result = await verify_request(_msg(req), _resolver(KID, ACTOR, pub))
    assert result.spec == spec and result.owner == ACTOR
    get = httpx.Request("GET", "https://b.example/@bob?page=2", headers={"Accept": "application/activity+json"})
    (sign_cavage if spec == "cavage" else sign_rfc9421)(get, KID, key)
    assert (await verify_request(_msg(get), _resolver(KID, ACTOR, pub))).spec == spec


def test_cavage_outbound_shape() -> None:
    req = _post()
    sign_cavage(req, KID, RSA_KEY)
    sig = req.headers["signature"]
    assert 'algorithm="rsa-sha256"' in sig
    assert 'headers="(request-target) host date digest content-type"' in sig
    assert req.headers["digest"] == digest_header(BODY)
    req2 = _post()
    sign_rfc9421(req2, KID, RSA_KEY)
    assert req2.headers["content-digest"] == content_digest(BODY)
    assert req2.headers["signature-input"].startswith('sig1=("@method" "@target-uri" "@authority" "content-digest")')
    assert 'alg="rsa-v1_5-sha256"' in req2.headers["signature-input"]


async def test_hs2019_and_created_expires_and_signature_prefix() -> None:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    created = int(datetime.now(UTC).timestamp())
    expires = created + 300
    msg = SignedMessage.build("POST", "https://b.example/inbox", {
        "Host": "b.example", "Digest": digest_header(BODY)}, BODY)
    base = (f"(request-target): post /inbox\n(created): {created}\n(expires): {expires}\n"
            f"digest: {digest_header(BODY)}")
    sig = base64.b64encode(RSA_KEY.sign(base.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    msg.headers["Signature"] = (f'Signature keyId="{KID}", algorithm="hs2019", created={created}, '
                                f'expires={expires}, headers="(request-target) (created) (expires) digest", '
                                f'signature="{sig}"')
    assert (await verify_request(msg, _resolver(KID, ACTOR, RSA_PUB))).algorithm == "hs2019"


async def test_bad_cases() -> None:
    resolve = _resolver(KID, ACTOR, RSA_PUB)
    # unsigned
    with pytest.raises(SignatureError, match="not signed"):
        await verify_request(_msg(_post()), resolve)
    # wrongly signed (another key)
    req = _post()
    sign_cavage(req, KID, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(SignatureError, match="Verification failed"):
        await verify_request(_msg(req), resolve)
    # digest mismatch (body altered after signing), both specs
    for signer in (sign_cavage, sign_rfc9421):
        req = _post()
        signer(req, KID, RSA_KEY)
        m = _msg(req)
        m.body = BODY + b" "
        with pytest.raises(SignatureError, match=r"[Dd]igest"):
            await verify_request(m, resolve)
    # expired, both specs
    old = datetime.now(UTC) - timedelta(hours=3)
    for signer in (sign_cavage, sign_rfc9421):
        req = _post()
        signer(req, KID, RSA_KEY, now=old)
        with pytest.raises(SignatureError, match="time window"):
            await verify_request(_msg(req), resolve)
    # from the future
    req = _post()
    sign_cavage(req, KID, RSA_KEY, now=datetime.now(UTC) + timedelta(hours=2))
    with pytest.raises(SignatureError, match="time window"):
        await verify_request(_msg(req), resolve)
    # unknown key
    req = _post()
    sign_cavage(req, "https://a.example/other#main-key", RSA_KEY)
    with pytest.raises(SignatureError, match="resolve"):
        await verify_request(_msg(req), resolve)
    # malformed
    m = _msg(_post())
    m.headers["Signature"] = "garbage"
    with pytest.raises(SignatureError):
        await verify_request(m, resolve)
    m = _msg(_post())
    m.headers["Signature-Input"] = "((("
    m.headers["Signature"] = "x"
    with pytest.raises(SignatureError, match="Malformed"):
        await verify_request(m, resolve)


async def test_refetches_key_once_on_failure() -> None:
    calls: list[bool] = []
    stale = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    async def resolve(kid: str, refresh: bool) -> ResolvedKey | None:
        calls.append(refresh)
        return ResolvedKey(KID, ACTOR, RSA_PUB if refresh else stale)

    req = _post()
    sign_cavage(req, KID, RSA_KEY)
    assert (await verify_request(_msg(req), resolve)).owner == ACTOR
    assert calls == [False, True]


def test_double_knock_remembers_per_host() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        spec = "rfc9421" if "signature-input" in request.headers else "cavage"
        seen.append(spec)
        return httpx.Response(202 if spec == "rfc9421" else 401)

    memory = SpecMemory()
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        auth = SignatureAuth(KID, RSA_KEY, memory)
        assert client.post("https://b.example/inbox", content=BODY, auth=auth).status_code == 202
        assert seen == ["cavage", "rfc9421"] and auth.used == "rfc9421"
        assert memory.get("b.example") == "rfc9421"
        seen.clear()
        assert client.post("https://b.example/inbox", content=BODY, auth=SignatureAuth(KID, RSA_KEY, memory)
                           ).status_code == 202
        assert seen == ["rfc9421"]
