"""HTTP signatures, both specs, in one module: draft-cavage-12 and RFC 9421.

Inbound (design/federation.md §3-§4): :func:`verify_request` picks the spec
(``Signature-Input`` present means RFC 9421), checks the time window, the required coverage and
the body digest over the raw bytes, resolves the key through a caller-supplied async resolver
(which does the ``keyId`` -> actor round trip), verifies, and on failure asks the resolver once
more with ``refresh=True`` before giving up. Cavage accepts ``rsa-sha256`` and ``hs2019`` (the
key type decides the primitive), ``(created)``/``(expires)``, a leading ``Signature`` prefix,
and a ``(request-target)`` signed with or without the query string. RFC 9421 is verified by
``http-message-signatures`` (``rsa-v1_5-sha256``, ``rsa-pss-sha512`` and ``ed25519``), and
only the components it returns are trusted; other algorithms (``hmac-sha256``, ``ecdsa-*``) and
key types are refused with a reason.

Outbound: :func:`sign_cavage` and :func:`sign_rfc9421` add ``Date``, ``Digest`` or
``Content-Digest`` and the signature to an :class:`httpx.Request`; :class:`SignatureAuth` is the
``httpx.Auth`` that knocks with cavage first, retries once with RFC 9421 on a 401 and remembers
per host which spec worked (:class:`SpecMemory`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

import httpx
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, algorithms
from http_message_signatures.exceptions import HTTPMessageSignaturesException
from http_message_signatures.signatures import HTTPSignatureHandler
from http_message_signatures.structures import VerifyResult
from http_sf.compat import Dictionary, InnerList, Item

__all__ = [
    "KeyResolver",
    "ResolvedKey",
    "SignatureAuth",
    "SignatureError",
    "SignedMessage",
    "SpecMemory",
    "VerifiedSignature",
    "content_digest",
    "digest_header",
    "sign_cavage",
    "sign_rfc9421",
    "verify_request",
]

log = logging.getLogger("rose_ash.federation.signatures")

Spec: TypeAlias = Literal["cavage", "rfc9421"]
SigningKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
VerifyKey: TypeAlias = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# Mastodon's window: created (or Date) at most 1 h ahead; expiry = expires, else created + 5 min,
# capped at created + 12 h; rejected once expiry is more than 1 h in the past.
CLOCK_SKEW = timedelta(hours=1)
DEFAULT_VALIDITY = timedelta(minutes=5)
MAX_VALIDITY = timedelta(hours=12)


class SignatureError(Exception):
    """A request's signature is missing, malformed, stale or wrong. ``status`` is the HTTP answer."""

    def __init__(self, reason: str, status: int = 401, *, key_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.key_id = key_id


# --- messages ---------------------------------------------------------------------------


class _Headers:
    """Case-insensitive header view with the interface http-message-signatures expects."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(k, v) for k, v in items]
        self._index: dict[str, str] | None = None

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def get(self, name: str, default: str | None = None) -> str | None:
        if self._index is None:
            index: dict[str, str] = {}
            for k, v in self._items:
                key = k.lower()
                index[key] = f"{index[key]}, {v}" if key in index else v
            self._index = index
        return self._index.get(name.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._items))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.__delitem__(name)
        self._items.append((name, value))
        self._index = None

    def __delitem__(self, name: str) -> None:
        self._items = [(k, v) for k, v in self._items if k.lower() != name.lower()]
        self._index = None


@dataclass
class SignedMessage:
    """An inbound request as the verifier sees it: method, absolute URL, headers and raw body."""

    method: str
    url: str
    headers: _Headers
    body: bytes = b""

    @classmethod
    def build(cls, method: str, url: str, headers: Mapping[str, str] | Iterable[tuple[str, str]],
              body: bytes = b"") -> SignedMessage:
        items = headers.items() if isinstance(headers, Mapping) else headers
        return cls(method=method.upper(), url=url, headers=_Headers(items), body=body)

    @property
    def path_and_query(self) -> str:
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"


class _HttpxMessage:
    """Adapter: an :class:`httpx.Request` seen through http-message-signatures' duck type."""

    def __init__(self, request: httpx.Request) -> None:
        self.method = request.method.upper()
        self.url = str(request.url)
        self.headers = request.headers


# --- digests ----------------------------------------------------------------------------


def digest_header(body: bytes) -> str:
    """``Digest: SHA-256=<b64>`` (RFC 3230 §4.3.2; covered as ``digest`` by draft-cavage-12 §2.3)."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def content_digest(body: bytes) -> str:
    """``Content-Digest: sha-256=:<b64>:`` (RFC 9530 §2; signed as the ``content-digest`` component)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


_DIGEST_ALGS: dict[str, Callable[[bytes], bytes]] = {
    "sha-256": lambda b: hashlib.sha256(b).digest(),
    "sha-512": lambda b: hashlib.sha512(b).digest(),
}


def _check_digest(value: str | None, body: bytes) -> None:
    """Check a cavage ``Digest`` header (``SHA-256=...[, SHA-512=...]``, RFC 3230 §4.3.2) against the
    raw body, before any JSON parsing (design/federation.md §3 step 6)."""
    if not value:
        raise SignatureError("Digest header missing")
    seen = False
    for part in value.split(","):
        name, sep, b64 = part.strip().partition("=")
        fn = _DIGEST_ALGS.get(name.strip().lower())
        if not sep or fn is None:
            continue
        seen = True
        try:
            expected = base64.b64decode(b64.strip(), validate=True)
        except ValueError:
            raise SignatureError("Digest header is not valid base64") from None
        if expected != fn(body):
            raise SignatureError("Digest does not match the body")
    if not seen:
        raise SignatureError("Digest header uses no supported algorithm")


def _check_content_digest(value: str | None, body: bytes) -> None:
    """Check an RFC 9530 §2 ``Content-Digest`` (``sha-256=:b64:``, ``sha-512``) against the raw body,
    before any JSON parsing (design/federation.md §3 step 6)."""
    if not value:
        raise SignatureError("Content-Digest header missing")
    seen = False
    for part in value.split(","):
        name, sep, raw = part.strip().partition("=")
        fn = _DIGEST_ALGS.get(name.strip().lower())
        raw = raw.strip()
        if not sep or fn is None:
            continue
        if not (raw.startswith(":") and raw.endswith(":") and len(raw) >= 2):
            raise SignatureError("Content-Digest member is not a byte sequence")
        seen = True
        try:
            expected = base64.b64decode(raw[1:-1], validate=True)
        except ValueError:
            raise SignatureError("Content-Digest is not valid base64") from None
        if expected != fn(body):
            raise SignatureError("Content-Digest does not match the body")
    if not seen:
        raise SignatureError("Content-Digest uses no supported algorithm")


# --- keys -------------------------------------------------------------------------------


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


# --- time window ------------------------------------------------------------------------


def _check_window(created: datetime, expires: datetime | None, now: datetime) -> None:
    if created > now + CLOCK_SKEW:
        raise SignatureError("Signed request date outside acceptable time window (in the future)")
    expiry = expires if expires is not None else created + DEFAULT_VALIDITY
    expiry = min(expiry, created + MAX_VALIDITY)
    if expiry < now - CLOCK_SKEW:
        raise SignatureError("Signed request date outside acceptable time window")


def _from_ts(value: str | int, name: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(str(value).split(".")[0]), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise SignatureError(f"Invalid {name} parameter") from None


# --- draft-cavage -----------------------------------------------------------------------

# A quoted value is matched as the unrolled loop ``[^"\\]*(?:\\.[^"\\]*)*``: the same strings as
# ``(?:[^"\\]|\\.)*``, in linear time, without one alternation step per character (a 344-byte
# base64 signature made that the costliest step of a cavage verification).
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^,\s]*))\s*,?')


