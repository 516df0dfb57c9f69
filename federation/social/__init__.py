"""The social hub under ``/social/``: timelines, compose, follows, notifications, likes and boosts."""

from federation.social.controllers import router

__all__ = ["router"]
