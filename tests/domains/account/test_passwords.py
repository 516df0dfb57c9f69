"""Password hashing: production keeps argon2-cffi's RFC 9106 parameters; the suite's cheap ones
(ROSE_ASH_PASSWORD_HASH_COST=test, set in tests/conftest.py) only change how new hashes are made."""

from __future__ import annotations

import subprocess
import sys

import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY

from domains.account import passwords
from domains.account.passwords import make_hasher
from tests.helpers.server import REPO_ROOT

PASSWORD = "correct horse battery staple"


def test_production_hashes_use_rfc_9106_low_memory_parameters() -> None:
    params = extract_parameters(make_hasher("production").hash(PASSWORD))
    assert params.type.name == "ID"
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 65536, 4)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        RFC_9106_LOW_MEMORY.time_cost, RFC_9106_LOW_MEMORY.memory_cost, RFC_9106_LOW_MEMORY.parallelism)
    assert make_hasher("").time_cost == PasswordHasher().time_cost  # unset means production


def test_the_default_without_the_variable_is_production() -> None:
    """A process started without ROSE_ASH_PASSWORD_HASH_COST (as in production) hashes at full cost."""
    code = ("import os; os.environ.pop('ROSE_ASH_PASSWORD_HASH_COST', None)\n"
            "from argon2 import extract_parameters\n"
            "from domains.account.passwords import hash_password\n"
            "p = extract_parameters(hash_password('x'))\n"
            "print(p.time_cost, p.memory_cost, p.parallelism)")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split() == ["3", "65536", "4"]


def test_the_suite_hashes_cheaply() -> None:
    params = extract_parameters(passwords.hash_password(PASSWORD))
    assert (params.time_cost, params.memory_cost, params.parallelism) == (1, 8 * 1024, 1)


@pytest.mark.parametrize("made_with", ["production", "test"])
def test_hashes_of_either_cost_verify(made_with: str) -> None:
    stored = make_hasher(made_with).hash(PASSWORD)
    assert passwords.verify_password(stored, PASSWORD)
    assert not passwords.verify_password(stored, PASSWORD + "!")
    assert make_hasher("production").verify(stored, PASSWORD)


def test_an_unknown_cost_is_refused() -> None:
    with pytest.raises(ValueError, match="ROSE_ASH_PASSWORD_HASH_COST must be 'production' or 'test'"):
        make_hasher("cheap")
