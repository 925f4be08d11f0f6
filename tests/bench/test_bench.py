"""The benchmark harness runs end to end (tiny seed, one-second runs) and reports every figure.

No thresholds here: CI machines vary. The real numbers come from ``make bench`` and are
discussed in docs/performance.md.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from common.pytest_plugin import postgres_server_url, require_postgres
from sqlalchemy import create_engine, text

SERVICES = ("traefik", "edge", "auth", "clinic", "tenants")


def run_bench(
    script: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env or dict(os.environ),
        check=False,
    )


def test_bench_drives_the_system_and_reports_every_figure(
    wrk: str, bench_script: Path, tmp_path: Path
) -> None:
    require_postgres()
    output = tmp_path / "results.json"
    completed = run_bench(
        bench_script,
        *("--duration", "1", "--repeat", "1", "--warmup", "0"),
        *("--patients", "20", "--consultations", "20", "--mixes", "read"),
        *("--targets", "gateway,clinic,hello", "--output", str(output)),
        # The server require_postgres() checked, not the bench's own default.
        *("--postgres-url", postgres_server_url()),
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results: dict[str, Any] = json.loads(output.read_text())

    assert {"machine", "settings", "runs", "summary", "ratios", "targets"} <= results.keys()
    assert results["settings"]["postgres_measured"] is True
    rows = {(row["target"], row["mix"]): row for row in results["summary"]}
    assert set(rows) == {("gateway", "read"), ("clinic", "read"), ("hello", "hello")}
    for key, row in rows.items():
        assert row["requests"] > 0, key
        assert row["errors"] == 0, (key, results["runs"])
        assert row["rps"] > 0, key
        latency = row["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"], key
        assert row["cpu_ms_per_request"]["total"] > 0, key

    for target in ("gateway", "clinic"):
        row = rows[(target, "read")]
        assert set(row["cpu_ms_per_request"]) == {*SERVICES, "postgres", "total"}
        assert row["cpu_ms_per_request"]["clinic"] > 0
        assert row["cpu_ms_per_request"]["postgres"] > 0
        assert set(row["rss_mb"]) == set(SERVICES)
        assert all(value > 0 for value in row["rss_mb"].values())
    # Through the gateway, Traefik does part of the work (the token check included: the edge
    # only answers /health/ now, so its share may round to nothing); direct, none of it.
    assert 0 < rows[("gateway", "read")]["gateway_share"] < 1
    assert rows[("gateway", "read")]["cpu_ms_per_request"]["traefik"] > 0
    assert set(rows[("hello", "hello")]["cpu_ms_per_request"]) == {"hello", "total"}

    assert results["ratios"]["read"] > 0
    names = {check["name"] for check in results["targets"]}
    assert "read mix CPU ms/request (gateway)" in names
    assert "gateway read p99 ms" in names
    assert "clinic RSS MiB" in names
    assert "gateway  read" in completed.stdout  # the printed table


def test_bench_without_wrk_says_how_to_install_it(bench_script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty directory: no wrk on the PATH
    completed = run_bench(bench_script, "--output", str(tmp_path / "never.json"), env=env)
    assert completed.returncode == 2
    assert "apt-get install -y wrk" in completed.stdout
    assert not (tmp_path / "never.json").exists()


def test_cpu_of_exited_children_is_counted_once_reaped(measure: ModuleType) -> None:
    # PostgreSQL backends that exit during a run are counted this way (the postmaster reaps them).
    before = measure.process_cpu(os.getpid(), reaped_children=True)
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    after = measure.process_cpu(os.getpid(), reaped_children=True)
    assert after - before >= 0.25


def test_postgres_cpu_includes_the_server_and_its_backends(measure: ModuleType) -> None:
    require_postgres()
    engine = create_engine(postgres_server_url())
    try:
        with engine.connect() as connection:
            backend = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            postmaster = measure.parent_of(backend)
            assert backend in measure.children(postmaster)
            before = measure.postgres_cpu(postmaster)
            connection.execute(
                text("SELECT count(*) FROM generate_series(1, 3000000)")
            ).scalar_one()
            after = measure.postgres_cpu(postmaster)
    finally:
        engine.dispose()
    assert after - before >= 0.05


def test_ids_become_inclusive_ranges(seed: ModuleType) -> None:
    assert seed.id_ranges([8, 1, 2, 3, 7, 10, 2]) == [(1, 3), (7, 8), (10, 10)]
    assert seed.id_ranges([]) == []
