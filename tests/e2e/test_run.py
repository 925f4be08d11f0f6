"""``make run``: its superuser (from the environment, else generated once and kept private), and
the whole of it as a developer uses it: up, some data, the README's curl walk-through, Ctrl-C,
up again on the same data."""

import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import astuple
from pathlib import Path
from typing import Any

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


# -- make run end to end: scripts/run.py as a real process, stopped by Ctrl-C, run again -------

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Sturdy-Molar-Crown-42"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


class Run:
    """scripts/run.py in its own session, its output drained by a thread (a full pipe would
    block the services' logging, and with it the services)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run.py")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.started: dict[int, int] = {}  # pid -> start time, of every process run.py started
        self.children: set[int] = set()  # those it started itself (and must wait for)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def transcript(self) -> str:
        return "".join(self.output)

    def tail(self, chars: int = 6000) -> str:
        """The end of the output, for a failure message (Traefik logs every request)."""
        return self.transcript()[-chars:]

    def wait_until_up(self) -> tuple[str, str, str]:
        """The gateway URL and the superuser, as printed once "DentiaPro is up"."""
        deadline = time.monotonic() + START_TIMEOUT
        url = ""
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail(f"run.py not up after {START_TIMEOUT:g}s:\n{self.tail()}")
            if line is None:
                self.process.wait(STOP_TIMEOUT)
                pytest.fail(f"run.py exited ({self.process.returncode}):\n{self.tail()}")
            if match := re.match(r"DentiaPro is up: (\S+?)/? ", line):
                url = match.group(1)
            elif url and (match := re.match(r"Superuser: (\S+) / (\S+)", line)):
                return url, match.group(1), match.group(2)

    def record_children(self) -> None:
        """Every process run.py started, however deep: they lead their own sessions, so only
        the parent chain finds them (and, recorded now, even once they are orphaned)."""
        table = {pid: found for pid in _pids() if (found := _stat(pid))}
        family = {self.process.pid}
        grew = True
        while grew:
            grew = False
            for pid, (_, ppid, start) in table.items():
                if ppid in family and pid not in family:
                    family.add(pid)
                    self.started[pid] = start
                    if ppid == self.process.pid:
                        self.children.add(pid)
                    grew = True

    def alive(self, pids: Iterable[int] | None = None) -> list[int]:
        pids = self.started if pids is None else pids
        return [pid for pid in pids if _running(pid, self.started[pid])]

    def interrupt(self) -> int:
        """Ctrl-C delivered to run.py alone: stopping its children is its own job."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"run.py still running {STOP_TIMEOUT:g}s after SIGINT:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL run.py's group and whatever it started (the failure path of a test)."""
        if self.process.poll() is None:  # once reaped, its pid (and group id) may be reused
            self.record_children()
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        for pid in self.alive():
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """State, parent pid and start time (which tells a reused pid apart), from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces and ")"
    return fields[0], int(fields[1]), int(fields[19])


def _running(pid: int, start: int) -> bool:
    found = _stat(pid)
    # A zombie has exited and holds no port; only its reaping is left (to init, if orphaned).
    return found is not None and found[2] == start and found[0] not in ("Z", "X")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As a server binds: connections left in TIME_WAIT do not count, a listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _poll(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _run_env(ports: launcher.Ports, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENTIAPRO_ADMIN_")}
    env.update(
        {
            "PORT": str(ports.gateway),
            "AUTH_PORT": str(ports.auth),
            "CLINIC_PORT": str(ports.clinic),
            "TENANTS_PORT": str(ports.tenants),
            "EDGE_PORT": str(ports.edge),
            "TRAEFIK_API_PORT": str(ports.traefik_api),
            "DENTIAPRO_DATA_DIR": str(data_dir),
            # Cheap Argon2: the defaults make each login cost seconds on a loaded machine.
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_COST": "1024",
            "ARGON2_PARALLELISM": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def _bearer(client: httpx.Client, username: str, password: str) -> dict[str, str]:
    response = client.post("/api/auth/login/", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access']}"}


def _stop(run_py: Run, ports: launcher.Ports) -> None:
    """Ctrl-C, then nothing run.py started may be left running or listening."""
    run_py.record_children()
    assert len(run_py.children) == 5, run_py.children  # Traefik and the four services
    assert run_py.interrupt() == 0, run_py.tail()
    assert "Stopping ..." in run_py.transcript()
    # run.py waits for its own children before it exits: no grace here. (Left behind, they
    # would still die soon after, by PR_SET_PDEATHSIG or, for Traefik, of SIGPIPE on its
    # next log line; a grace period would hide exactly that.)
    assert not run_py.alive(run_py.children), (
        f"still running once run.py exited: {run_py.alive(run_py.children)}\n{run_py.tail()}"
    )
    assert _poll(lambda: not run_py.alive(), 10), (
        f"left running after Ctrl-C: {run_py.alive()}\n{run_py.tail()}"
    )

    def busy() -> list[int]:
        return [port for port in astuple(ports) if not _port_free(port)]

    assert _poll(lambda: not busy(), 10), f"ports still bound after Ctrl-C: {busy()}"


def _run_readme_walkthrough(url: str, data_dir: Path) -> None:
    """The README's curl walk-through, as written, against this ``make run``: every request
    must succeed (curl fails on an HTTP error), so the README cannot drift from the API."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using the API", 1)[1]
    script = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert "curl -s " in script
    script = (
        script.replace("GW=http://localhost:8000", f"GW={url}")
        .replace("var/admin-password", str(data_dir / "admin-password"))
        .replace("curl -s ", "curl -sS --fail-with-body ")
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"README walk-through failed:\n{done.stdout}\n{done.stderr}"
    assert "204" in done.stdout  # the DELETE's status, printed with -w


def test_ctrl_c_stops_every_process_and_a_second_run_keeps_the_data(tmp_path: Path) -> None:
    """``make run`` as a developer uses it: up, some data, Ctrl-C, up again on the same data dir
    and ports. Ctrl-C must leave no process and no port behind (or the second run cannot bind),
    and the second run must reuse the generated password and find the first run's data, in
    each service's database: a tenant (tenants), its user (auth), a patient (clinic)."""
    ports = launcher.Ports.free()
    data_dir = (tmp_path / "var").resolve()  # as run.py prints it
    env = _run_env(ports, data_dir)
    kept = data_dir / "admin-password"

    first = Run(env)
    try:
        url, username, password = first.wait_until_up()
        assert url == f"http://127.0.0.1:{ports.gateway}"
        assert (username, password) == ("admin", kept.read_text().strip())
        kept_before = kept.read_bytes()
        with httpx.Client(base_url=url, timeout=30) as client:
            schema = "smile"
            tenant = client.post(
                "/api/tenants/",
                json={
                    "name": "Cabinet Dentaire",
                    "schema_name": schema,
                    "domain_url": f"{schema}.localhost",
                },
                headers=_bearer(client, username, password),
            )
            assert tenant.status_code == 201, tenant.text
            invited = client.post(
                "/api/auth/invitations/",
                json={"email": "who@example.com", "role": "admin", "tenant": schema},
                headers=_bearer(client, username, password),
            )
            assert invited.status_code == 201, invited.text
            registered = client.post(
                "/api/auth/register/",
                json={
                    "username": "dr-who",
                    "password": PASSWORD,
                    "email": "who@example.com",
                    "invitation": invited.json()["token"],
                },
            )
            assert registered.status_code == 201, registered.text
            patient = client.post(
                "/api/patients/",
                json={
                    "name": "Ada Lovelace",
                    "birthdate": "1990-12-10",
                    "contact_number": "+44 20 7946 0958",
                },
                headers=_bearer(client, "dr-who", PASSWORD),
            )
            assert patient.status_code == 201, patient.text
        _run_readme_walkthrough(url, data_dir)
        _stop(first, ports)
    finally:
        first.kill()

    second = Run(env)
    try:
        assert second.wait_until_up() == (url, username, password)
        assert kept.read_bytes() == kept_before
        assert f"(kept in {kept})" in second.transcript()
        with httpx.Client(base_url=url, timeout=30) as client:
            root = _bearer(client, username, password)
            found = client.get(f"/api/tenants/{tenant.json()['id']}/", headers=root)
            assert found.status_code == 200, found.text
            assert found.json()["schema_name"] == schema
            patients = client.get("/api/patients/", headers=_bearer(client, "dr-who", PASSWORD))
            assert patients.status_code == 200, patients.text
            listed: list[dict[str, Any]] = patients.json()["results"]
            assert [p["id"] for p in listed] == [patient.json()["id"]]
        _stop(second, ports)
    finally:
        second.kill()
