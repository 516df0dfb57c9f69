"""The ``rose-ash`` command: Litestar's CLI with this app preloaded, plus our own groups.

``rose-ash run``, ``rose-ash database upgrade`` come from Litestar and advanced-alchemy;
``worker`` is added here, and each installed domain adds its own groups (``users``, ``tokens``,
``blog``, ``oauth``, ``federation``, ``forge``) through its plugin (app/kit.py, app/installed.py).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import click
from litestar.plugins import CLIPluginProtocol

if TYPE_CHECKING:
    from litestar import Litestar

    from app.settings import Settings


@click.command(name="worker")
@click.option("--concurrency", default=4, show_default=True)
def worker_command(app: Litestar, concurrency: int) -> None:
    """Run the durable job worker until SIGINT/SIGTERM (finishing jobs in flight)."""
    from app.commands import require_migrated
    from app.jobs import run_worker_forever

    # A top-level command: Litestar's group injects ``app`` (and would inject ``ctx`` too, so a
    # click.pass_context here passed it twice). Building the app imported every installed
    # domain's setup modules (app/kit.py), so every job handler is registered.
    settings: Settings = app.state.settings
    require_migrated(settings)
    _log_to_stderr(settings.log_level)
    asyncio.run(run_worker_forever(settings, concurrency=concurrency))


def _log_to_stderr(level: str) -> None:
    """The worker process's own log: every logger (jobs, federation, domains) as JSON lines.

    The web app logs only ``rose_ash.*`` itself and leaves the rest to uvicorn; a bare worker
    process has no uvicorn, so without this its job logs below WARNING would go nowhere.
    """
    import logging

    from app.logs import JSONFormatter

    def not_printed_yet(record: logging.LogRecord) -> bool:
        # app.jobs has the app's own JSON handler (app/logs.py) and still propagates here:
        # a line a handler on its way up already wrote is not written twice.
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None and logger is not logging.root:
            if any(getattr(h, "_rose_ash", False) for h in logger.handlers):
                return False
            logger = logger.parent if logger.propagate else None
        return True

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(not_printed_yet)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


class RoseAshCLIPlugin(CLIPluginProtocol):
    """The kernel's own command; the domains' groups come with their plugins."""

    def on_cli_init(self, cli: click.Group) -> None:
        from app.mail.cli import mail_group

        cli.add_command(worker_command)
        cli.add_command(mail_group)


# uvicorn believes ``X-Forwarded-For`` from the addresses in FORWARDED_ALLOW_IPS, which it
# defaults to 127.0.0.1: then any client on this machine, or any request a same-host proxy passes
# through without rewriting the header, picks its own address, and per-address rate limits (inbox,
# sign-in) count nothing. So ``rose-ash`` trusts no proxy unless the operator names it
# (README: Configuration; deploy/varnish/README.md).
TRUST_NO_PROXY = ""


# `make run` serves on HOST:PORT and names that origin ROSE_ASH_BASE_URL unless the operator
# set one (Makefile, "run"); with the same defaults here, `rose-ash users create` beside
# `PORT=9000 make run` writes the key ids and links of the server the members will use.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = "8000"


def public_origin(env: Mapping[str, str]) -> str:
    """``ROSE_ASH_BASE_URL``, else ``http://$HOST:$PORT`` exactly as the Makefile builds it."""
    return env.get("ROSE_ASH_BASE_URL") or f"http://{env.get('HOST') or DEFAULT_HOST}:{env.get('PORT') or DEFAULT_PORT}"


# uvicorn's limits for `rose-ash run` (README: "Several workers"), overridable as uvicorn's own
# UVICORN_* variables. Connections count against --limit-concurrency whether or not they have
# sent anything (uvicorn answers 503 past it), so it sits well above what one process should
# hold open (idle keep-alives and slow clients included) and only stops a flood from exhausting
# memory and descriptors. Keep-alive connections idle for 5 s are closed. On SIGTERM a worker
# stops accepting, finishes what is in flight and gives up after 30 s (a long git clone is cut
# then rather than holding a deploy forever).
SERVER_LIMITS: dict[str, int] = {
    "limit_concurrency": 1000,
    "timeout_keep_alive": 5,
    "timeout_graceful_shutdown": 30,
}