def parse_cavage(header: str) -> dict[str, str]:
    """Tolerant ``Signature`` parameter parser (draft-cavage-12 §2.1, §4): quoted or bare values and
    a leading ``Signature `` prefix, as Mastodon accepts (design/federation.md §4)."""
    value = header.strip()
    if value[:10].lower() == "signature ":
        value = value[10:]
    params: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        m = _PARAM.match(value, pos)
        if not m or m.end() == pos:
            break
        params[m.group(1).lower() if m.group(1).lower() != "keyid" else "keyId"] = (
            m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3)
        )
        pos = m.end()
    return params


def cavage_signing_string(msg: SignedMessage, names: list[str], params: Mapping[str, str], *,
                          with_query: bool = True) -> str:
    """The draft-cavage-12 §2.3 signing string for ``names``; ``(request-target)`` with or without the
    query (design/federation.md §4: Fedify, apsig and Takahē sign the path alone)."""
    lines = []
    for name in names:
        if name == "(request-target)":
            target = msg.path_and_query if with_query else msg.path
            lines.append(f"(request-target): {msg.method.lower()} {target}")
        elif name == "(created)":
            if "created" not in params:
                raise SignatureError("(created) is signed but no created parameter was sent")
            lines.append(f"(created): {params['created']}")
        elif name == "(expires)":
            if "expires" not in params:
                raise SignatureError("(expires) is signed but no expires parameter was sent")
            lines.append(f"(expires): {params['expires']}")
        else:
            value = msg.headers.get(name)
            if value is None:
                raise SignatureError(f"signed header {name!r} is missing from the request")
            lines.append(f"{name}: {value}")
    return "\n".join(lines)


