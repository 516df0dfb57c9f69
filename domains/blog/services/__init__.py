"""Blog rules: posts (writing, publishing, scheduling, slugs and redirects, tags) and navigation.

Callers import from ``domains.blog.services``; the modules behind it are an internal split.
"""

# The one Markdown renderer, for other domains (a newsletter's standalone Markdown issue).
from domains.blog.renderer import render_markdown
from domains.blog.services.navigation import MAX_NAV_LINKS, NavigationService, default_navigation
from domains.blog.services.posts import (
    PUBLISH_SCHEDULED,
    BlogService,
    SlugTaken,
    post_keys,
    url_problem,
    with_relations,
)

__all__ = [
    "MAX_NAV_LINKS",
    "PUBLISH_SCHEDULED",
    "BlogService",
    "NavigationService",
    "SlugTaken",
    "default_navigation",
    "post_keys",
    "render_markdown",
    "url_problem",
    "with_relations",
]
