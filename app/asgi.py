"""ASGI entry point for servers: ``uvicorn --factory app.asgi:create_app --forwarded-allow-ips ''``.

Pass ``--forwarded-allow-ips`` (or FORWARDED_ALLOW_IPS) as ``rose-ash run`` does: the proxy's
address, or empty for none. uvicorn's own default believes ``X-Forwarded-For`` from 127.0.0.1,
so any local client could choose the address rate limits count it under (README: Configuration).
"""

from app.factory import create_app

__all__ = ["create_app"]
