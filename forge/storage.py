"""Where bare repositories live on disk, and how a new one is initialised (design/forge.md §3.4, §4).

Every lookup goes through :meth:`RepoStore.locate`, so a later topology (storage nodes, an object
store) can replace it without touching callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from forge.config import ForgeConfig

ZERO_OID = "0" * 40

# Server-side git configuration written into every new repository (design/forge.md §4). Values
# that depend on a repository's policy (receive.denyNonFastForwards) are also passed per push.
def server_config(config: ForgeConfig) -> dict[str, str]:
    return {
        "uploadpack.allowFilter": "true",
        "uploadpack.allowAnySHA1InWant": "true",
        # Not uploadpack.allowRefInWant: with it, git 2.39 clients fail v2 shallow clones
        # ("expected 'packfile', received 'shallow-info'"), over file:// as well as HTTP.
        "receive.advertisePushOptions": "true",
        "receive.advertiseAtomic": "true",
        "receive.denyNonFastForwards": "true",
        "receive.denyDeletes": "false",
        "receive.fsckObjects": "true",
        "transfer.fsckObjects": "true",
        "receive.maxInputSize": str(config.max_push_bytes),
        "receive.autogc": "false",
        "transfer.hideRefs": "refs/mirror-incoming",
        "repack.writeBitmaps": "true",
        "pack.writeBitmapHashCache": "true",
        "core.logAllRefUpdates": "false",
        "http.receivepack": "true",  # only read by git http-backend (the benchmark baseline)
    }


class GitError(RuntimeError):
    """A git command failed; ``stderr`` holds what it said."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        self.args_ = args
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"git {' '.join(args[:2])} failed ({returncode}): {stderr.strip()[:500]}")


class RepoStore:
    """Bare repositories under ``<root>/<xx>/<repo_id>.git``.

    ``xx`` is the last two hex digits of the id: ids are UUIDv7, whose leading digits are a
    timestamp, so the first two would put years of repositories into one directory.
    """

    def __init__(self, root: Path, config: ForgeConfig) -> None:
        self.root = root
        self.config = config

    def locate(self, repo_id: uuid.UUID | str) -> Path:
        rid = repo_id if isinstance(repo_id, uuid.UUID) else uuid.UUID(str(repo_id))
        return self.root / rid.hex[-2:] / f"{rid}.git"

    def git_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The controlled environment every git child gets (design/forge.md §4, "Child env")."""
        return self.config.git_env(extra)

    async def git(self, repo_id: uuid.UUID | str, *args: str, input: bytes | None = None,
                  check: bool = True, deadline: float = 120.0) -> tuple[int, bytes, bytes]:
        """Run ``git <args>`` in the repository; returns (returncode, stdout, stderr)."""
        return await run_git(["--git-dir", str(self.locate(repo_id)), *args], env=self.git_env(),
                             input=input, check=check, deadline=deadline)

    async def init(self, repo_id: uuid.UUID | str, default_branch: str) -> Path:
        """Create an empty bare repository with the server configuration; idempotent."""
        path = self.locate(repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".init-" + uuid.uuid4().hex[:8])
        await run_git(["init", "--quiet", "--bare", "--initial-branch", default_branch, str(tmp)],
                      env=self.git_env())
        cfg = server_config(self.config)
        for key, value in cfg.items():
            await run_git(["--git-dir", str(tmp), "config", key, value], env=self.git_env())
        # Hooks are passed per invocation with core.hooksPath; the samples are only noise.
        shutil.rmtree(tmp / "hooks", ignore_errors=True)
        (tmp / "description").unlink(missing_ok=True)
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not path.exists():
                raise
        return path

    async def set_head(self, repo_id: uuid.UUID | str, branch: str) -> None:
        await self.git(repo_id, "symbolic-ref", "HEAD", f"refs/heads/{branch}")

    def delete(self, repo_id: uuid.UUID | str) -> None:
        path = self.locate(repo_id)
        if path.exists():
            trash = path.with_name(path.name + ".deleted-" + uuid.uuid4().hex[:8])
            os.rename(path, trash)
            shutil.rmtree(trash, ignore_errors=True)


async def run_git(args: list[str], *, env: Mapping[str, str], input: bytes | None = None,
                  check: bool = True, deadline: float = 120.0, cwd: Path | None = None) -> tuple[int, bytes, bytes]:
    """Run one short git command with a deadline; kills it (and its children) on timeout."""
    from forge.process import run

    async with asyncio.timeout(deadline):
        code, out, err = await run(["git", *args], env=env, input=input, cwd=cwd)
    if check and code != 0:
        raise GitError(args, code, err.decode(errors="replace"))
    return code, out, err


def kill_group(pid: int) -> None:
    """SIGKILL a child's whole process group (git forks pack-objects, index-pack, hooks)."""
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
