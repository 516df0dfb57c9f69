"""SSO between two configured hosts on a real server, told apart by the Host header: sign in on
both through the authorization server, sign out on one, and every host is signed out."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.helpers.server import app_server, free_port

pytestmark = pytest.mark.e2e
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery staple"


class Browser:
    """One cookie jar per host, as a browser keeps them; every host is served by the same process."""

    def __init__(self, address: str, port: int, hosts: list[str]) -> None:
        self.clients = {host: httpx.Client(base_url=f"http://{address}:{port}", timeout=15,
                                           headers={"Host": f"{host}:{port}"})
                        for host in hosts}

    def get(self, host: str, path: str) -> tuple[str, httpx.Response]:
        for _ in range(12):
            response = self.clients[host].get(path)
            if response.status_code not in (302, 303):
                return host, response
            target = urlsplit(response.headers["location"])
            if target.hostname:
                host = target.hostname
            path = target.path + (f"?{target.query}" if target.query else "")
        raise AssertionError("redirect loop")

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def test_sso_between_two_hosts_with_sign_out_propagation(tmp_path: Path, server_database_url: str | None) -> None:
    port = free_port()  # the configured hosts name the port the browser sends in Host
    hosts = f"blog=blog.coop.test:{port},market=market.coop.test:{port}"
    with app_server(tmp_path, database_url=server_database_url, port=port,
                    extra_env={"ROSE_ASH_DOMAIN_HOSTS": hosts}) as server:
        server.create_user("alice", PASSWORD)
        browser = Browser("127.0.0.1", server.port, ["127.0.0.1", "blog.coop.test", "market.coop.test"])

        # Signed out everywhere: the blog sends the visitor to the authorization server's sign-in page.
        host, page = browser.get("blog.coop.test", "/account")
        assert host == "127.0.0.1" and page.url.path == "/account/login"
        match = CSRF.search(page.text)
        assert match
        next_path = parse_qs(page.url.query.decode())["next"][0]
        signed_in = browser.clients["127.0.0.1"].post("/account/login", data={
            "login": "alice", "password": PASSWORD, "next": next_path, "_csrf_token": match.group(1)})
        assert signed_in.status_code == 303
        host, page = browser.get("127.0.0.1", signed_in.headers["location"])
        assert host == "blog.coop.test" and page.status_code == 200 and "alice" in page.text

        # The market host signs in without a password prompt (the server's session is reused).
        host, page = browser.get("market.coop.test", "/account")
        assert host == "market.coop.test" and page.status_code == 200 and "alice" in page.text
        cookies = {h: c.cookies.get("rose_ash_session") for h, c in browser.clients.items()}
        assert all(cookies.values()) and len(set(cookies.values())) == 3
        # A host answers only for its own session, and no other Host is answered at all.
        foreign = httpx.get(f"{server.base_url}/account", headers={"Host": f"blog.coop.test:{port}"},
                            cookies={"rose_ash_session": str(cookies["market.coop.test"])})
        assert foreign.status_code == 303 and "rose_ash_session" not in foreign.headers.get("set-cookie", "")
        crafted = httpx.get(f"{server.base_url}/oauth/sso/login", headers={"Host": "blog.coop.test:@evil.test"})
        assert crafted.status_code == 400

        # Sign out on the market host: blog and the server are signed out too.
        market = browser.clients["market.coop.test"]
        match = CSRF.search(market.get("/account").text)
        assert match
        assert market.post("/account/logout", data={"_csrf_token": match.group(1)}).status_code == 303
        assert browser.clients["blog.coop.test"].get("/account").status_code == 303
        assert browser.clients["127.0.0.1"].get("/account").status_code == 303
        browser.close()


def _raw_get(port: int, head: bytes) -> bytes:
    """One request exactly as written (httpx folds repeated headers into one line)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_repeated_host_line_is_refused(tmp_path: Path, server_database_url: str | None) -> None:
    # RFC 9112 section 3.2: more than one Host line is a 400. The allowed-hosts check reads the first
    # line while single sign-on read the last, so a second line reached SSO with another host.
    port = free_port()
    with app_server(tmp_path, database_url=server_database_url, port=port,
                    extra_env={"ROSE_ASH_DOMAIN_HOSTS": f"blog=blog.coop.test:{port}"}):
        blog, main = f"blog.coop.test:{port}".encode(), f"127.0.0.1:{port}".encode()
        for first, second in ((blog, b"evil.test"), (main, blog), (blog, blog)):
            answer = _raw_get(port, b"GET /oauth/sso/login?next=/ HTTP/1.1\r\nHost: " + first
                              + b"\r\nHost: " + second + b"\r\n")
            head = answer.partition(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 400"), (first, second, head)
            assert b"location:" not in head and b"set-cookie:" not in head
        # One Host line still signs in through the authorization server.
        single = _raw_get(port, b"GET /oauth/sso/login?next=/ HTTP/1.1\r\nHost: " + blog + b"\r\n")
        assert single.startswith(b"HTTP/1.1 303"), single[:200]
