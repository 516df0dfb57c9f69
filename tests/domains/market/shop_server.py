"""A loopback web server with the fixture shop pages (tests/fixtures/shops) and the bad cases the
listing import must refuse: slow, too large, not HTML, redirects to a private address.

The pages name their image host ``http://cdn.shop.test``; it is served as this server's own origin,
so every fetch the import makes stays on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "shops"
PAGES = ("shopify", "shopify_offers", "woocommerce", "opengraph", "hostile")


def image_bytes(kind: str = "PNG", colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, kind)
    return out.getvalue()


def huge_jsonld_page(offers: int = 30_000) -> bytes:
    """A product page whose JSON-LD lists tens of thousands of offers (a few MB, under the cap)."""
    doc = {"@context": "https://schema.org", "@type": "Product", "name": "Endless Jam",
           "description": "x" * 100_000,
           "offers": [{"@type": "Offer", "sku": f"END-{i}", "price": f"{i}.00", "priceCurrency": "GBP"}
                      for i in range(offers)]}
    return (b"<!doctype html><html><head><script type=\"application/ld+json\">" + json.dumps(doc).encode()
            + b"</script></head><body></body></html>")


@dataclass
class ShopServer:
    origin: str
    release: threading.Event = field(default_factory=threading.Event)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"


@contextmanager
def shop_server() -> Iterator[ShopServer]:
    state: dict[str, ShopServer] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            shop = state["shop"]
            path = self.path.split("?")[0]
            shop.hits.append(path)
            name = path.strip("/").removesuffix(".html")
            if name in PAGES:
                page = (FIXTURES / f"{name}.html").read_text().replace("http://cdn.shop.test", shop.origin)
                self._send(200, page.encode(), "text/html; charset=utf-8")
            elif path.endswith((".png", ".jpg")) and "not-an-image" not in path:
                kind = "PNG" if path.endswith(".png") else "JPEG"
                shade = sum(self.path.encode()) % 200  # each address its own picture
                self._send(200, image_bytes(kind, (shade, 40, 200 - shade)),
                           f"image/{'png' if kind == 'PNG' else 'jpeg'}")
            elif path == "/not-an-image.png":
                self._send(200, b"<html>hello</html>", "image/png")
            elif path == "/huge-jsonld":
                self._send(200, huge_jsonld_page(), "text/html")
            elif path == "/too-large":
                self._send(200, b"<html>" + b"a" * 6_000_000 + b"</html>", "text/html")
            elif path == "/slow":
                shop.release.wait(30)
                self._send(200, b"<html></html>", "text/html")
            elif path == "/json":
                self._send(200, b'{"@type": "Product", "name": "x"}', "application/json")
            elif path == "/no-product":
                self._send(200, b"<html><head><title>About us</title></head><body>Hi</body></html>", "text/html")
            elif path == "/redirect-private":
                self._send(302, b"", "text/plain", {"Location": "http://10.20.30.40/products/x"})
            elif path == "/redirect-metadata":
                self._send(302, b"", "text/plain", {"Location": "http://169.254.169.254/latest/meta-data/"})
            elif path == "/redirect-shopify":
                self._send(301, b"", "text/plain", {"Location": "/shopify.html"})
            else:
                self._send(404, b"not found", "text/plain")

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # the import hangs up on purpose (a body over the cap, a timeout)

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state["shop"] = ShopServer(origin=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["shop"]
    finally:
        state["shop"].release.set()
        httpd.shutdown()
        httpd.server_close()
