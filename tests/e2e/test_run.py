"""``make run``: its superuser (from the environment, else generated once, shown once and kept
private), the whole of it as a developer uses it (up, some data, the README's curl walk-through
and the onboarding lines it prints, Ctrl-C, up again on the same data), and its supervision
(each process killed in turn comes back while the others serve; SIGTERM stops everything)."""

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
from dataclasses import astuple, dataclass, field
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
    first = run.admin_credentials(tmp_path / "var")
    assert first.username == "admin"
    assert len(first.password) >= 16
    assert first.source is run.PasswordSource.GENERATED
    kept = tmp_path / "var" / "admin-password"
    assert first.file == kept
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # A second run reuses it, and knows it did not make it.
    second = run.admin_credentials(tmp_path / "var")
    assert second == run.Superuser("admin", first.password, run.PasswordSource.KEPT, kept)


def test_credentials_from_the_environment_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DENTIAPRO_ADMIN_USERNAME", "operator")
    monkeypatch.setenv("DENTIAPRO_ADMIN_PASSWORD", "from-the-vault-1")
    assert run.admin_credentials(tmp_path) == run.Superuser(
        "operator", "from-the-vault-1", run.PasswordSource.OPERATOR, None
    )
    assert not (tmp_path / "admin-password").exists()


def test_only_a_password_generated_by_this_run_is_printed(tmp_path: Path) -> None:
    kept = tmp_path / "admin-password"
    url = "http://127.0.0.1:8000"
    generated = run.startup_message(
        url, run.Superuser("admin", "s3cret-made-now", run.PasswordSource.GENERATED, kept)
    )
    assert "Superuser: admin / s3cret-made-now  (generated now and kept in" in generated
    assert generated.count("s3cret-made-now") == 1
    assert f"$(cat {kept})" in generated  # the login line reads the file, not a copy
    earlier = run.startup_message(
        url, run.Superuser("admin", "s3cret-made-before", run.PasswordSource.KEPT, kept)
    )
    assert "s3cret-made-before" not in earlier
    assert f"Superuser: admin  (password in {kept})" in earlier
    operator = run.startup_message(
        url, run.Superuser("root", "from-the-vault-1", run.PasswordSource.OPERATOR, None)
    )
    assert "from-the-vault-1" not in operator
    assert "Superuser: root  (password: yours, from DENTIAPRO_ADMIN_PASSWORD)" in operator
    assert "$DENTIAPRO_ADMIN_PASSWORD" in operator


def test_startup_message_onboards_with_a_tenant_then_an_invitation() -> None:
    """DESIGN section 3: the superuser creates the tenant, then invites its first admin, who
    registers with the invitation (the bodies of DESIGN section 5)."""
    message = run.startup_message(
        "http://127.0.0.1:8000", run.Superuser("admin", "x", run.PasswordSource.OPERATOR, None)
    )
    steps = [
        "$GW/api/auth/login/",
        "$GW/api/tenants/",
        "$GW/api/auth/invitations/",
        "$GW/api/auth/register/",
    ]
    positions = [message.index(step) for step in steps]
    assert positions == sorted(positions)
    assert '{"email": "owner@nantes.example", "role": "admin", "tenant": "nantes"}' in message
    assert '\\"invitation\\": \\"$INVITATION\\"' in message


def test_restart_delay_doubles_to_thirty_seconds_and_resets_once_stable() -> None:
    delays: list[float] = []
    previous = None
    for _ in range(8):  # crashing again right after each start
        previous = launcher.restart_delay(previous, uptime=2.0)
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    # Up for a while (30 s) since its last start: the next crash starts over at 1 s.
    assert launcher.restart_delay(30.0, uptime=launcher.STABLE_AFTER) == 1
    assert launcher.restart_delay(30.0, uptime=launcher.STABLE_AFTER - 1) == 30


def test_exits_are_described_by_status_or_signal() -> None:
    assert launcher.describe_exit(1) == "exited with status 1"
    assert launcher.describe_exit(0) == "exited with status 0"
    assert launcher.describe_exit(-9) == "was killed by SIGKILL"
    assert launcher.describe_exit(-15) == "was killed by SIGTERM"


