"""RFC 9421 HTTP message signatures through http-message-signatures: parsing the one signature of
a request, the inbox's policy (algorithms, window, coverage, digest), verification that trusts only
the components the library returns, and outbound signing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, algorithms
from http_message_signatures.exceptions import HTTPMessageSignaturesException
from http_message_signatures.signatures import HTTPSignatureHandler
from http_message_signatures.structures import VerifyResult
from http_sf.compat import Dictionary, InnerList, Item

from federation.activitypub.signatures.digests import check_content_digest, content_digest
from federation.activitypub.signatures.messages import (
    Headers,
    HttpxMessage,
    SignatureError,
    SignedMessage,
    SigningKey,
    VerifyKey,
)
from federation.activitypub.signatures.public_keys import load_public_key
from federation.activitypub.signatures.window import CLOCK_SKEW, check_window, from_timestamp

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
class RfcParsed:
    label: str
    key_id: str
    alg: str | None
    components: list[str]  # component names, parameters dropped
    params: dict[str, Any]
    parsed: dict[str, Dictionary]  # field value -> Dictionary, handed to the library


def _component_name(component: str) -> str:
    """``"@query-param";name="Pet"`` -> ``@query-param`` (a serialized RFC 9421 §2 component id)."""
    return component.split(";", 1)[0].strip('"')


def parse_rfc9421(msg: SignedMessage) -> RfcParsed:
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
    return RfcParsed(str(label), key_id, alg, [str(c.value) for c in member], params,
                      {raw_input: inputs, raw_signature: signatures})


def _check_rfc9421_policy(parsed: RfcParsed, msg: SignedMessage, now: datetime) -> None:
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
    expires = from_timestamp(expires_raw, "expires") if type(expires_raw) is int else None
    check_window(from_timestamp(created, "created"), expires, now)
    covered = set(parsed.components)
    if "@method" not in covered or not ("@target-uri" in covered or {"@path", "@authority"} <= covered):
        raise SignatureError("Signature must cover @method and @target-uri (or @path and @authority)", key_id=key_id)
    if msg.method == "POST":
        if "content-digest" not in covered:
            raise SignatureError("Mandatory component content-digest not signed", key_id=key_id)
        check_content_digest(msg.headers.get("content-digest"), msg.body)


def parse_rfc9421_request(msg: SignedMessage, now: datetime) -> RfcParsed:
    parsed = parse_rfc9421(msg)
    _check_rfc9421_policy(parsed, msg, now)
    return parsed


def rfc9421_verify_signature(parsed: RfcParsed, msg: SignedMessage, key: VerifyKey,
                              alg: type[algorithms.HTTPSignatureAlgorithm]) -> VerifyResult | None:
    """RFC 9421 §3.2 by http-message-signatures: rebuild the signature base (§2.5) from ``msg``
    and verify the signature with ``key`` under ``alg``. No inbox policy here; None if it fails.

    The library sees only ``Signature-Input``, ``Signature`` and the covered fields: a header it
    is not shown can only make verification fail, never pass.
    """
    wanted = {"signature-input", "signature", *(c for c in parsed.components if not c.startswith("@"))}
    view = SignedMessage(msg.method, msg.url, Headers((k, v) for k, v in msg.headers.items() if k.lower() in wanted))
    verifier = _Verifier(parsed=parsed.parsed, signature_algorithm=alg, key_resolver=_OneKey(key))  # type: ignore[arg-type]
    verifier.max_clock_skew = CLOCK_SKEW
    try:
        results = verifier.verify(view, max_age=None)
    except HTTPMessageSignaturesException:
        return None
    return results[0] if len(results) == 1 else None


def rfc9421_verify_with(parsed: RfcParsed, msg: SignedMessage, pem: str) -> tuple[bool, str, tuple[str, ...]]:
    key = load_public_key(pem)
    alg_id = parsed.alg or ("ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "rsa-v1_5-sha256")
    alg_cls = _RFC_ALGS.get(alg_id)
    if alg_cls is None:
        raise SignatureError(f"Unsupported RFC 9421 algorithm {alg_id!r}", key_id=parsed.key_id)
    if (alg_id == "ed25519") != isinstance(key, ed25519.Ed25519PublicKey):
        return False, alg_id, ()
    result = rfc9421_verify_signature(parsed, msg, key, alg_cls)
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
        HttpxMessage(request),
        key_id=key_id,
        created=now,
        covered_component_ids=components,
        label="sig1",
        include_alg=True,
        use_existing_digest=request.method.upper() != "GET",
    )
