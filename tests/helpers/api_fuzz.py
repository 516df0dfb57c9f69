"""Schemathesis against the app's OpenAPI schema (``/api/schema/openapi.json``), ``/api/`` only.

Used by tests/app/test_api_fuzz.py (a bounded run in CI) and scripts/fuzz_api.py (a long run).
Each operation is driven by hypothesis with schemathesis' strategies, in both generation modes
(positive: what the schema allows; negative: what it forbids), and each case is sent:

- as the owner (a real token with ``repo:write`` and ``api``), a read-only token, or nobody, so
  writes get exercised and refused;
- against real objects half of the time: ``{owner}``/``{repo}``/``{collaborator}`` are swapped
  for a repository that exists and a member who exists (recreated if a case deleted it), which
  is the state a random path never reaches;
- with remote URLs (``clone_addr``, ``remote_address``) kept only when they name no host or a
  literal IP, so the mirror client never resolves a random host name (no traffic off 127.0.0.1).

A run fails on any 5xx, and on a 4xx from ``/api/`` that is not JSON (problem+json or the
Gitea-shaped JSON error) — the error contract. Response bodies are not checked against the
schema: most handlers declare ``Any``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.generation.case import Case

REAL_OWNER = "alice"
REAL_REPO = "fuzzed"
REAL_MEMBER = "bob"
SAFE_REMOTES = ["https://127.0.0.1:1/x.git", "http://127.0.0.1:1/x.git", "https://[::1]:1/x.git", "ftp://x/",
                "file:///etc/passwd", "", "not a url"]
REMOTE_FIELDS = ("clone_addr", "remote_address")
_SERIAL = itertools.count(1)


@dataclass
class Finding:
    method: str
    path: str
    status: int
    detail: str
    curl: str


@dataclass
class FuzzReport:
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return f"{self.cases} cases in {self.seconds:.1f}s ({codes}); {len(self.findings)} findings"


def _has_host_name(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return True
    return False


def _no_dns(body: Any, pick: int) -> Any:
    if isinstance(body, dict):
        for name in REMOTE_FIELDS:
            if _has_host_name(body.get(name)):
                body[name] = SAFE_REMOTES[pick % len(SAFE_REMOTES)]
    return body


def _valid_name_half_the_time(body: Any) -> Any:
    """A random string is almost never a valid repository name, so sequences would rarely start
    from a created repository; half of the names (by their hash) are turned into valid ones."""
    if isinstance(body, dict) and isinstance(body.get("name"), str):
        digest = hashlib.sha256(body["name"].encode("utf-8", "surrogatepass")).hexdigest()
        if int(digest[0], 16) % 2 == 0:  # unique, so a replayed case gets the same 201 again
            body["name"] = f"r{digest[:8]}-{next(_SERIAL)}"
    return body


def ensure_real_repo(base_url: str, token: str) -> None:
    """The repository the "real objects" cases point at exists (a DELETE case may have removed it)."""
    headers = {"Authorization": f"token {token}"}
    if httpx.get(f"{base_url}/api/v1/repos/{REAL_OWNER}/{REAL_REPO}", headers=headers, timeout=30).status_code == 404:
        created = httpx.post(f"{base_url}/api/v1/user/repos", json={"name": REAL_REPO}, headers=headers, timeout=30)
        assert created.status_code in (201, 409), created.text


def _is_json_error(response: Any) -> bool:
    content_type = response.headers.get("content-type", "")
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    return content_type.startswith(("application/problem+json", "application/json"))


def _record(report: FuzzReport, case: Case, response: Any, log: Callable[[str], None]) -> None:
    report.cases += 1
    report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
    problem = ""
    if response.status_code >= 500:
        problem = "server error"
    elif response.status_code >= 400 and not _is_json_error(response):
        problem = "error answer is not JSON"
    if problem:
        finding = Finding(case.method, case.formatted_path, response.status_code, f"{problem}: {response.text[:300]}",
                          case.as_curl_command())
        report.findings.append(finding)
        log(f"FINDING {finding}")


def fuzz_api(base_url: str, tokens: dict[str, str], *, max_examples: int,
             modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
             log: Callable[[str], None] = lambda _line: None) -> FuzzReport:
    """Run every /api/ operation ``max_examples`` times per mode; ``tokens`` has ``owner`` and
    ``reader`` (a token of ``REAL_OWNER`` with repo:write+api, and one with repo:read)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema/openapi.json").include(path_regex=r"^/api/")
    report = FuzzReport()
    started = time.monotonic()
    callers = [{"Authorization": f"token {tokens['owner']}"}, {"Authorization": f"token {tokens['reader']}"}, {}]
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy, caller=st.integers(0, 2), real=st.booleans(), pick=st.integers(0, 99))
            def run(case: Case, caller: int, real: bool, pick: int) -> None:
                if real:
                    ensure_real_repo(base_url, tokens["owner"])
                    for name, value in (("owner", REAL_OWNER), ("repo", REAL_REPO), ("collaborator", REAL_MEMBER)):
                        if case.path_parameters is not None and name in case.path_parameters:
                            case.path_parameters[name] = value
                case.body = _no_dns(case.body, pick)
                _record(report, case, case.call(base_url=base_url, headers=callers[caller], timeout=60), log)

            try:
                run()
            except Unsatisfiable:  # nothing to get wrong (an operation without parameters or body)
                log(f"{operation.label} [{mode.value}]: no such cases")
                continue
            report.seconds = time.monotonic() - started
            log(f"{operation.label} [{mode.value}] done; {report.summary()}")
    report.seconds = time.monotonic() - started
    return report


def fuzz_api_stateful(base_url: str, token: str, *, max_examples: int, steps: int = 8,
                      log: Callable[[str], None] = lambda _line: None) -> FuzzReport:
    """Schemathesis' state machine over the links it infers from the schema (a created
    repository's ``owner.login``/``name`` feed GET, PATCH, DELETE, collaborators, mirrors), as the
    owner: sequences such as create, edit, add a collaborator, delete, then use the deleted one."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema/openapi.json").include(path_regex=r"^/api/")
    report = FuzzReport()
    started = time.monotonic()
    headers = {"Authorization": f"token {token}"}

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Case) -> None:
            case.body = _no_dns(case.body, 0)
            if case.method == "POST" and case.path == "/api/v1/user/repos":
                case.body = _valid_name_half_the_time(case.body)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": base_url, "headers": headers, "timeout": 60}

        def validate_response(self, response: Any, case: Case, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            _record(report, case, response, log)

    try:
        # derandomize: the same sequences every run, so whether one starts from a created repository
        # does not depend on the draw (with about 50 operations, a draw could miss the create).
        Workflow.run(settings=settings(max_examples=max_examples, stateful_step_count=steps, deadline=None,
                                       derandomize=True,
                                       database=None, suppress_health_check=list(HealthCheck)))
    except FlakyStrategyDefinition:
        # A real server keeps state between hypothesis' examples, so a replayed sequence may find
        # a rule enabled that was not before; the cases already sent were all recorded.
        log("stateful: hypothesis stopped early (server state differs between replays)")
    report.seconds = time.monotonic() - started
    log(f"stateful: {report.summary()}")
    return report