def test_every_system_shares_an_internal_token_unless_the_operator_sets_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tenants' /internal/ paths take DENTIAPRO_INTERNAL_TOKEN: make run's processes that hold
    it share one made up for the run, or the operator's."""
    monkeypatch.delenv("DENTIAPRO_INTERNAL_TOKEN", raising=False)
    ports = launcher.Ports.free()
    first = launcher.System(ports=ports, data_dir=tmp_path).env["DENTIAPRO_INTERNAL_TOKEN"]
    second = launcher.System(ports=ports, data_dir=tmp_path).env["DENTIAPRO_INTERNAL_TOKEN"]
    assert len(first) >= 32
    assert first != second
    monkeypatch.setenv("DENTIAPRO_INTERNAL_TOKEN", "operator-chosen-token")
    system = launcher.System(ports=ports, data_dir=tmp_path)
    assert system.env["DENTIAPRO_INTERNAL_TOKEN"] == "operator-chosen-token"


def test_the_data_directory_and_the_files_the_processes_write_are_the_owners_alone(
    running: Any,
) -> None:
    """The SQLite databases hold patient records and password hashes: no other local user may
    read them (they were created 0644)."""
    data_dir: Path = running.processes.data_dir
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    written = [path for path in data_dir.rglob("*") if path.is_file()]
    if running.backend == "sqlite":
        assert any(path.suffix == ".sqlite3" for path in written), written
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_only_the_processes_that_serve_or_call_internal_paths_hold_the_internal_token(
    running: Any,
) -> None:
    """As in compose: tenants (which requires it), auth and Traefik's token check (which call
    /internal/); the edge and clinic never see it (least privilege: a leak there is no key)."""
    for name, process in running.processes:
        environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        holds = any(entry.startswith(b"DENTIAPRO_INTERNAL_TOKEN=") for entry in environ)
        assert holds == (name in {"auth", "tenants", "traefik"}), name


