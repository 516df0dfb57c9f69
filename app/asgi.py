"""ASGI entry point for servers: ``uvicorn --factory app.asgi:create_app``."""

from app import create_app

__all__ = ["create_app"]
