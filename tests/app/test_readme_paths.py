"""The README names where things live (`app/safe_http.py`, `forge/mirror.py`…): every such path
must exist, so a moved module cannot leave the docs pointing at the wrong package (the SSRF-safe
client was once said to live in federation/; it is the kernel's, app/safe_http.py)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A backticked path under one of the repository's top-level folders (globs and placeholders such
# as `domains/<name>/` are descriptions, not paths).
PATH = re.compile(r"`((?:app|domains|forge|federation|fragments|tests|bench|scripts|deploy|migrations|static"
                  r"|templates)/[\w./-]*)`")


def readme_paths(text: str) -> list[str]:
    return [match.group(1) for match in PATH.finditer(text)]


def test_every_path_the_readme_names_exists() -> None:
    paths = readme_paths((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "app/safe_http.py" in paths  # the outbound client is named where it lives
    missing = [p for p in paths if not (ROOT / p.rstrip("/")).exists()]
    assert not missing, missing


def test_a_wrong_path_is_caught() -> None:
    named = readme_paths("the client is `federation/safe_http.py`; see `domains/<name>/`")
    assert named == ["federation/safe_http.py"]  # the placeholder is not taken for a path
    assert not (ROOT / named[0]).exists()