def test_a_system_does_not_start_on_a_port_already_taken(tmp_path: Path) -> None:
    ports = launcher.Ports.free()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.clinic))
        taken.listen()
        system = launcher.System(ports=ports, data_dir=tmp_path)
        with pytest.raises(launcher.StartupError, match=f"CLINIC_PORT {ports.clinic}"):
            system.start(timeout=5)
    assert not system.processes  # nothing was started


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
        cwd=launcher.TRAEFIK_WORKDIR,  # where its token check plugin is
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

    def wait_until_up(self) -> tuple[str, str, str | None]:
        """The gateway URL and the superuser as printed once "DentiaPro is up": its name, and
        its password when the run shows it (only a run that generated it does)."""
        url = self.wait_for(r"DentiaPro is up: (\S+?)/? ", START_TIMEOUT).group(1)
        match = self.wait_for(r"Superuser: (\S+)(?: / (\S+))?", 10)
        return url, match.group(1), match.group(2)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The next output line that matches ``pattern`` (from its start)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail(f"no line like {pattern!r} within {timeout:g}s:\n{self.tail()}")
            if line is None:
                self.process.wait(STOP_TIMEOUT)
                pytest.fail(f"run.py exited ({self.process.returncode}):\n{self.tail()}")
            if match := re.match(pattern, line):
                return match

    def child(self, name: str) -> int:
        """The pid of the live process ``name`` (auth, ..., traefik) that run.py started."""
        self.record_children()
        for pid in self.alive(self.children):
            with suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
                if (Path(argv[0]).name == "traefik") == (name == "traefik") and (
                    name == "traefik" or f"{name}.main:create_app" in argv
                ):
                    return pid
        pytest.fail(f"no live {name} among run.py's children\n{self.tail()}")

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

    def interrupt(self, sig: int = signal.SIGINT) -> int:
        """Ctrl-C (or ``sig``) delivered to run.py alone: stopping its children is its job."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"run.py still running {STOP_TIMEOUT:g}s after {sig!r}:\n{self.tail()}")

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


_port_free = launcher.port_free


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
            "TRAEFIK_INTERNAL_PORT": str(ports.traefik_internal),
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


def _stop(run_py: Run, ports: launcher.Ports, sig: int = signal.SIGINT) -> None:
    """Ctrl-C (or SIGTERM), then nothing run.py started may be left running or listening."""
    run_py.record_children()
    live = run_py.alive(run_py.children)
    assert len(live) == 5, live  # Traefik and the four services
    if sig == signal.SIGINT:
        assert run_py.interrupt() == 0, run_py.tail()
        assert "Stopping ..." in run_py.transcript()
    else:
        assert run_py.interrupt(sig) == 128 + sig, run_py.tail()
        assert "Stopping (SIGTERM) ..." in run_py.transcript()
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


def _run_printed_onboarding(transcript: str, url: str) -> None:
    """The onboarding lines ``make run`` printed, run as printed: the superuser logs in and
    creates a tenant; then the invitation and the registration with its token."""
    block = transcript.split("Onboarding a practice:", 1)[1].split("Ctrl-C stops everything.")[0]
    lines = block.splitlines()[2:]  # past the sentence, to the commands
    script = "\n".join(lines).replace("curl -s ", "curl -sS --fail-with-body ")
    tenant_part, invitation_part = script.split("  INVITATION=", 1)

    def bash(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code], capture_output=True, text=True, timeout=60
        )

    done = bash(tenant_part)
    assert done.returncode == 0, f"printed onboarding failed:\n{done.stdout}\n{done.stderr}"
    assert '"schema_name":"nantes"' in done.stdout.replace(" ", "")
    done = bash(tenant_part.split("  curl", 1)[0] + "  INVITATION=" + invitation_part)
    if done.returncode != 0 and "404" in done.stderr + done.stdout:
        # POST /api/auth/invitations/ is being built on another branch: until it lands the
        # route is a 404. Once it serves, only a run of every printed line passes here.
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/api/auth/invitations/", json={}).status_code == 404
        return
    assert done.returncode == 0, f"printed invitation failed:\n{done.stdout}\n{done.stderr}"
    assert '"role":"admin"' in done.stdout.replace(" ", "")


def test_ctrl_c_stops_every_process_and_a_second_run_keeps_the_data(tmp_path: Path) -> None:
    """``make run`` as a developer uses it: up, some data, Ctrl-C, up again on the same data dir
    and ports. Ctrl-C must leave no process and no port behind (or the second run cannot bind),
    and the second run must reuse the generated password (shown by the first run only) and find
    the first run's data, in each service's database: a tenant (tenants), its user (auth), a
    patient (clinic)."""
    ports = launcher.Ports.free()
    data_dir = (tmp_path / "var").resolve()  # as run.py prints it
    env = _run_env(ports, data_dir)
    kept = data_dir / "admin-password"

    first = Run(env)
    try:
        url, username, password = first.wait_until_up()
        assert url == f"http://127.0.0.1:{ports.gateway}"
        assert (username, password) == ("admin", kept.read_text().strip())
        assert password is not None
        assert first.transcript().count(password) == 1
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
        _run_printed_onboarding(first.transcript(), url)
        _stop(first, ports)
    finally:
        first.kill()

    second = Run(env)
    try:
        assert second.wait_until_up() == (url, username, None)
        assert kept.read_bytes() == kept_before
        assert f"Superuser: admin  (password in {kept})" in second.transcript()
        assert password not in second.transcript()
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


# -- supervision: each process killed in turn, the others serve, the killed one comes back ------

ALL_SERVICES = ("auth", "clinic", "tenants")


def _health(client: httpx.Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/health/")
    try:
        body = response.json()
    except ValueError:
        body = {}  # Traefik's own plain-text 502/503 while the edge is down
    return response.status_code, body


def _names_failing(client: httpx.Client, name: str) -> bool:
    status, body = _health(client)
    services = body.get("services", {})
    return status == 503 and services.get(name, {}).get("status") == "fail"


@dataclass
class Operator:
    """The superuser the operator configured, and its last access token."""

    username: str
    password: str
    headers: dict[str, str] = field(default_factory=dict)

    def login(self, client: httpx.Client) -> None:
        self.headers = _bearer(client, self.username, self.password)


def _check_the_rest_serve(
    killed: str, client: httpx.Client, direct: launcher.System, operator: Operator
) -> None:
    """While ``killed`` is down: what DESIGN section 7 says keeps working does, and the
    gateway's /health/ says what it can."""
    if killed == "traefik":
        with pytest.raises(httpx.ConnectError):  # a new connection: nothing listens
            httpx.get(f"{direct.gateway_url}/health/", timeout=5)
        # Nothing in front, but every service still serves on its own port.
        for name in ALL_SERVICES:
            assert httpx.get(direct.url(name) + "/health/", timeout=10).status_code == 200
        return
    if killed == "edge":
        # The aggregate is the edge's: without it the gateway can only fail (Traefik's own
        # 502/503), never pass. Public routes do not need the edge: login still works.
        assert _poll(lambda: _health(client)[0] in {502, 503}, 10), _health(client)
        operator.login(client)
        return
    assert _poll(lambda: _names_failing(client, killed), 10), _health(client)
    _, body = _health(client)
    for name in ALL_SERVICES:
        if name != killed:
            assert body["services"][name]["status"] == "pass", body
    if killed == "auth":
        # Tokens already issued keep working at clinic and tenants (cached JWKS).
        assert client.get("/api/patients/", headers=operator.headers).status_code == 200
        assert client.get("/api/tenants/", headers=operator.headers).status_code == 200
        login = client.post("/api/auth/login/", json={"username": "x", "password": "y"})
        assert login.status_code in {502, 503}, login.text
        assert "detail" in login.json()
    elif killed == "clinic":
        operator.login(client)  # auth still logs in
        assert client.get("/api/tenants/", headers=operator.headers).status_code == 200
    elif killed == "tenants":
        # The edge keeps the tenant status it fetched: clinic still serves the token.
        assert client.get("/api/patients/", headers=operator.headers).status_code == 200


