"""``make bench``: the whole system on PostgreSQL under wrk, CPU per request per process.

    uv run python scripts/bench.py [--scaling] [--profile] [--duration 10] [--repeat 3]

Starts Traefik, edge, auth, clinic and tenants (scripts/system.py: one uvicorn worker each,
uvloop, httptools) on three fresh PostgreSQL databases, seeds one tenant through the API (one
cabinet, 1,000 patients, 3,000 consultations), and drives it with wrk (bench/wrk/mix.lua) at
32 connections: the read, write and mixed mixes through the gateway and straight to clinic,
then a hello-world ASGI app as the machine's ceiling. With the peer (the default), the Django
REST Framework peer of ../shared/peers/drf/ is set up on a fresh database of the same server,
seeded alike through its own API, and measured the same way, its runs alternating with
DentiaPro's gateway runs of the same mix: issue 13's targets are ratios to it (bench/peer.py).
Each run reads the CPU time of every process (and of the PostgreSQL backends) before and
after, so the table says how many CPU milliseconds one request costs and where. Results:
bench-results/<timestamp>.json. docs/performance.md explains the method and the numbers. Every
option also reads a BENCH_* environment variable (BENCH_DURATION, BENCH_PEER, ...).
"""

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "bench")]

import measure  # noqa: E402
import mixes  # noqa: E402
import peer  # noqa: E402
import profile_summary  # noqa: E402
import report  # noqa: E402
import scaling  # noqa: E402
import seed  # noqa: E402
from system import Ports, System  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
SERVICE_DATABASES = ("auth", "clinic", "tenants")
BENCH_TENANT = "bench"
PEER_SCHEMA = "clinic"  # the peer's default tenant, served on 127.0.0.1


def _env(name: str, default: str) -> str:
    return os.environ.get(f"BENCH_{name}", default)


