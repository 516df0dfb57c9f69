"""The double knock: an ``httpx.Auth`` that signs with cavage first, retries once with RFC 9421
on a 401, and remembers per host which spec worked."""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field

import httpx

from federation.activitypub.signatures.cavage import sign_cavage
from federation.activitypub.signatures.messages import SigningKey, Spec, request_host
from federation.activitypub.signatures.rfc9421 import sign_rfc9421

log = logging.getLogger("rose_ash.federation.signatures")


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
        host = request_host(request.url)
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
