"""Turn the benchmark's raw runs into a summary, the targets of issue 6, and a printed table."""

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

GATEWAY_PROCESSES = ("traefik", "edge")
SYSTEM_PROCESSES = ("traefik", "edge", "auth", "clinic", "tenants", "postgres")

# Issue 6 targets on a 2-core machine.
READ_CPU_MS = 1.0
WRITE_CPU_MS = 1.5
P99_MS = 25.0
GATEWAY_SHARE = 0.25
RSS_MB = 150.0
SCALING_FACTOR = 1.5
# "1,000 tenants cost no more per request than 1": equal within the runs' noise.
TENANTS_FACTOR = 1.1


def run_record(
    *,
    target: str,
    mix: str,
    repeat: int,
    wrk: Mapping[str, Any],
    wrk_cpu_s: float,
    cpu_before: Mapping[str, float],
    cpu_after: Mapping[str, float],
    rss_mb: Mapping[str, float],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One wrk run: throughput, latency, errors, CPU per process and per request, memory."""
    requests = int(wrk["requests"])
    seconds = wrk["duration_us"] / 1e6
    cpu_ms = {
        name: round((cpu_after[name] - cpu_before[name]) * 1000, 1)
        for name in cpu_before
        if name != "machine"
    }
    total = sum(cpu_ms.values())
    machine_ms = (cpu_after["machine"] - cpu_before["machine"]) * 1000
    wrk_ms = wrk_cpu_s * 1000
    per_request = {name: _per(value, requests) for name, value in cpu_ms.items()}
    per_request["total"] = _per(total, requests)
    errors = wrk["errors"]
    socket_errors = sum(int(errors[k]) for k in ("connect", "read", "write", "timeout"))
    return {
        "target": target,
        "mix": mix,
        "repeat": repeat,
        "duration_s": round(seconds, 3),
        "requests": requests,
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "latency_ms": {k: round(float(v) / 1000, 3) for k, v in wrk["latency_us"].items()},
        "errors": {
            "non2xx": int(errors["non2xx"]),
            "socket": socket_errors,
            "statuses": dict(errors["statuses"]),
        },
        "cpu_ms": {**cpu_ms, "total": round(total, 1)},
        "cpu_ms_per_request": per_request,
        "gateway_share": _share(cpu_ms, total),
        "wrk_cpu_ms": round(wrk_ms, 1),
        # CPU the machine spent on anything else (other users, the kernel's own work, ...):
        # a run with a large figure here was disturbed.
        "other_cpu_ms": round(machine_ms - total - wrk_ms, 1),
        "rss_mb": {name: round(value, 1) for name, value in rss_mb.items()},
        **(extra or {}),
    }


def _per(value: float, requests: int) -> float:
    return round(value / requests, 4) if requests else 0.0


def _share(cpu_ms: Mapping[str, float], total: float) -> float | None:
    if "traefik" not in cpu_ms or not total:
        return None
    return round(sum(cpu_ms.get(name, 0.0) for name in GATEWAY_PROCESSES) / total, 3)


def summarise(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (target, mix): the median of the repeats, errors summed, the largest RSS."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["target"], run["mix"]), []).append(run)
    summary = []
    for (target, mix), group in groups.items():
        per_request_names = group[0]["cpu_ms_per_request"].keys()
        shares = [r["gateway_share"] for r in group if r["gateway_share"] is not None]
        summary.append(
            {
                "target": target,
                "mix": mix,
                "repeats": len(group),
                "requests": sum(r["requests"] for r in group),
                "rps": _median(r["rps"] for r in group),
                "latency_ms": {
                    k: _median(r["latency_ms"][k] for r in group)
                    for k in ("p50", "p90", "p99", "max", "mean")
                },
                "errors": sum(r["errors"]["non2xx"] + r["errors"]["socket"] for r in group),
                "cpu_ms_per_request": {
                    name: _median(r["cpu_ms_per_request"][name] for r in group)
                    for name in per_request_names
                },
                "gateway_share": _median(shares) if shares else None,
                **_database_figures(group),
                "other_cpu_ms": _median(r["other_cpu_ms"] for r in group),
                "rss_mb": {
                    name: max(r["rss_mb"][name] for r in group) for name in group[0]["rss_mb"]
                },
            }
        )
    return summary


def _database_figures(group: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """PostgreSQL diagnostics of runs that touched it (the whole server, pool churn)."""
    if "postgres_server_cpu_ms" not in group[0]:
        return {}
    return {
        "postgres_server_cpu_ms_per_request": _median(
            r["postgres_server_cpu_ms"] / max(1, r["requests"]) for r in group
        ),
        "db_sessions_ended": sum(r["db_sessions_ended"] for r in group),
        "db_transactions_per_request": _median(r["db_transactions_per_request"] for r in group),
    }


def _median(values: Iterable[float]) -> float:
    return round(statistics.median(list(values)), 4)


def find(summary: Sequence[Mapping[str, Any]], target: str, mix: str) -> Mapping[str, Any] | None:
    return next((s for s in summary if s["target"] == target and s["mix"] == mix), None)


def relative_to_hello(summary: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """CPU per request of each row in units of the hello-world request measured alongside.

    The hello app is the yardstick of the machine at the time of the run: on a busy or slow
    machine both figures grow, their ratio much less.
    """
    hello = next((row for row in summary if row["target"] == "hello"), None)
    if hello is None or not hello["cpu_ms_per_request"]["total"]:
        return {}
    unit = hello["cpu_ms_per_request"]["total"]
    return {
        f"{row['target']} {row['mix']}": round(row["cpu_ms_per_request"]["total"] / unit, 1)
        for row in summary
        if row["target"] != "hello"
    }


def ratios(summary: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Direct-to-clinic throughput over through-the-gateway throughput, per mix."""
    found = {}
    for row in summary:
        if row["target"] != "gateway":
            continue
        direct = find(summary, "clinic", row["mix"])
        if direct is not None and row["rps"]:
            found[row["mix"]] = round(direct["rps"] / row["rps"], 2)
    return found


def compare(
    summary: Sequence[Mapping[str, Any]],
    small: str,
    large: str,
    limits: Mapping[str, tuple[str, float]],
) -> list[dict[str, Any]]:
    """Large case over small case, per operation, for p50 latency and CPU per request.

    ``limits`` names, per operation, the metric (``p50`` or ``cpu``) that has a target and its
    largest acceptable ratio; the other figures are reported with ``limit`` None.
    """
    found = []
    for row in summary:
        if row.get("case") != small:
            continue
        other = next(
            (r for r in summary if r.get("case") == large and r["mix"] == row["mix"]), None
        )
        if other is None:
            continue
        for metric, before, after in (
            ("p50", row["latency_ms"]["p50"], other["latency_ms"]["p50"]),
            ("cpu", row["cpu_ms_per_request"]["total"], other["cpu_ms_per_request"]["total"]),
        ):
            wanted = limits.get(row["mix"])
            found.append(
                {
                    "name": f"{row['mix']} {large} vs {small}",
                    "metric": "p50 latency" if metric == "p50" else "CPU ms/request",
                    "small": before,
                    "large": after,
                    "ratio": round(after / before, 2) if before else None,
                    "limit": wanted[1] if wanted and wanted[0] == metric else None,
                }
            )
    return found


def _target(name: str, value: float | None, limit: float, *, below: bool = True) -> dict[str, Any]:
    ok = value is not None and (value <= limit if below else value >= limit)
    return {"name": name, "value": value, "limit": limit, "ok": ok}


def targets(
    summary: Sequence[Mapping[str, Any]], scaling: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Issue 6's targets, each with the measured value and whether it is met."""
    checks = []
    for mix, limit in (("read", READ_CPU_MS), ("write", WRITE_CPU_MS)):
        row = find(summary, "gateway", mix)
        if row is not None:
            value = row["cpu_ms_per_request"]["total"]
            checks.append(_target(f"{mix} mix CPU ms/request (gateway)", value, limit))
    for row in summary:
        if row["target"] in ("gateway", "clinic"):
            checks.append(
                _target(f"{row['target']} {row['mix']} p99 ms", row["latency_ms"]["p99"], P99_MS)
            )
    for row in summary:
        if row["target"] == "gateway" and row["gateway_share"] is not None:
            checks.append(
                _target(f"gateway share, {row['mix']} mix", row["gateway_share"], GATEWAY_SHARE)
            )
    rss: dict[str, float] = {}
    for row in [*summary, *(scaling or {}).get("summary", [])]:
        for name, value in row["rss_mb"].items():
            if name != "hello":
                rss[name] = max(rss.get(name, 0.0), value)
    checks.extend(_target(f"{name} RSS MiB", value, RSS_MB) for name, value in sorted(rss.items()))
    for comparison in (scaling or {}).get("comparisons", []):
        if comparison["limit"] is None:
            continue
        checks.append(
            _target(
                f"{comparison['name']}: {comparison['metric']} ratio",
                comparison["ratio"],
                comparison["limit"],
            )
        )
    return checks


def table(summary: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a fixed-width text table (rows of the scaling run carry their case)."""
    processes = ("traefik", "edge", "clinic", "auth", "tenants", "postgres")
    labels = [" ".join(filter(None, (row.get("case"), row["mix"]))) for row in summary]
    width = max([16, *(len(label) for label in labels)])
    header = (
        f"{'target':<8} {'mix':<{width}} {'req/s':>8} {'p50':>7} {'p90':>7} {'p99':>7} "
        f"{'err':>5} {'CPU/req':>8} "
        + " ".join(f"{name[:7]:>7}" for name in processes)
        + f" {'gw %':>5} {'RSS max':>8}"
    )
    lines = [header, "-" * len(header)]
    for label, row in zip(labels, summary, strict=True):
        per = row["cpu_ms_per_request"]
        share = row["gateway_share"]
        rss = max(row["rss_mb"].values()) if row["rss_mb"] else 0.0
        lines.append(
            f"{row['target']:<8} {label:<{width}} {row['rps']:>8.0f} "
            f"{row['latency_ms']['p50']:>7.2f} {row['latency_ms']['p90']:>7.2f} "
            f"{row['latency_ms']['p99']:>7.2f} {row['errors']:>5d} {per['total']:>8.3f} "
            + " ".join(f"{per[name]:>7.3f}" if name in per else f"{'-':>7}" for name in processes)
            + f" {'-' if share is None else f'{share * 100:.0f}':>5} {rss:>8.1f}"
        )
    lines.append("latency in ms (median of repeats); CPU in ms per request, summed over processes")
    return "\n".join(lines)


def disturbed(summary: Sequence[Mapping[str, Any]], seconds: float, cores: int) -> list[str]:
    """Rows whose runs lost more than a fifth of the machine to other processes."""
    capacity_ms = seconds * cores * 1000
    return [
        f"{row['target']} {row['mix']}"
        for row in summary
        if row["other_cpu_ms"] > 0.2 * capacity_ms
    ]


def targets_table(checks: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for check in checks:
        mark = "ok  " if check["ok"] else "MISS"
        lines.append(f"{mark} {check['name']}: {check['value']} (limit {check['limit']})")
    return "\n".join(lines)
