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

import mixes  # noqa: E402
from system import TRAEFIK_DIR, Ports, System  # noqa: E402

import bench  # noqa: E402  scripts/bench.py: databases, seeding, one measured wrk run

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
    parser.add_argument("--mixes", default="read,write")
    parser.add_argument("--output", type=Path)
    return parser.parse_args()


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
    options = ["--duration", str(args.duration), "--repeat", str(args.repeat)]
    bench_args = bench.parse_args([*options, "--mixes", args.mixes, "--targets", "gateway"])
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="dentiapro-token-check-") as tmp,
        bench.fresh_databases(bench_args.postgres_url) as databases,
    ):
        work = Path(tmp)
        env = bench.system_environment(databases, secrets.token_urlsafe(18))
        system = System(ports=Ports.free(), data_dir=work / "data", log_dir=work / "logs", env=env)
        extras: list[System] = []
        with system:
            measured = bench.Bench(bench_args, system, work, databases)
            try:
                measured.log("seeding")
                config = mixes.write_config(
                    work / "main.lua", [measured.seed_main()], bench_args.patients
                )
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
                    variants = {
                        "forwardauth": (
                            forwardauth,
                            {"traefik": forwardauth.processes["traefik"].pid, "edge": edge_pid},
                        ),
                        "plugin": (
                            system,
                            {
                                "traefik": system.processes["traefik"].pid,
                                "edge": system.processes["edge"].pid,
                            },
                        ),
                        "plain": (
                            plain,
                            {
                                "traefik": plain.processes["traefik"].pid,
                                "edge": system.processes["edge"].pid,
                            },
                        ),
                    }
                    for repeat in range(1, args.repeat + 1):
                        for mix in bench_args.mixes:
                            for variant, (gateway, pids) in variants.items():
                                measured.warm_up(gateway.gateway_url, config, mix)
                                runs.append(
                                    measured.measure(
                                        target=variant,
                                        mix=mix,
                                        config=config,
                                        repeat=repeat,
                                        pids={**pids, **services},
                                        url=gateway.gateway_url,
                                    )
                                )
            finally:
                for extra in extras:
                    extra.stop()
                measured.clinic_engine.dispose()
    summary = summarise(runs)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "started_at": started.isoformat(),
                "machine": bench.machine(),
                "settings": {
                    "duration": args.duration,
                    "repeat": args.repeat,
                    "cpus": os.cpu_count(),
                },
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
