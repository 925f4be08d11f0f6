"""``make run``'s superuser: from the environment, else generated once and kept private."""

import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import run  # scripts/run.py (conftest puts scripts/ on the path)
import system as launcher
import yaml


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


def test_a_traefik_that_has_not_read_its_routes_yet_routes_nothing(tmp_path: Path) -> None:
    """A Traefik just (re)started answers its API before the file provider has loaded the
    route table: the launcher must not take "no service listed" for "no service down"."""
    ports = launcher.Ports.free()
    config_path = launcher.render_traefik_config(ports, tmp_path / "traefik.yml")
    config = yaml.safe_load(config_path.read_text())
    config["providers"]["file"]["directory"] = str(tmp_path / "no-routes-yet")
    (tmp_path / "no-routes-yet").mkdir()
    config_path.write_text(yaml.safe_dump(config))
    system = launcher.System(ports=ports, data_dir=tmp_path)
    traefik = subprocess.Popen(
        [launcher.traefik_binary(), f"--configFile={config_path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{system.traefik_api_url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Traefik did not start"
            time.sleep(0.1)
        assert system.servers_down() == list(launcher.SERVICES)
        with pytest.raises(launcher.StartupError, match="still routes around"):
            system.wait_until_routed(timeout=0.5)
    finally:
        traefik.terminate()
        traefik.wait(10)
