"""HTTP signatures, both specs: draft-cavage-12 (:mod:`.cavage`) and RFC 9421 (:mod:`.rfc9421`).

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

Modules: :mod:`.messages` (the request as the verifier sees it, key types, the error),
:mod:`.window` (the time window), :mod:`.digests` (``Digest``/``Content-Digest``),
:mod:`.public_keys` (what a key resolver returns, PEM parsing), :mod:`.cavage`, :mod:`.rfc9421`,
:mod:`.verify` (either spec, inbound) and :mod:`.auth` (the double knock, outbound). Callers import
from this package.
"""

from federation.activitypub.signatures.auth import SignatureAuth, SpecMemory
from federation.activitypub.signatures.cavage import cavage_signing_string, parse_cavage, sign_cavage
from federation.activitypub.signatures.digests import content_digest, digest_header
from federation.activitypub.signatures.messages import SignatureError, SignedMessage, SigningKey, Spec, VerifyKey
from federation.activitypub.signatures.public_keys import (
    KeyResolver,
    ResolvedKey,
    VerifiedSignature,
    dump_private_key,
    load_public_key,
)
from federation.activitypub.signatures.rfc9421 import sign_rfc9421
from federation.activitypub.signatures.verify import signature_key_id, verify_request

__all__ = [
    "KeyResolver",
    "ResolvedKey",
    "SignatureAuth",
    "SignatureError",
    "SignedMessage",
    "SigningKey",
    "Spec",
    "SpecMemory",
    "VerifiedSignature",
    "VerifyKey",
    "cavage_signing_string",
    "content_digest",
    "digest_header",
    "dump_private_key",
    "load_public_key",
    "parse_cavage",
    "sign_cavage",
    "sign_rfc9421",
    "signature_key_id",
    "verify_request",
]