def default_peer_dir() -> Path:
    """``../shared/peers/drf`` from the repository; from a git worktree, from its main checkout
    (whose ``..`` holds ``shared/`` when the worktrees live elsewhere)."""
    beside = ROOT.parent / "shared" / "peers" / "drf"
    if beside.is_dir():
        return beside
    with suppress(OSError, subprocess.SubprocessError):
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        main_checkout = Path(common).parent  # <main checkout>/.git
        candidate = main_checkout.parent / "shared" / "peers" / "drf"
        if candidate.is_dir():
            return candidate
    return beside


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=float(_env("DURATION", "10")))
    parser.add_argument("--repeat", type=int, default=int(_env("REPEAT", "3")))
    parser.add_argument("--warmup", type=float, default=float(_env("WARMUP", "2")))
    parser.add_argument("--connections", type=int, default=int(_env("CONNECTIONS", "32")))
    parser.add_argument("--patients", type=int, default=int(_env("PATIENTS", "1000")))
    parser.add_argument("--consultations", type=int, default=int(_env("CONSULTATIONS", "3000")))
    parser.add_argument(
        "--mixes", default=_env("MIXES", "read,write,mixed"), help="comma-separated"
    )
    parser.add_argument(
        "--targets",
        default=_env("TARGETS", "gateway,clinic,hello"),
        help="comma-separated: gateway, clinic (direct), hello (the ceiling)",
    )
    parser.add_argument(
        "--scaling", action="store_true", default=_env("SCALING", "") not in ("", "0")
    )
    parser.add_argument(
        "--scaling-patients", type=int, default=int(_env("SCALING_PATIENTS", "100000"))
    )
    parser.add_argument("--tenants", type=int, default=int(_env("TENANTS", "1000")))
    parser.add_argument(
        "--profile",
        action="store_true",
        default=_env("PROFILE", "") not in ("", "0"),
        help="also record py-spy profiles of clinic and edge under the read and write mixes",
    )
    parser.add_argument(
        "--pin-system",
        action="store_true",
        default=_env("PIN_SYSTEM", "") not in ("", "0"),
        help="pin the five processes to the cores wrk does not use",
    )
    parser.add_argument(
        "--output", type=Path, default=Path(_env("OUTPUT", "")) if _env("OUTPUT", "") else None
    )
    parser.add_argument("--postgres-url", default=_env("POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=_env("PEER", "1") not in ("", "0"),
        help="measure the DRF peer beside DentiaPro's gateway runs (default: on)",
    )
    parser.add_argument(
        "--peer-dir",
        type=Path,
        default=Path(_env("PEER_DIR", "")) if _env("PEER_DIR", "") else None,
        help="the DRF peer's folder (default: ../shared/peers/drf from the repository)",
    )
    args = parser.parse_args(argv)
    if args.peer_dir is None:
        args.peer_dir = default_peer_dir()
    if args.peer and (why := peer.missing(args.peer_dir)):
        parser.error(why)
    args.peer_dir = args.peer_dir.resolve()
    args.mixes = [m for m in args.mixes.split(",") if m]
    args.targets = [t for t in args.targets.split(",") if t]
    for mix in args.mixes:
        if mix not in mixes.MIXES:
            parser.error(f"unknown mix {mix!r}; known: {', '.join(mixes.MIXES)}")
    for target in args.targets:
        if target not in ("gateway", "clinic", "hello"):
            parser.error(f"unknown target {target!r}; known: gateway, clinic, hello")
    return args


# --- databases ---------------------------------------------------------------------------------


@contextmanager
def fresh_databases(server_url: str) -> Iterator[dict[str, str]]:
    """One new database per service on the server, dropped (connections and all) afterwards."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    suffix = uuid.uuid4().hex[:8]
    names = {service: f"bench_{service}_{suffix}" for service in SERVICE_DATABASES}
    try:
        with admin.connect() as connection:
            for name in names.values():
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield {
            service: make_url(server_url).set(database=name).render_as_string(hide_password=False)
            for service, name in names.items()
        }
    finally:
        with admin.connect() as connection:
            for name in names.values():
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def dropped_afterwards(server_url: str, name: str) -> Iterator[str]:
    """A database that someone else creates (the peer's setup.sh), dropped at the end."""
    try:
        yield name
    finally:
        admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


def find_postmaster(engine: Engine) -> int | None:
    """The PostgreSQL server's main process, if it runs on this machine (its /proc is ours)."""
    with engine.connect() as connection:
        backend = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
    try:
        return measure.parent_of(backend)
    except (FileNotFoundError, ProcessLookupError):
        return None


# --- the bench -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subject:
    """What one series measures: where wrk sends the load, and whose CPU and memory count."""

    target: str  # the runs' target: gateway, clinic (direct), hello, peer
    url: str
    cpu: Callable[[], dict[str, float]]  # CPU seconds of each named process, now
    rss: Callable[[], dict[str, float]]  # resident MiB of each named process, now
    databases: Sequence[str] = ()  # the PostgreSQL backends of these count as "postgres"
    facts: Callable[[], dict[str, Any]] | None = None  # recorded with each run (table sizes)


def _cpu_of(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: measure.process_cpu(pid) for name, pid in pids.items()}


def _rss_of(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: measure.rss_mb(pid) for name, pid in pids.items()}


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        system: System,
        work: Path,
        databases: Mapping[str, str],
        drf_peer: peer.Peer | None = None,
    ) -> None:
        self.args = args
        self.system = system
        self.work = work
        self.database_names = [str(make_url(url).database) for url in databases.values()]
        self.pids = {name: process.pid for name, process in system}
        self.clinic_engine = create_engine(databases["clinic"])
        self.postmaster = find_postmaster(self.clinic_engine)
        self.peer = drf_peer
        self.peer_engine = (
            create_engine(make_url(databases["clinic"]).set(database=drf_peer.database))
            if drf_peer is not None
            else None
        )
        cores = os.cpu_count() or 1
        # wrk on the last core; the system may share every core (see docs/performance.md).
        self.wrk_cpu = cores - 1 if cores >= 2 and shutil.which("taskset") else None
        self.runs: list[dict[str, Any]] = []
        self.admin_password = system.env["DENTIAPRO_ADMIN_PASSWORD"]
        self.user_password = secrets.token_urlsafe(16)

    def close(self) -> None:
        self.clinic_engine.dispose()
        if self.peer_engine is not None:
            self.peer_engine.dispose()

    # -- helpers --

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    @property
    def gateway_url(self) -> str:
        return self.system.gateway_url

    def url(self, target: str) -> str:
        return self.system.gateway_url if target == "gateway" else self.system.url("clinic")

    def dentiapro(self, target: str, *, with_table_size: bool = False) -> Subject:
        """DentiaPro's five processes and three databases, loaded through ``target``."""
        facts = (
            (lambda: {"patients_in_tenant": self.patient_count(BENCH_TENANT)})
            if with_table_size
            else None
        )
        return Subject(
            target=target,
            url=self.url(target),
            cpu=partial(_cpu_of, self.pids),
            rss=partial(_rss_of, self.pids),
            databases=self.database_names,
            facts=facts,
        )

    def peer_subject(self) -> Subject:
        """The peer's gunicorn (master and workers) and the backends of its database."""
        assert self.peer is not None
        return Subject(
            target=report.PEER,
            url=self.peer.url,
            cpu=self.peer.cpu,
            rss=self.peer.rss,
            databases=[self.peer.database],
            facts=lambda: {"patients_in_tenant": self.peer_patient_count()},
        )

    def pin_system(self) -> None:
        cores = set(range(os.cpu_count() or 1)) - {self.wrk_cpu}
        for pid in self.pids.values():
            for task in Path(f"/proc/{pid}/task").iterdir():
                with suppress(ProcessLookupError, PermissionError):
                    os.sched_setaffinity(int(task.name), cores)

    def patient_count(self, schema: str) -> int:
        with self.clinic_engine.connect() as connection:
            return int(
                connection.exec_driver_sql(f'SELECT count(*) FROM "{schema}".patient').scalar_one()
            )

    def peer_patient_count(self) -> int:
        assert self.peer_engine is not None
        with self.peer_engine.connect() as connection:
            return int(
                connection.exec_driver_sql(
                    f'SELECT count(*) FROM "{PEER_SCHEMA}".clinic_patient'
                ).scalar_one()
            )

    def database_activity(self, names: Sequence[str]) -> dict[str, Any]:
        """The backends of the databases ``names`` (pid: CPU seconds), and their counters.

        Only the backends connected to the measured system's own databases count as
        PostgreSQL's share: the server may be shared (other test suites, and the other system
        of the comparison), and its own background processes serve everyone. The whole
        server's CPU is kept too, as a second figure.
        """
        with self.clinic_engine.connect() as connection:
            pids = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = ANY(:names) AND pid <> pg_backend_pid()"
                ),
                {"names": list(names)},
            ).scalars()
            counters = connection.execute(
                text(
                    "SELECT sum(sessions), sum(xact_commit + xact_rollback) "
                    "FROM pg_stat_database WHERE datname = ANY(:names)"
                ),
                {"names": list(names)},
            ).one()
        return {
            "backends": {int(pid): measure.process_cpu(int(pid)) for pid in pids},
            "server": measure.postgres_cpu(self.postmaster) if self.postmaster else 0.0,
            "sessions": int(counters[0] or 0),
            "transactions": int(counters[1] or 0),
        }

    def measure(
        self,
        subject: Subject,
        *,
        mix: str,
        config: Path,
        repeat: int,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        extra = {**(subject.facts() if subject.facts else {}), **(extra or {})}
        activity = self.database_activity(subject.databases) if subject.databases else None
        before = {**subject.cpu(), "machine": measure.machine_busy()}
        run = measure.run_wrk(
            subject.url,
            config=config,
            mix=mix,
            duration=self.args.duration,
            connections=self.args.connections,
            cpu=self.wrk_cpu,
        )
        after = {**subject.cpu(), "machine": measure.machine_busy()}
        if activity is not None:
            now = self.database_activity(subject.databases)
            # Backends that exist now: all their CPU if they are new, the difference if not.
            # One that ended during the run took its CPU with it; sessions_ended says so.
            before["postgres"] = sum(
                seconds for pid, seconds in activity["backends"].items() if pid in now["backends"]
            )
            after["postgres"] = sum(now["backends"].values())
            requests = max(1, int(run.result["requests"]))
            extra = {
                **extra,
                "postgres_server_cpu_ms": round((now["server"] - activity["server"]) * 1000, 1),
                # Counted when a connection closes: non-zero means the pools churned.
                "db_sessions_ended": now["sessions"] - activity["sessions"],
                # Each backend reports about once a second: approximate.
                "db_transactions_per_request": round(
                    (now["transactions"] - activity["transactions"]) / requests, 2
                ),
            }
        record = report.run_record(
            target=subject.target,
            mix=mix,
            repeat=repeat,
            wrk=run.result,
            wrk_cpu_s=run.cpu_seconds,
            cpu_before=before,
            cpu_after=after,
            rss_mb=subject.rss(),
            extra=extra,
        )
        per = record["cpu_ms_per_request"]["total"]
        self.log(
            f"{subject.target:<8} {mix:<16} #{repeat} {record['rps']:>7.0f} req/s  "
            f"p99 {record['latency_ms']['p99']:.1f} ms  {per:.3f} CPU ms/req  "
            f"errors {record['errors']['non2xx'] + record['errors']['socket']}"
        )
        return record

    def warm_up(self, url: str, config: Path, mix: str) -> None:
        if self.args.warmup > 0:
            measure.run_wrk(
                url,
                config=config,
                mix=mix,
                duration=self.args.warmup,
                connections=self.args.connections,
                cpu=self.wrk_cpu,
            )

    def alternating(
        self,
        mix: str,
        subjects: Sequence[tuple[Subject, Path]],
        extra: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Each subject warmed up, then their repeats in turn (A1 B1 A2 B2 ...).

        Taken in turn, the two systems of a comparison share whatever the machine does
        meanwhile (other engineers' tests, a slower hour) instead of one getting all of it.
        """
        for subject, config in subjects:
            self.warm_up(subject.url, config, mix)
        return [
            self.measure(subject, mix=mix, config=config, repeat=r, extra=extra)
            for r in range(1, self.args.repeat + 1)
            for subject, config in subjects
        ]

    def series(
        self,
        *,
        target: str,
        mix: str,
        config: Path,
        extra: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The repeats of one mix against DentiaPro through ``target``."""
        return self.alternating(mix, [(self.dentiapro(target), config)], extra)

    # -- seeding --

    async def _admin_token(self, client: httpx.AsyncClient) -> str:
        username = self.system.env["DENTIAPRO_ADMIN_USERNAME"]
        return await seed.login(client, self.system.url("auth"), username, self.admin_password)

    async def new_tenants(
        self, client: httpx.AsyncClient, schemas: Sequence[str], concurrency: int = 8
    ) -> list[seed.TenantData]:
        admin = await self._admin_token(client)
        auth = self.system.url("auth")

        async def one(schema: str) -> seed.TenantData:
            await seed.create_tenant(client, self.system.gateway_url, admin, schema)
            token = await seed.tenant_admin_token(client, auth, admin, schema, self.user_password)
            return seed.TenantData(schema=schema, token=token)

        return await seed.gather_limited((partial(one, s) for s in schemas), concurrency)

    def seed_main(self) -> seed.TenantData:
        async def run() -> seed.TenantData:
            async with httpx.AsyncClient(timeout=30.0) as client:
                (tenant,) = await self.new_tenants(client, [BENCH_TENANT])
                await seed.seed_records(
                    client,
                    self.system.gateway_url,
                    tenant,
                    patients=self.args.patients,
                    consultations=self.args.consultations,
                )
                return tenant

        return asyncio.run(run())

    @property
    def peer_username(self) -> str:
        return f"{BENCH_TENANT}_admin"  # the name DentiaPro's tenant user has

    def seed_peer(self) -> seed.TenantData:
        """The peer seeded as DentiaPro is: one user registered and logged in, then the same
        cabinet, patients and consultations (same generator, same seed) through its API."""
        assert self.peer is not None
        drf = self.peer

        async def run() -> seed.TenantData:
            async with httpx.AsyncClient(timeout=30.0) as client:
                await drf.register(client, self.peer_username, self.user_password)
                token = await drf.token(client, self.peer_username, self.user_password)
                tenant = seed.TenantData(schema=PEER_SCHEMA, token=token)
                await seed.seed_records(
                    client,
                    drf.url,
                    tenant,
                    patients=self.args.patients,
                    consultations=self.args.consultations,
                )
                return tenant

        return asyncio.run(run())

    def peer_config(self, tenant: seed.TenantData) -> Path:
        """The peer's wrk config with a fresh token: the peer's tokens last 30 minutes."""
        assert self.peer is not None
        drf = self.peer

        async def login() -> str:
            async with httpx.AsyncClient(timeout=30.0) as client:
                return await drf.token(client, self.peer_username, self.user_password)

        tenant.token = asyncio.run(login())
        return mixes.write_config(
            self.work / "peer.lua", [tenant], self.args.patients, mixes.COMPARISON_PAGE_SIZE
        )

    # -- the runs --

    def comparison_runs(self, config: Path, peer_tenant: seed.TenantData | None) -> None:
        """Per mix: DentiaPro through the gateway and the peer, their repeats in turn."""
        for mix in self.args.mixes:
            subjects = []
            if "gateway" in self.args.targets:
                subjects.append((self.dentiapro("gateway", with_table_size=True), config))
            if peer_tenant is not None:
                subjects.append((self.peer_subject(), self.peer_config(peer_tenant)))
            self.runs.extend(self.alternating(mix, subjects))

    def direct_runs(self, config: Path) -> None:
        if "clinic" not in self.args.targets:
            return
        for mix in self.args.mixes:
            self.runs.extend(
                self.alternating(mix, [(self.dentiapro("clinic", with_table_size=True), config)])
            )

    def hello_runs(self, config: Path) -> None:
        port = Ports.free().gateway
        command = [
            sys.executable, "-m", "uvicorn", "hello:app", "--app-dir", str(ROOT / "bench"),
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--loop", "uvloop", "--http", "httptools",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            pids = {"hello": process.pid}
            subject = Subject("hello", url, partial(_cpu_of, pids), partial(_rss_of, pids))
            self.runs.extend(self.alternating("hello", [(subject, config)]))
        finally:
            process.terminate()
            process.wait(10)

    def profile(self, config: Path, directory: Path) -> dict[str, str]:
        """py-spy profiles (``--gil``: Python CPU) of clinic, edge and auth under read and write.

        Returns the summary of each profile (bench/profile_summary.py) by file name; the raw
        collapsed stacks stay beside the results for flame graphs.
        """
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        directory.mkdir(parents=True, exist_ok=True)
        summaries = {}
        seconds = max(1, round(self.args.duration))
        for mix in ("read", "write"):
            recorders = {}
            for name in ("clinic", "edge", "auth"):
                output = directory / f"{mix}-{name}.txt"
                recorders[output] = subprocess.Popen(
                    [py_spy, "record", "--pid", str(self.pids[name]), "--rate", "250", "--gil",
                     "--duration", str(seconds), "--format", "raw", "--output", str(output)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            time.sleep(1.0)  # py-spy attaches before the load starts
            self.measure(self.dentiapro("gateway"), mix=mix, config=config, repeat=0)
            for output, recorder in recorders.items():
                recorder.wait(60)
                if output.exists():
                    summaries[output.name] = profile_summary.report(output)
                    self.log(summaries[output.name])
        return summaries


def machine() -> dict[str, Any]:
    model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with suppress(OSError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_mb": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def system_environment(databases: Mapping[str, str], admin_password: str) -> dict[str, str]:
    return {
        **{f"{svc.upper()}_DATABASE_URL": url for svc, url in databases.items()},
        # Tokens outlive the whole bench (the default is 5 minutes); no mix logs in.
        "ACCESS_TOKEN_LIFETIME": "86400",
        "DENTIAPRO_ADMIN_USERNAME": "benchadmin",
        "DENTIAPRO_ADMIN_PASSWORD": admin_password,
        # Only the seeding hashes passwords (one login per tenant): cheap Argon2 makes the
        # 1,000-tenant run quick and changes nothing that the mixes measure.
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST": "8192",
        "ARGON2_PARALLELISM": "1",
        # Every tenant's admin registers from this one address (the 1,000-tenant run).
        "REGISTRATIONS_PER_ADDRESS": "100000",
    }


def bench_system(
    bench: Bench, args: argparse.Namespace, results: dict[str, Any], work: Path, output: Path
) -> None:
    """Everything measured on one running system, in order; fills ``results``."""
    if args.pin_system:
        bench.pin_system()
    results["settings"]["wrk_cpu"] = bench.wrk_cpu
    results["settings"]["postgres_measured"] = bench.postmaster is not None
    if bench.peer is not None:
        # First, so that a peer that cannot be set up fails the bench before the long seeding.
        bench.log(f"peer: setup.sh in {args.peer_dir} (database {bench.peer.database})")
        bench.peer.setup()
        results["peer"] = bench.peer.settings()
    bench.log(f"seeding {args.patients} patients, {args.consultations} consultations")
    tenant = bench.seed_main()
    # Lists and searches ask for the peer's page size, with or without the peer: one mix.
    config = mixes.write_config(
        work / "main.lua", [tenant], args.patients, mixes.COMPARISON_PAGE_SIZE
    )
    if bench.peer is not None:
        with bench.peer.running(Ports.free().gateway):
            bench.log(f"peer: seeding {args.patients} patients, {args.consultations} consultations")
            bench.comparison_runs(config, bench.seed_peer())
    else:
        bench.comparison_runs(config, None)
    bench.direct_runs(config)
    if "hello" in args.targets:
        bench.hello_runs(config)
    if args.profile:
        results["profiles"] = bench.profile(config, output.with_suffix("") / "profile")
    results["scaling"] = scaling.run(bench) if args.scaling else None


def keep_logs(
    system: System, drf_peer: peer.Peer | None, directory: Path, lines: int = 300
) -> None:
    """The tail of every process's log beside the results, for a run that failed."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, _ in system:
        (directory / f"{name}.log").write_text(system.log_tail(name, lines) + "\n")
    if drf_peer is not None:
        for name in ("setup.log", "gunicorn.log"):
            (directory / f"peer-{name}").write_text(drf_peer.log_tail(name, lines) + "\n")
    print(f"logs of the failed run: {directory}", file=sys.stderr)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # As Ctrl-C does: every `with` and `finally` runs, so the systems stop and the databases go.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install -y wrk); `make bench` installs it.")
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = datetime.now(UTC)
    output = args.output or ROOT / "bench-results" / f"{started:%Y%m%dT%H%M%SZ}.json"
    results: dict[str, Any] = {
        "started_at": started.isoformat(),
        "machine": machine(),
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
            if key != "postgres_url"
        },
    }
    server = make_url(args.postgres_url)
    with (
        tempfile.TemporaryDirectory(prefix="dentiapro-bench-") as tmp,
        fresh_databases(args.postgres_url) as databases,
        dropped_afterwards(args.postgres_url, f"bench_peer_{uuid.uuid4().hex[:8]}") as peer_db,
    ):
        work = Path(tmp)
        drf_peer = (
            peer.Peer(
                directory=args.peer_dir,
                database=peer_db,
                host=server.host or "127.0.0.1",
                port=server.port or 5432,
                log_dir=work / "peer",
            )
            if args.peer
            else None
        )
        admin_password = secrets.token_urlsafe(18)
        system = System(
            ports=Ports.free(),
            data_dir=work / "data",
            log_dir=work / "logs",
            env=system_environment(databases, admin_password),
        )
        with system:
            bench = Bench(args, system, work, databases, drf_peer)
            try:
                bench_system(bench, args, results, work, output)
            except BaseException:
                keep_logs(system, drf_peer, output.with_suffix("") / "logs")
                raise
            finally:
                bench.close()
    summary = report.summarise(bench.runs)
    disturbed = report.disturbed(summary, args.duration, os.cpu_count() or 1)
    comparison = report.peer_comparison(summary, disturbed, bench.runs)
    results.update(
        finished_at=datetime.now(UTC).isoformat(),
        runs=bench.runs,
        summary=summary,
        comparison=comparison,
        ratios=report.ratios(summary),
        cpu_in_hello_requests=report.relative_to_hello(summary),
        targets=report.targets(summary, results.get("scaling"), comparison),
        disturbed=disturbed,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(summary))
    if results.get("scaling"):
        print("\nscaling (through the gateway)")
        print(report.table(results["scaling"]["summary"]))
    print(f"\ndirect-to-clinic / gateway throughput: {results['ratios']}")
    print(f"CPU per request in hello-world requests: {results['cpu_in_hello_requests']}")
    if comparison:
        print("\nDentiaPro through the gateway (DP) beside the DRF peer, same run")
        print(report.comparison_table(comparison))
    elif not args.peer:
        print("\nthe peer was not measured (--no-peer): issue 13's ratio targets say n/a")
    print()
    print(report.targets_table(results["targets"]))
    if results["disturbed"]:
        print(
            f"\nWARNING: other processes used more than 20% of the machine during: "
            f"{', '.join(results['disturbed'])}. Throughput, latency and CPU per request are "
            "inflated; "
            "re-run on a quiet machine (see other_cpu_ms in the JSON)."
        )
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
