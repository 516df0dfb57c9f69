"""Forge limits and the environment of git children.

Limits come from ``ROSE_ASH_FORGE_*`` environment variables (defaults suit a small instance):
``MAX_PUSH_BYTES`` (decompressed request body of a push, also ``receive.maxInputSize``),
``MAX_FETCH_BODY_BYTES`` (decompressed upload-pack request body), ``MAX_CONCURRENT`` (git
children per process), ``MAX_PER_REPO`` (git children per repository per process),
``TIMEOUT`` (seconds a request may run) and ``IDLE_TIMEOUT`` (seconds without output).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_ENSURED: set[Path] = set()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get("ROSE_ASH_FORGE_" + name, "")
    return int(raw) if raw.strip() else default


@dataclass(frozen=True, kw_only=True)
class ForgeConfig:
    max_push_bytes: int = 1 << 30
    max_fetch_body_bytes: int = 256 << 20
    max_concurrent: int = 32
    max_per_repo: int = 8
    timeout: float = 3600.0
    idle_timeout: float = 600.0
    hook_timeout: float = 120.0
    retry_after: int = 5
    # Where git children get a HOME, an empty global config and our hooks; None = a temp dir.
    state_dir: Path | None = field(default=None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, state_dir: Path | None = None) -> ForgeConfig:
        env = os.environ if env is None else env
        return cls(
            max_push_bytes=_int(env, "MAX_PUSH_BYTES", cls.max_push_bytes),
            max_fetch_body_bytes=_int(env, "MAX_FETCH_BODY_BYTES", cls.max_fetch_body_bytes),
            max_concurrent=_int(env, "MAX_CONCURRENT", cls.max_concurrent),
            max_per_repo=_int(env, "MAX_PER_REPO", cls.max_per_repo),
            timeout=float(_int(env, "TIMEOUT", int(cls.timeout))),
            idle_timeout=float(_int(env, "IDLE_TIMEOUT", int(cls.idle_timeout))),
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
