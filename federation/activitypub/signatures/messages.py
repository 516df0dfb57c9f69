"""What both specs share: the request as the verifier sees it, the key types and the error."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

Spec: TypeAlias = Literal["cavage", "rfc9421"]
SigningKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
VerifyKey: TypeAlias = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class SignatureError(Exception):
    """A request's signature is missing, malformed, stale or wrong. ``status`` is the HTTP answer."""

    def __init__(self, reason: str, status: int = 401, *, key_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.key_id = key_id


# --- messages ---------------------------------------------------------------------------


class Headers:
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
    headers: Headers
    body: bytes = b""

    @classmethod
    def build(cls, method: str, url: str, headers: Mapping[str, str] | Iterable[tuple[str, str]],
              body: bytes = b"") -> SignedMessage:
        items = headers.items() if isinstance(headers, Mapping) else headers
        return cls(method=method.upper(), url=url, headers=Headers(items), body=body)

    @property
    def path_and_query(self) -> str:
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"


class HttpxMessage:
    """Adapter: an :class:`httpx.Request` seen through http-message-signatures' duck type."""

    def __init__(self, request: httpx.Request) -> None:
        self.method = request.method.upper()
        self.url = str(request.url)
        self.headers = request.headers


def request_host(url: httpx.URL) -> str:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.host if url.port in (None, default) else f"{url.host}:{url.port}"
