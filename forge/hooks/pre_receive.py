"""The pre-receive hook: push policy inside git's receive path (design/forge.md §3.2; githooks(5)).

git runs it after the pack has been received into the quarantine directory and passed the
connectivity check, and before the ref transaction. stdin holds ``<old> <new> <ref>`` lines;
push options arrive as ``GIT_PUSH_OPTION_COUNT`` / ``GIT_PUSH_OPTION_<n>``; the app passes
``ROSE_ASH_REPO_ID``, ``ROSE_ASH_PUSHER_ID``, ``ROSE_ASH_POLICY`` (JSON, see
:class:`forge.policy.PushPolicy`) and ``ROSE_ASH_HOOK_REPORT`` (a file for the push options of an
accepted push). Whatever we print reaches the pusher as ``remote:`` lines; a non-zero exit
declines the whole push (``! [remote rejected] ... (pre-receive hook declined)``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from forge.policy import Command, PushPolicy, decide, parse_commands


def is_ancestor(old: str, new: str) -> bool:
    """``git merge-base --is-ancestor``: exit 0 yes, 1 no; anything else (missing object) counts as no."""
    try:
        result = subprocess.run(["git", "merge-base", "--is-ancestor", old, new],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def push_options(env: dict[str, str] | os._Environ[str]) -> list[str]:
    try:
        count = int(env.get("GIT_PUSH_OPTION_COUNT", "0"))
    except ValueError:
        return []
    return [env.get(f"GIT_PUSH_OPTION_{i}", "") for i in range(count)]


def run(stdin_lines: list[str], env: dict[str, str] | os._Environ[str]) -> int:
    commands: list[Command] = parse_commands(stdin_lines)
    policy = PushPolicy.from_json(env.get("ROSE_ASH_POLICY", ""))
    decision = decide(commands, policy, is_ancestor)
    if not decision.accepted:
        for rejection in decision.rejections:
            sys.stderr.write(f"error: {rejection.ref}: {rejection.reason}\n")
        sys.stderr.write("error: push refused by repository policy; no ref was changed\n")
        sys.stderr.flush()
        return 1
    report = env.get("ROSE_ASH_HOOK_REPORT")
    if report:
        with open(report, "w", encoding="utf-8") as fh:
            json.dump({"push_options": push_options(env),
                       "commands": [[c.old, c.new, c.ref] for c in commands]}, fh)
    return 0


def main() -> None:
    # Bound the hook: SIGALRM's default action ends it, and git then declines the push.
    signal.alarm(int(os.environ.get("ROSE_ASH_HOOK_TIMEOUT", "120") or 120))
    sys.exit(run(sys.stdin.read().splitlines(), os.environ))


if __name__ == "__main__":
    main()
