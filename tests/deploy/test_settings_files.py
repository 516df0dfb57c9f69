"""``ROSE_ASH_*_FILE``: a setting read from a file, as Docker and Swarm secrets are mounted."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings


def test_a_secret_is_read_from_the_file_a_file_variable_names(tmp_path: Path) -> None:
    key = tmp_path / "secret_key"
    key.write_text("from-a-swarm-secret-0123456789\n")  # `echo ... | docker secret create` adds the newline
    url = tmp_path / "database_url"
    url.write_text("postgresql+asyncpg://rose:s3cret@postgres:5432/rose_ash")
    settings = Settings.from_env({"ROSE_ASH_SECRET_KEY_FILE": str(key), "ROSE_ASH_DATABASE_URL_FILE": str(url),
                                  "ROSE_ASH_DATA_DIR": str(tmp_path / "data")})
    assert settings.secret_key == "from-a-swarm-secret-0123456789"
    assert settings.database_url == "postgresql+asyncpg://rose:s3cret@postgres:5432/rose_ash"
    assert not (tmp_path / "data" / "secret_key").exists()  # no key was generated beside it


def test_a_file_setting_goes_through_the_same_conversion_as_the_variable(tmp_path: Path) -> None:
    (tmp_path / "limit").write_text("7\n")
    (tmp_path / "purge").write_text("http://varnish:6081/, http://varnish-2:6081/")
    settings = Settings.from_env({"ROSE_ASH_AUTH_RATE_LIMIT_FILE": str(tmp_path / "limit"),
                                  "ROSE_ASH_EDGE_PURGE_URLS_FILE": str(tmp_path / "purge"),
                                  "ROSE_ASH_SECRET_KEY": "k" * 32, "ROSE_ASH_DATA_DIR": str(tmp_path)})
    assert settings.auth_rate_limit == 7
    assert settings.edge_purge_urls == ("http://varnish:6081/", "http://varnish-2:6081/")


def test_both_the_variable_and_its_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("one")
    with pytest.raises(ValueError, match="ROSE_ASH_SECRET_KEY or ROSE_ASH_SECRET_KEY_FILE, not both"):
        Settings.from_env({"ROSE_ASH_SECRET_KEY": "two", "ROSE_ASH_SECRET_KEY_FILE": str(tmp_path / "key"),
                           "ROSE_ASH_DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_a_missing_or_empty_file_is_a_clear_error_not_a_generated_secret(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "secret_key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=f"ROSE_ASH_SECRET_KEY_FILE names {path}"):
        Settings.from_env({"ROSE_ASH_SECRET_KEY_FILE": str(path), "ROSE_ASH_DATA_DIR": str(tmp_path / "data")})
    assert not (tmp_path / "data" / "secret_key").exists()
