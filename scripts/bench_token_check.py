"""The token check at the gateway, measured: ForwardAuth to the edge, the tokencheck plugin, none.

    git worktree add /tmp/dentiapro-forwardauth <a commit before the plugin>   # or git archive
    uv run --frozen python scripts/bench_token_check.py --forwardauth-tree /tmp/dentiapro-forwardauth

One system on PostgreSQL (scripts/system.py, seeded as ``make bench`` seeds it: one tenant,
1,000 patients, 3,000 consultations) and three Traefik processes in front of the same services:

    forwardauth  the route table of ``--forwardauth-tree`` (ForwardAuth to its edge's /verify/,
                 that tree's edge started beside this one)
    plugin       this route table (the tokencheck plugin inside Traefik)
    plain        this route table without verify-token: routing only (clinic still verifies
                 the token itself, as it does in every variant)

Each repeat runs every variant and mix in turn (interleaved, so a machine that gets busier
shifts all of them alike), with wrk at 32 connections as ``make bench`` does, and reads the CPU
time of Traefik, the edge that answers ForwardAuth, auth, clinic, tenants and this system's
PostgreSQL backends. Prints CPU ms per request per process (median of the repeats) and the
ratios to ForwardAuth; writes every run to bench-results/token-check-<timestamp>.json.
"""

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "bench")]

import measure  # noqa: E402
import mixes  # noqa: E402
import report  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from system import TRAEFIK_DIR, Ports, System  # noqa: E402

# scripts/bench.py: its fresh databases, environment and seeding (nothing else of it is used,
# so its own options and reports may change freely).
import bench  # noqa: E402

VARIANTS = ("forwardauth", "plugin", "plain")
PROCESSES = ("traefik", "edge", "auth", "clinic", "tenants", "postgres")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--forwardauth-tree",
        type=Path,
        required=True,
        help="a checkout of DentiaPro from before the plugin (its gateway/ is used)",
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--consultations", type=int, default=3000)
    parser.add_argument("--mixes", default="read,write")
    parser.add_argument("--postgres-url", default=bench.DEFAULT_POSTGRES_URL)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    args.mixes = [mix for mix in args.mixes.split(",") if mix]
    return args


class Measured:
    """One wrk run against a variant, with the CPU of its processes and of this system's
    PostgreSQL backends (as scripts/bench.py counts them)."""

    def __init__(self, args: argparse.Namespace, engine: Any, databases: list[str]) -> None:
        self.args = args
        self.engine = engine
        self.databases = databases
        cores = os.cpu_count() or 1
        # wrk on the last core, as make bench runs it.
        self.wrk_cpu = cores - 1 if cores >= 2 and shutil.which("taskset") else None

    def _backends(self) -> dict[int, float]:
        with self.engine.connect() as connection:
            pids = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = ANY(:names) AND pid <> pg_backend_pid()"
                ),
                {"names": self.databases},
            ).scalars()
            return {int(pid): measure.process_cpu(int(pid)) for pid in pids}

    def wrk(self, url: str, config: Path, mix: str, duration: float) -> measure.WrkRun:
        return measure.run_wrk(
            url,
            config=config,
            mix=mix,
            duration=duration,
            connections=self.args.connections,
            cpu=self.wrk_cpu,
        )

    def run(
        self, variant: str, url: str, pids: dict[str, int], config: Path, mix: str, repeat: int
    ) -> dict[str, Any]:
        if self.args.warmup > 0:
            self.wrk(url, config, mix, self.args.warmup)
        backends = self._backends()
        before = {**{n: measure.process_cpu(p) for n, p in pids.items()}}
        before["machine"] = measure.machine_busy()
        result = self.wrk(url, config, mix, self.args.duration)
        after = {**{n: measure.process_cpu(p) for n, p in pids.items()}}
        after["machine"] = measure.machine_busy()
        now = self._backends()
        # Backends that exist now: all their CPU if they are new, the difference if not.
        before["postgres"] = sum(cpu for pid, cpu in backends.items() if pid in now)
        after["postgres"] = sum(now.values())
        record = report.run_record(
            target=variant,
            mix=mix,
            repeat=repeat,
            wrk=result.result,
            wrk_cpu_s=result.cpu_seconds,
            cpu_before=before,
            cpu_after=after,
            rss_mb={n: measure.rss_mb(p) for n, p in pids.items()},
        )
        print(
            f"[token-check {time.strftime('%H:%M:%S')}] {variant:<12} {mix:<6} #{repeat} "
            f"{record['rps']:>6.0f} req/s  p99 {record['latency_ms']['p99']:.1f} ms  "
            f"{record['cpu_ms_per_request']['total']:.3f} CPU ms/req  "
            f"errors {record['errors']['non2xx'] + record['errors']['socket']}",
            flush=True,
        )
        return record


def plain_route_table(destination: Path) -> Path:
    """This route table with verify-token taken out of every chain."""
    shutil.copytree(TRAEFIK_DIR / "dynamic", destination)
    middlewares = destination / "middlewares.yml"
    text = middlewares.read_text()
    chains = text.replace("verify-token, ", "").replace(", verify-token", "")
    middlewares.write_text(chains)
    return destination