def _serves_again(name: str, client: httpx.Client, operator: Operator) -> bool:
    """Through the gateway, the process's own routes answer again."""
    try:
        if name == "auth":
            operator.login(client)
            return True
        root = operator.headers
        if name == "clinic":
            return client.get("/api/patients/", headers=root).status_code == 200
        if name == "tenants":
            return client.get("/api/tenants/", headers=root).status_code == 200
        # edge (the aggregate /health/ and the error pages) and traefik: the whole gateway again.
        return (
            client.get("/health/").status_code == 200
            and client.get("/api/patients/", headers=root).status_code == 200
        )
    except (httpx.HTTPError, AssertionError):
        return False


def _crash_and_return(
    name: str, run_py: Run, client: httpx.Client, direct: launcher.System, operator: Operator
) -> None:
    """SIGKILL ``name``; the rest serve; run.py says so, restarts it, and it serves again."""
    # Freeze the launcher while the process is down, so the checks below see it down (its
    # children run on; the restart would otherwise come within about a second).
    run_py.process.send_signal(signal.SIGSTOP)
    squatter = socket.socket()
    try:
        pid = run_py.child(name)
        os.kill(pid, signal.SIGKILL)
        assert _poll(lambda: not run_py.alive([pid]), 10), name
        _check_the_rest_serve(name, client, direct, operator)
        if name == "traefik":
            # Another program holds Traefik's API port: no restart while it does.
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", direct.ports.traefik_api))
            squatter.listen()
    finally:
        run_py.process.send_signal(signal.SIGCONT)
    try:
        run_py.wait_for(
            rf"run     \| {name} was killed by SIGKILL after [\d.]+ s; restarting it in 1 s", 10
        )
        if name == "traefik":
            run_py.wait_for(
                r"run     \| traefik cannot start: port in use "
                rf"\(TRAEFIK_API_PORT {direct.ports.traefik_api}\); restarting it in 2 s",
                10,
            )
    finally:
        squatter.close()
    run_py.wait_for(rf"run     \| {name} restarted \(pid \d+\)", 30)
    run_py.wait_for(rf"run     \| {name} is back: serving again", 60)
    assert _poll(lambda: _serves_again(name, client, operator), 30), (
        f"{name} does not serve again through the gateway\n{run_py.tail()}"
    )


def test_each_killed_process_comes_back_while_the_others_serve(tmp_path: Path) -> None:
    """``make run`` supervises (DESIGN section 7): each of its five processes is killed in turn
    (SIGKILL, a crash); the others keep serving, /health/ names the one down, the console says
    what happened, and the process is restarted and serves again. A restart waits while its
    port is taken (by another program), with a longer back-off each time. An operator-supplied
    superuser password is never printed. SIGTERM to the launcher stops everything."""
    ports = launcher.Ports.free()
    env = _run_env(ports, (tmp_path / "var").resolve())
    operator = Operator("operator", "Vaulted-Superuser-Password-7")
    env["DENTIAPRO_ADMIN_USERNAME"] = operator.username
    env["DENTIAPRO_ADMIN_PASSWORD"] = operator.password
    direct = launcher.System(ports=ports, data_dir=tmp_path)  # for its URLs only

    run_py = Run(env)
    try:
        url, username, password = run_py.wait_until_up()
        assert (username, password) == ("operator", None)
        with httpx.Client(base_url=url, timeout=30) as client:
            operator.login(client)
            for name in ("auth", "clinic", "tenants", "edge", "traefik"):
                _crash_and_return(name, run_py, client, direct, operator)
            assert _poll(lambda: _health(client)[0] == 200, 15), _health(client)
        assert operator.password not in run_py.transcript()
        _stop(run_py, ports, signal.SIGTERM)
    finally:
        run_py.kill()