def _server_limit(env: Mapping[str, str], name: str) -> int:
    return int(env.get(f"UVICORN_{name.upper()}") or SERVER_LIMITS[name])


def _prepare_environment(env: MutableMapping[str, str]) -> None:
    env.setdefault("LITESTAR_APP", "app.asgi:create_app")
    env.setdefault("FORWARDED_ALLOW_IPS", TRUST_NO_PROXY)
    env["ROSE_ASH_BASE_URL"] = public_origin(env)
    for name in SERVER_LIMITS:  # read by uvicorn's own CLI when it serves several workers
        env.setdefault(f"UVICORN_{name.upper()}", str(_server_limit(env, name)))


def _serve_our_way() -> None:
    """Adjust how Litestar's ``run`` starts uvicorn (its options and behaviour are unchanged).

    One worker: Litestar calls ``uvicorn.run`` in this process; our limits are added. Several
    (``-W N``): Litestar starts ``python -m uvicorn ... --workers N`` as a child with
    ``subprocess.run``, and that child is orphaned when this process gets SIGTERM (the default
    action kills only us) and SIGKILLed 0.25 s after a SIGINT (``subprocess.run`` kills its
    child on any exception), so no worker stops gracefully. We run the same command line in
    place of this process instead (``os.execv``): the pid a supervisor signals is uvicorn's, and
    its SIGTERM/SIGINT (drain and stop), SIGHUP (restart the workers one by one) and
    SIGTTIN/SIGTTOU (one worker more or less) reach it.
    """
    import uvicorn
    from litestar.cli.commands import core

    serve_in_process = uvicorn.run

    def run_with_limits(app: Any, **options: Any) -> None:
        for name in SERVER_LIMITS:
            options.setdefault(name, _server_limit(os.environ, name))
        serve_in_process(app, **options)

    original = core._run_uvicorn_in_subprocess

    def exec_uvicorn(**options: Any) -> None:
        if options.get("reload"):  # development: Litestar's own way
            original(**options)
            return
        env = options.pop("env")
        _prepare_metrics_directory(os.environ)
        arguments = {"host": options["host"], "port": options["port"], "workers": options["workers"],
                     "factory": env.is_app_factory, "app-dir": env.cwd}
        for name, flag in (("fd", "fd"), ("uds", "uds"), ("certfile_path", "ssl-certfile"),
                           ("keyfile_path", "ssl-keyfile")):
            if options.get(name) is not None:
                arguments[flag] = options[name]
        command = [sys.executable, "-m", "uvicorn", env.app_path, *core._convert_uvicorn_args(arguments)]
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, command)  # noqa: S606  (our interpreter, uvicorn, Litestar's arguments)

    uvicorn.run = run_with_limits
    core._run_uvicorn_in_subprocess = exec_uvicorn  # type: ignore[assignment]


def _prepare_metrics_directory(env: MutableMapping[str, str]) -> None:
    """An empty ``DATA_DIR/prometheus`` for the workers' metric files (app/metrics.py).

    Emptied here, before any worker starts, so counters begin at zero with the server, as they do
    with one process; the workers only add to it (a restarted worker's counts are kept).
    """
    import shutil

    from app.metrics import MULTIPROC_ENV
    from app.settings import Settings

    directory = Settings.from_env().data_dir / "prometheus"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    env[MULTIPROC_ENV] = str(directory)


def main() -> None:
    _prepare_environment(os.environ)
    _serve_our_way()
    from litestar.cli.main import litestar_group

    litestar_group(prog_name="rose-ash")


