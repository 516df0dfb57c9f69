"""Helpers for driving the HTML forms as a browser would (cookies + CSRF token)."""

from __future__ import annotations

import re
from typing import Any

from httpx import Response

CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


async def csrf_token(client: Any, page: str = "/account/login") -> str:
    """The CSRF token a form on ``page`` carries (fetching the page sets the cookie)."""
    response = await client.get(page)
    match = CSRF_FIELD.search(response.text)
    assert match, f"no CSRF field on {page}"
    return match.group(1)


async def post_form(client: Any, path: str, data: dict[str, Any], *, page: str = "/account/login",
                    follow: bool = False) -> Response:
    token = await csrf_token(client, page)
    return await client.post(path, data={**data, "_csrf_token": token}, follow_redirects=follow)


async def signup(client: Any, username: str = "alice", email: str | None = None,
                 password: str = "correct horse battery staple") -> Response:
    return await post_form(client, "/account/signup", {
        "username": username, "email": email or f"{username}@example.org", "password": password,
    }, page="/account/signup")


async def login(client: Any, login: str, password: str = "correct horse battery staple") -> Response:
    return await post_form(client, "/account/login", {"login": login, "password": password})