@contextmanager
def forwardauth_edge(tree: Path, system: System, port: int, logs: Path) -> Iterator[int]:
    """The edge of ``tree`` (with its /verify/), on ``port``, beside the running system."""
    env = {**system.env, "PYTHONPATH": str(tree / "gateway"), "EDGE_PORT": str(port)}
    command = [
        sys.executable, "-m", "uvicorn", "edge.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
        "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "edge-forwardauth.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/verify/", timeout=2).status_code == 401:
                    break
            assert process.poll() is None, (logs / "edge-forwardauth.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the ForwardAuth edge did not start"
            time.sleep(0.2)
        yield process.pid
    finally:
        process.terminate()
        process.wait(10)


def extra_traefik(system: System, work: Path, name: str, dynamic: Path, edge_port: int) -> System:
    """Another Traefik in front of ``system``'s services (its own gateway and API ports)."""
    free = Ports.free()
    ports = Ports(
        gateway=free.gateway,
        auth=system.ports.auth,
        clinic=system.ports.clinic,
        tenants=system.ports.tenants,
        edge=edge_port,
        traefik_api=free.traefik_api,
        traefik_internal=free.traefik_internal,
    )
    base = work / name
    # Everything but the addresses, which the new ports give (the edge's is this variant's).
    env = {
        key: value
        for key, value in system.env.items()
        if not (key == "PORT" or key.endswith("_PORT") or key.endswith(("_URL", "_URLS")))
        or "DATABASE" in key
    }
    extra = System(
        ports=ports, data_dir=base, env=env, log_dir=base / "logs", traefik_dynamic_dir=dynamic
    )
    extra.start_process("traefik")
    extra.wait_until_routed(60)
    return extra


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Median of the repeats, per mix and variant: CPU ms per request by process, rps, p99."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for mix in sorted({run["mix"] for run in runs}):
        summary[mix] = {}
        for variant in VARIANTS:
            mine = [r for r in runs if r["mix"] == mix and r["target"] == variant]
            if not mine:
                continue
            row = {
                name: statistics.median(r["cpu_ms_per_request"].get(name, 0.0) for r in mine)
                for name in (*PROCESSES, "total")
            }
            row["rps"] = statistics.median(r["rps"] for r in mine)
            row["p99_ms"] = statistics.median(r["latency_ms"]["p99"] for r in mine)
            row["other_cpu_ms_per_request"] = statistics.median(
                r.get("other_cpu_ms", 0.0) / max(1, r["requests"]) for r in mine
            )
            summary[mix][variant] = row
    return summary


def table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    header = f"{'mix':<6} {'variant':<12}" + "".join(f"{n:>9}" for n in (*PROCESSES, "total"))
    lines = [header + f"{'rps':>8}{'p99 ms':>8}  total/forwardauth"]
    for mix, variants in summary.items():
        reference = variants.get("forwardauth", {}).get("total")
        for variant, row in variants.items():
            ratio = f"{row['total'] / reference:.2f}" if reference else "-"
            lines.append(
                f"{mix:<6} {variant:<12}"
                + "".join(f"{row[n]:>9.3f}" for n in (*PROCESSES, "total"))
                + f"{row['rps']:>8.0f}{row['p99_ms']:>8.1f}  {ratio}"
            )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    tree = args.forwardauth_tree.resolve()
    assert (tree / "gateway" / "edge" / "verify.py").exists(), f"{tree}: no ForwardAuth edge"
    started = datetime.now(UTC)
    output = args.output or ROOT / "bench-results" / f"token-check-{started:%Y%m%dT%H%M%SZ}.json"
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="dentiapro-token-check-") as tmp,
        bench.fresh_databases(args.postgres_url) as databases,
    ):
        work = Path(tmp)
        env = bench.system_environment(databases, secrets.token_urlsafe(18))
        system = System(ports=Ports.free(), data_dir=work / "data", log_dir=work / "logs", env=env)
        extras: list[System] = []
        with system:
            seeder = bench.Bench(args, system, work, databases)
            measured = Measured(
                args, seeder.clinic_engine, [str(make_url(u).database) for u in databases.values()]
            )
            try:
                print("[token-check] seeding", flush=True)
                config = mixes.write_config(work / "main.lua", [seeder.seed_main()], args.patients)
                edge_port = Ports.free().edge
                with forwardauth_edge(tree, system, edge_port, work / "logs") as edge_pid:
                    forwardauth = extra_traefik(
                        system, work, "forwardauth", tree / "gateway/traefik/dynamic", edge_port
                    )
                    plain = extra_traefik(
                        system, work, "plain", plain_route_table(work / "plain-dynamic"),
                        system.ports.edge,
                    )  # fmt: skip
                    extras += [forwardauth, plain]
                    services = {n: system.processes[n].pid for n in ("auth", "clinic", "tenants")}
                    edge = system.processes["edge"].pid
                    variants = {
                        "forwardauth": (forwardauth, edge_pid),
                        "plugin": (system, edge),
                        "plain": (plain, edge),
                    }
                    for repeat in range(1, args.repeat + 1):
                        for mix in args.mixes:
                            for variant, (gateway, edge_of) in variants.items():
                                traefik = gateway.processes["traefik"].pid
                                pids = {"traefik": traefik, "edge": edge_of, **services}
                                runs.append(
                                    measured.run(
                                        variant, gateway.gateway_url, pids, config, mix, repeat
                                    )
                                )
            finally:
                for extra in extras:
                    extra.stop()
                seeder.clinic_engine.dispose()
    summary = summarise(runs)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "started_at": started.isoformat(),
                "machine": bench.machine(),
                "settings": {k: str(v) for k, v in vars(args).items() if k != "postgres_url"},
                "runs": runs,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(table(summary))
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
