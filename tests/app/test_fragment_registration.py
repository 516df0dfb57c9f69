"""A fragment name is registered once: a second builder raises unless it takes over with replace=True."""

from __future__ import annotations

import importlib

import pytest

import fragments.registry as fragment_registry
from app.caching import CachePolicy
from fragments.registry import FragmentContext, FragmentData, fragment, registry


async def first(ctx: FragmentContext) -> FragmentData:
    return FragmentData({"who": "first"})


async def second(ctx: FragmentContext) -> FragmentData:
    return FragmentData({"who": "second"})


def test_a_second_registration_raises_naming_the_fragment_unless_replace() -> None:
    try:
        fragment("me.test-badge", policy=CachePolicy.PERSONAL)(first)
        fragment("me.test-badge", policy=CachePolicy.PERSONAL)(first)  # the same builder again: fine
        with pytest.raises(ValueError, match=r"fragment 'me\.test-badge' is already registered .*replace=True"):
            fragment("me.test-badge", policy=CachePolicy.PERSONAL)(second)
        spec = registry.get("me.test-badge")
        assert spec is not None and spec.build is first
        fragment("me.test-badge", policy=CachePolicy.PERSONAL, replace=True)(second)  # the cart takes it over
        spec = registry.get("me.test-badge")
        assert spec is not None and spec.build is second
    finally:
        registry.remove("me.test-badge")


def test_reloading_a_module_that_declares_fragments_is_not_a_second_registration() -> None:
    import domains.blog.fragments as blog_fragments

    before = {f.name for f in registry}
    importlib.reload(blog_fragments)
    assert {f.name for f in registry} == before
    assert fragment_registry.registry is registry
