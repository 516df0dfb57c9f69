"""Forge limits and the environment of git children.

The limits are operator settings, read with every other setting by :mod:`app.settings`
(``ROSE_ASH_FORGE_MAX_PUSH_BYTES``, ``…_MAX_FETCH_BODY_BYTES``, ``…_MAX_CONCURRENT``,
``…_MAX_PER_REPO``, ``…_TIMEOUT``, ``…_IDLE_TIMEOUT``, ``…_BODY_TIMEOUT``, ``…_MAX_BUFFERED_BODY_BYTES``,
``…_BODY_SPILL_BYTES``); :meth:`ForgeConfig.from_settings` takes
them from there. This module imports nothing from the web stack: the pre-receive hook's script
is written from here and must stay cheap to start.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings

_ENSURED: set[Path] = set()


@dataclass(frozen=True, kw_only=True)
class ForgeConfig:
    max_push_bytes: int = 1 << 30
    max_fetch_body_bytes: int = 10 << 20
    max_concurrent: int = 32
    max_per_repo: int = 8
    timeout: float = 3600.0
    idle_timeout: float = 600.0
    # Seconds to receive a fetch request's whole body (408 after); pushes get ``timeout``.
    body_timeout: float = 60.0
    # Fetch bodies are read whole before they take a slot (a slow sender holds none), so slots do
    # not bound their memory: this does, per process, counting every byte of every body not yet
    # admitted (503 past it). A body larger than ``body_spill_bytes`` moves to a temporary file.
    max_buffered_body_bytes: int = 512 << 20
    body_spill_bytes: int = 4 << 20
    hook_timeout: float = 120.0
    retry_after: int = 5
    # Where git children get a HOME, an empty global config and our hooks; None = a temp dir.
    state_dir: Path | None = field(default=None)

    @classmethod
    def from_settings(cls, settings: Settings, state_dir: Path | None = None) -> ForgeConfig:
        return cls(
            max_push_bytes=settings.forge_max_push_bytes,
            max_fetch_body_bytes=settings.forge_max_fetch_body_bytes,
            max_concurrent=settings.forge_max_concurrent,
            max_per_repo=settings.forge_max_per_repo,
            timeout=settings.forge_timeout,
            idle_timeout=settings.forge_idle_timeout,
            body_timeout=settings.forge_body_timeout,
            max_buffered_body_bytes=settings.forge_max_buffered_body_bytes,
            body_spill_bytes=settings.forge_body_spill_bytes,
            state_dir=state_dir,
        )

    @property
    def home(self) -> Path:
        return self.state_dir or Path(tempfile.gettempdir()) / f"rose-ash-forge-{os.getuid()}"

    def ensure_state(self) -> None:
        """Create HOME, the empty global config and the hooks directory (idempotent, once per process)."""
        home = self.home
        if home in _ENSURED:
            return
        (home / "hooks").mkdir(parents=True, exist_ok=True)
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        gitconfig = home / "gitconfig"
        if not gitconfig.exists():
            gitconfig.write_text("")
        hook = home / "hooks" / "pre-receive"
        script = hook_script()
        if not hook.exists() or hook.read_text() != script:
            tmp = hook.with_name(f".pre-receive.{os.getpid()}")
            tmp.write_text(script)
            tmp.chmod(0o755)
            os.replace(tmp, hook)
        _ENSURED.add(home)

    @property
    def hooks_dir(self) -> Path:
        return self.home / "hooks"

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"

    def git_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Only PATH, a controlled HOME and an empty global config (design/forge.md §4)."""
        self.ensure_state()
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(self.home / "gitconfig"),
            "GIT_TERMINAL_PROMPT": "0",
            "LANG": "C.UTF-8",
        }
        if extra:
            env.update(extra)
        return env


def hook_script() -> str:
    """The ``pre-receive`` hook git runs (``-c core.hooksPath``): our module, same interpreter."""
    import shlex

    root = Path(__file__).resolve().parent.parent
    return (
        "#!/bin/sh\n"
        "# Written by Rose Ash (forge/config.py); policy lives in forge/hooks/pre_receive.py.\n"
        f"PYTHONPATH={shlex.quote(str(root))} exec {shlex.quote(sys.executable)} -s -m forge.hooks.pre_receive\n"
    )