def _verify_raw(key: VerifyKey, algorithm: str, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if algorithm not in {"rsa-sha256", "hs2019"}:
                return False
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            if algorithm not in {"ed25519", "hs2019"}:
                return False
            key.verify(signature, data)
    except CryptoInvalidSignature:
        return False
    return True


@dataclass
class _CavageParsed:
    key_id: str
    algorithm: str
    names: list[str]
    signature: bytes
    params: dict[str, str]


def _parse_cavage_request(msg: SignedMessage, now: datetime) -> _CavageParsed:
    header = msg.headers.get("signature")
    if not header:
        raise SignatureError("Request not signed")
    params = parse_cavage(header)
    key_id = params.get("keyId")
    sig_b64 = params.get("signature")
    if not key_id or not sig_b64:
        raise SignatureError("Incompatible Signature header: keyId and signature are required")
    algorithm = (params.get("algorithm") or "hs2019").lower()
    if algorithm not in {"rsa-sha256", "hs2019", "ed25519"}:
        raise SignatureError(f"Unsupported signature algorithm {algorithm!r}", key_id=key_id)
    names = [n.lower() for n in (params.get("headers") or "date").split()]
    try:
        signature = base64.b64decode(sig_b64, validate=True)
    except ValueError:
        raise SignatureError("Signature is not valid base64", key_id=key_id) from None
    # time window
    if "(created)" in names:
        created = _from_ts(params.get("created", ""), "created")
    elif "date" in names:
        raw_date = msg.headers.get("date") or ""
        try:
            created = parsedate_to_datetime(raw_date)
        except (TypeError, ValueError):
            raise SignatureError(f"Invalid Date header: not RFC 2616 compliant date: {raw_date!r}",
                                 key_id=key_id) from None
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
    else:
        raise SignatureError("Signature covers neither date nor (created)", key_id=key_id)
    expires = _from_ts(params["expires"], "expires") if "(expires)" in names and "expires" in params else None
    _check_window(created, expires, now)
    # coverage
    if msg.method == "GET" and not {"(request-target)", "host"} <= set(names):
        raise SignatureError("A signed GET must cover (request-target) and host", key_id=key_id)
    if msg.method == "POST":
        if "digest" not in names:
            raise SignatureError("Mandatory header Digest not signed", key_id=key_id)
        _check_digest(msg.headers.get("digest"), msg.body)
    return _CavageParsed(key_id, algorithm, names, signature, params)


def _cavage_verify_with(parsed: _CavageParsed, msg: SignedMessage, pem: str) -> bool:
    key = load_public_key(pem)
    for with_query in (True, False):
        data = cavage_signing_string(msg, parsed.names, parsed.params, with_query=with_query).encode("utf-8")
        if _verify_raw(key, parsed.algorithm, parsed.signature, data):
            return True
        if "?" not in msg.url:
            break
    return False


# --- RFC 9421 ---------------------------------------------------------------------------

_RFC_ALGS: dict[str, type[algorithms.HTTPSignatureAlgorithm]] = {
    "rsa-v1_5-sha256": algorithms.RSA_V1_5_SHA256,
    "rsa-pss-sha512": algorithms.RSA_PSS_SHA512,
    "ed25519": algorithms.ED25519,
}
"""The RFC 9421 §3.3 algorithms an inbox accepts. ``ecdsa-p256-sha256``/``ecdsa-p384-sha384`` (no
ActivityPub peer publishes EC keys) and ``hmac-sha256`` (a shared secret, which an actor's public
key document cannot carry) are refused with a reason, before any key is fetched."""


class _OneKey:
    def __init__(self, key: VerifyKey) -> None:
        self.key = key

    def resolve_public_key(self, key_id: str) -> VerifyKey:
        return self.key


def _parse_signature_dictionary(value: str) -> Dictionary:
    """Parse ``Signature-Input`` or ``Signature`` (RFC 9421 §4.1, §4.2: RFC 8941 Dictionaries)
    exactly as http-message-signatures does, duplicate labels refused."""
    parsed: Dictionary = HTTPSignatureHandler._parse_signature_dictionary(value)
    return parsed


class _Verifier(HTTPMessageVerifier):
    """``HTTPMessageVerifier`` given back the Dictionaries our checks already parsed.

    The library parses ``Signature-Input`` and ``Signature`` again inside ``verify()``; for the
    identical field value it now gets the object we parsed (parsing is deterministic and neither
    side mutates the result), so each field is parsed once per request. Any other value is
    parsed as before.
    """

    def __init__(self, *, parsed: Mapping[str, Dictionary], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._parsed = parsed

    def _parse_signature_dictionary(self, value: str) -> Dictionary:  # type: ignore[override]
        found = self._parsed.get(value)
        return found if found is not None else _parse_signature_dictionary(value)


@dataclass
class _RfcParsed:
    label: str
    key_id: str
    alg: str | None
    components: list[str]  # component names, parameters dropped
    params: dict[str, Any]
    parsed: dict[str, Dictionary]  # field value -> Dictionary, handed to the library


def _component_name(component: str) -> str:
    """``"@query-param";name="Pet"`` -> ``@query-param`` (a serialized RFC 9421 §2 component id)."""
    return component.split(";", 1)[0].strip('"')


def _parse_rfc9421(msg: SignedMessage) -> _RfcParsed:
    """Read the one signature of a request (RFC 9421 §3.2, §4.1, §4.2): its label, covered
    components and parameters from ``Signature-Input``, and its value from ``Signature``.

    More than one signature is refused: choosing among them needs an expected ``tag`` (§2.3,
    §4.3), which ActivityPub does not define, and http-message-signatures refuses them too.
    """
    raw_input = (msg.headers.get("signature-input") or "").strip(" \t")
    raw_signature = (msg.headers.get("signature") or "").strip(" \t")
    try:
        inputs = _parse_signature_dictionary(raw_input)
        signatures = _parse_signature_dictionary(raw_signature)
    except Exception:
        raise SignatureError("Malformed Signature-Input or Signature header") from None
    if not inputs:
        raise SignatureError("Malformed Signature-Input header")
    if len(inputs) > 1 or len(signatures) > 1:
        raise SignatureError("More than one signature in Signature-Input/Signature; send exactly one")
    label, member = next(iter(inputs.items()))
    if not isinstance(member, InnerList) or not all(isinstance(c, Item) for c in member):
        raise SignatureError("Malformed Signature-Input member")
    params = dict(member.params)
    key_id = params.get("keyid")
    if not isinstance(key_id, str) or not key_id:
        raise SignatureError("Signature-Input has no keyid")
    value = signatures.get(label)
    if not isinstance(value, Item) or not isinstance(value.value, bytes):
        raise SignatureError(f"Signature has no byte sequence labelled {label!r}", key_id=key_id)
    alg = params.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise SignatureError("Signature-Input alg is not a string", key_id=key_id)
    return _RfcParsed(str(label), key_id, alg, [str(c.value) for c in member], params,
                      {raw_input: inputs, raw_signature: signatures})


def _check_rfc9421_policy(parsed: _RfcParsed, msg: SignedMessage, now: datetime) -> None:
    """The inbox's rules for an RFC 9421 signature (design/federation.md §3), before any key fetch:
    an accepted algorithm (RFC 9421 §3.2: without ``alg`` the key and our configuration decide), ``created`` within
    the time window, coverage of ``@method`` and ``@target-uri`` (or ``@path`` and ``@authority``),
    and on a POST ``content-digest``, checked against the raw body (RFC 9530 §2)."""
    key_id = parsed.key_id
    if parsed.alg is not None and parsed.alg not in _RFC_ALGS:
        raise SignatureError(f"Unsupported RFC 9421 algorithm {parsed.alg!r}; this inbox accepts "
                             f"{', '.join(_RFC_ALGS)}", key_id=key_id)
    created = parsed.params.get("created")
    if type(created) is not int:
        raise SignatureError("Signature-Input has no created parameter", key_id=key_id)
    expires_raw = parsed.params.get("expires")
    expires = _from_ts(expires_raw, "expires") if type(expires_raw) is int else None
    _check_window(_from_ts(created, "created"), expires, now)
    covered = set(parsed.components)
    if "@method" not in covered or not ("@target-uri" in covered or {"@path", "@authority"} <= covered):
        raise SignatureError("Signature must cover @method and @target-uri (or @path and @authority)", key_id=key_id)
    if msg.method == "POST":
        if "content-digest" not in covered:
            raise SignatureError("Mandatory component content-digest not signed", key_id=key_id)
        _check_content_digest(msg.headers.get("content-digest"), msg.body)


def signature_key_id(msg: SignedMessage) -> str:
    """The keyId a request claims to be signed with (RFC 9421 ``keyid`` parameter, §2.3, or the
    draft-cavage ``keyId``), unverified; "" when there is none. For cheap refusals (domain
    blocks) before any key is fetched."""
    if "signature-input" in msg.headers:
        try:
            return _parse_rfc9421(msg).key_id
        except SignatureError:
            return ""
    return parse_cavage(msg.headers.get("signature") or "").get("keyId", "")


def _parse_rfc9421_request(msg: SignedMessage, now: datetime) -> _RfcParsed:
    parsed = _parse_rfc9421(msg)
    _check_rfc9421_policy(parsed, msg, now)
    return parsed


def _rfc9421_verify_signature(parsed: _RfcParsed, msg: SignedMessage, key: VerifyKey,
                              alg: type[algorithms.HTTPSignatureAlgorithm]) -> VerifyResult | None:
    """RFC 9421 §3.2 by http-message-signatures: rebuild the signature base (§2.5) from ``msg``
    and verify the signature with ``key`` under ``alg``. No inbox policy here; None if it fails.

    The library sees only ``Signature-Input``, ``Signature`` and the covered fields: a header it
    is not shown can only make verification fail, never pass.
    """
    wanted = {"signature-input", "signature", *(c for c in parsed.components if not c.startswith("@"))}
    view = SignedMessage(msg.method, msg.url, _Headers((k, v) for k, v in msg.headers.items() if k.lower() in wanted))
    verifier = _Verifier(parsed=parsed.parsed, signature_algorithm=alg, key_resolver=_OneKey(key))  # type: ignore[arg-type]
    verifier.max_clock_skew = CLOCK_SKEW
    try:
        results = verifier.verify(view, max_age=None)
    except HTTPMessageSignaturesException:
        return None
    return results[0] if len(results) == 1 else None


def _rfc9421_verify_with(parsed: _RfcParsed, msg: SignedMessage, pem: str) -> tuple[bool, str, tuple[str, ...]]:
    key = load_public_key(pem)
    alg_id = parsed.alg or ("ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "rsa-v1_5-sha256")
    alg_cls = _RFC_ALGS.get(alg_id)
    if alg_cls is None:
        raise SignatureError(f"Unsupported RFC 9421 algorithm {alg_id!r}", key_id=parsed.key_id)
    if (alg_id == "ed25519") != isinstance(key, ed25519.Ed25519PublicKey):
        return False, alg_id, ()
    result = _rfc9421_verify_signature(parsed, msg, key, alg_cls)
    if result is None:
        return False, alg_id, ()
    # Trust only what verify() returned: re-check the coverage on the verified result.
    covered = tuple(_component_name(k) for k in result.covered_components if k != '"@signature-params"')
    names = set(covered)
    if "@method" not in names or not ("@target-uri" in names or {"@path", "@authority"} <= names):
        return False, alg_id, covered
    if msg.method == "POST" and "content-digest" not in names:
        return False, alg_id, covered
    return True, alg_id, covered


# --- verify, whichever spec -------------------------------------------------------------


async def verify_request(msg: SignedMessage, resolve: KeyResolver, *, now: datetime | None = None) -> VerifiedSignature:
    """Verify an inbound request or raise :class:`SignatureError` (status 401).

    design/federation.md §3: ``Signature-Input`` selects RFC 9421 (§3.2), else draft-cavage-12
    (§2.5); time window, coverage and body digest are checked before the key is resolved, and a
    failed verification asks the resolver once more with ``refresh=True``.
    """
    now = now or datetime.now(UTC)
    spec: Spec = "rfc9421" if "signature-input" in msg.headers else "cavage"
    key_id: str
    if spec == "cavage":
        cparsed = _parse_cavage_request(msg, now)
        key_id = cparsed.key_id
    else:
        if "signature" not in msg.headers:
            raise SignatureError("Signature-Input without Signature")
        rparsed = _parse_rfc9421_request(msg, now)
        key_id = rparsed.key_id

    for refresh in (False, True):
        found = await resolve(key_id, refresh)
        if found is None:
            if refresh:
                raise SignatureError("Could not resolve the signing key", key_id=key_id)
            continue
        try:
            if spec == "cavage":
                ok = _cavage_verify_with(cparsed, msg, found.public_pem)
                algorithm, covered = cparsed.algorithm, tuple(cparsed.names)
            else:
                ok, algorithm, covered = _rfc9421_verify_with(rparsed, msg, found.public_pem)
        except ValueError:
            ok, algorithm, covered = False, "", ()
        if ok:
            return VerifiedSignature(spec=spec, key_id=key_id, owner=found.owner, algorithm=algorithm, covered=covered)
    raise SignatureError("Verification failed", key_id=key_id)


# --- signing ----------------------------------------------------------------------------


def _sign_raw(key: SigningKey, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def _http_date(now: datetime) -> str:
    return format_datetime(now.astimezone(UTC), usegmt=True)


def _host(url: httpx.URL) -> str:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.host if url.port in (None, default) else f"{url.host}:{url.port}"


def sign_cavage(request: httpx.Request, key_id: str, key: SigningKey, *, now: datetime | None = None) -> None:
    """Add ``Host``/``Date``/``Digest`` and a draft-cavage-12 §2.3, §4 ``Signature`` to ``request`` in place.

    GET covers ``(request-target) host date`` (+ ``accept``); POST covers
    ``(request-target) host date digest content-type``. The request-target carries the query.
    """
    now = now or datetime.now(UTC)
    request.headers["Host"] = _host(request.url)
    request.headers["Date"] = _http_date(now)
    names = ["(request-target)", "host", "date"]
    body = request.content if request.method.upper() != "GET" else b""
    if request.method.upper() != "GET":
        request.headers["Digest"] = digest_header(body)
        names.append("digest")
        if "content-type" in request.headers:
            names.append("content-type")
    elif "accept" in request.headers:
        names.append("accept")
    target = request.url.raw_path.decode("ascii")
    lines = []
    for name in names:
        if name == "(request-target)":
            lines.append(f"(request-target): {request.method.lower()} {target}")
        else:
            lines.append(f"{name}: {request.headers[name]}")
    signature = base64.b64encode(_sign_raw(key, "\n".join(lines).encode("utf-8"))).decode("ascii")
    algorithm = "rsa-sha256" if isinstance(key, rsa.RSAPrivateKey) else "hs2019"
    request.headers["Signature"] = (
        f'keyId="{key_id}",algorithm="{algorithm}",headers="{" ".join(names)}",signature="{signature}"'
    )


def sign_rfc9421(request: httpx.Request, key_id: str, key: SigningKey, *, now: datetime | None = None) -> None:
    """Add ``Content-Digest`` (POST, RFC 9530 §2) and an RFC 9421 §3.1 ``sig1`` signature covering
    ``@method @target-uri @authority`` (+ ``content-digest``) to ``request`` in place."""
    now = now or datetime.now(UTC)
    components = ["@method", "@target-uri", "@authority"]
    if request.method.upper() != "GET":
        request.headers["Content-Digest"] = content_digest(request.content)
        components.append("content-digest")
    alg: type[algorithms.HTTPSignatureAlgorithm] = (
        algorithms.RSA_V1_5_SHA256 if isinstance(key, rsa.RSAPrivateKey) else algorithms.ED25519
    )

    class _Key:
        def resolve_private_key(self, _key_id: str) -> SigningKey:
            return key

    signer = HTTPMessageSigner(signature_algorithm=alg, key_resolver=_Key())  # type: ignore[arg-type]
    signer.sign(
        _HttpxMessage(request),
        key_id=key_id,
        created=now,
        covered_component_ids=components,
        label="sig1",
        include_alg=True,
        use_existing_digest=request.method.upper() != "GET",
    )


# --- double knock -----------------------------------------------------------------------


class SpecMemory:
    """Which spec worked for each host (thread-safe; seeded from and saved to the database)."""

    def __init__(self, initial: Mapping[str, Spec] | None = None) -> None:
        self._by_host: dict[str, Spec] = dict(initial or {})
        self._lock = threading.Lock()

    def get(self, host: str) -> Spec | None:
        with self._lock:
            return self._by_host.get(host)

    def set(self, host: str, spec: Spec) -> None:
        with self._lock:
            self._by_host[host] = spec

    def snapshot(self) -> dict[str, Spec]:
        with self._lock:
            return dict(self._by_host)


@dataclass
class SignatureAuth(httpx.Auth):
    """httpx.Auth signing with cavage first, then RFC 9421 once on a 401; remembers per host."""

    key_id: str
    key: SigningKey
    memory: SpecMemory = field(default_factory=SpecMemory)
    used: Spec | None = None

    requires_request_body = True

    def _sign(self, request: httpx.Request, spec: Spec) -> None:
        for name in ("Signature", "Signature-Input", "Digest", "Content-Digest"):
            if name in request.headers:
                del request.headers[name]
        if spec == "cavage":
            sign_cavage(request, self.key_id, self.key)
        else:
            sign_rfc9421(request, self.key_id, self.key)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        host = _host(request.url)
        first: Spec = self.memory.get(host) or "cavage"
        self._sign(request, first)
        response = yield request
        self.used = first
        if response.status_code != 401:
            if response.status_code < 400:
                self.memory.set(host, first)
            return
        other: Spec = "rfc9421" if first == "cavage" else "cavage"
        log.info("signature knock %s refused by %s with 401; retrying with %s", first, host, other)
        self._sign(request, other)
        response = yield request
        self.used = other
        if response.status_code < 400:
            self.memory.set(host, other)


def dump_private_key(key: SigningKey) -> bytes:
    """PKCS#8 PEM of a private key (for test oracles only)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
