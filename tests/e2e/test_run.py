"""``make run``'s superuser: from the environment, else generated once and kept private."""

import stat
from pathlib import Path

import pytest
import run  # scripts/run.py (conftest puts scripts/ on the path)


@pytest.fixture(autouse=True)
def _no_admin_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DENTIAPRO_ADMIN_USERNAME", raising=False)
    monkeypatch.delenv("DENTIAPRO_ADMIN_PASSWORD", raising=False)


def test_password_is_generated_once_readable_by_the_owner_only(tmp_path: Path) -> None:
    username, password, kept = run.admin_credentials(tmp_path / "var")
    assert username == "admin"
    assert len(password) >= 16
    assert kept == tmp_path / "var" / "admin-password"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # A second run reuses it.
    assert run.admin_credentials(tmp_path / "var") == (username, password, kept)


def test_credentials_from_the_environment_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DENTIAPRO_ADMIN_USERNAME", "operator")
    monkeypatch.setenv("DENTIAPRO_ADMIN_PASSWORD", "from-the-vault-1")
    assert run.admin_credentials(tmp_path) == ("operator", "from-the-vault-1", None)
    assert not (tmp_path / "admin-password").exists()
