"""Turn the benchmark's raw runs into a summary, the comparison with the DRF peer, the targets
(issue 13's ratios to the peer, and issue 6's that do not depend on the machine's speed), and
printed tables."""

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

GATEWAY_PROCESSES = ("traefik", "edge")
SYSTEM_PROCESSES = ("traefik", "edge", "auth", "clinic", "tenants", "postgres")

# Issue 13: ratios to the DRF peer measured in the same run (the machines drift: the same code
# measured twice as slow from one day to the next, so absolute milliseconds mean nothing).
# Peer CPU per request / DentiaPro's through the gateway: at least this many times cheaper.
CPU_RATIO = {"read": 4.0, "write": 3.5}
# DentiaPro's p99 / the peer's, at 32 connections: at most half.
P99_RATIO = 0.5
P99_RATIO_MIXES = ("read", "write")
PEER = "peer"  # the target name of the peer's runs
# Issue 6's targets that are not absolute times.
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


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def pairs(runs: Sequence[Mapping[str, Any]], mix: str) -> list[dict[str, Any]]:
    """The ratios of each repeat of ``mix``: DentiaPro's gateway run and the peer's next to it.

    Each pair ran back to back, so it shows how the ratio moves with what others took of the
    machine (``other_cpu_ms`` of each side): contention inflates the peer's five sync workers
    more than DentiaPro, so the least disturbed pairs are the fairest.
    """
    ours = {r["repeat"]: r for r in runs if r["target"] == "gateway" and r["mix"] == mix}
    theirs = {r["repeat"]: r for r in runs if r["target"] == PEER and r["mix"] == mix}
    return [
        {
            "repeat": repeat,
            "cpu_ratio": _ratio(
                theirs[repeat]["cpu_ms_per_request"]["total"],
                ours[repeat]["cpu_ms_per_request"]["total"],
            ),
            "p99_ratio": _ratio(
                ours[repeat]["latency_ms"]["p99"], theirs[repeat]["latency_ms"]["p99"]
            ),
            "other_cpu_ms": {
                "gateway": ours[repeat]["other_cpu_ms"],
                PEER: theirs[repeat]["other_cpu_ms"],
            },
        }
        for repeat in sorted(ours.keys() & theirs.keys())
    ]


def peer_comparison(
    summary: Sequence[Mapping[str, Any]],
    disturbed_rows: Sequence[str] = (),
    runs: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Per mix run against both: the peer beside DentiaPro through the gateway.

    ``cpu_ratio`` is the peer's CPU per request over DentiaPro's (how many times cheaper
    DentiaPro is); ``p99_ratio`` is DentiaPro's p99 over the peer's (at most 0.5 is the target),
    both from the medians of the repeats; ``pairs`` the same per repeat (from ``runs``).
    ``disturbed`` when either side's runs lost more than a fifth of the machine to others.
    """
    found = []
    for row in summary:
        if row["target"] != "gateway":
            continue
        peer = find(summary, PEER, row["mix"])
        if peer is None:
            continue
        ours, theirs = row["cpu_ms_per_request"]["total"], peer["cpu_ms_per_request"]["total"]
        our_p99, their_p99 = row["latency_ms"]["p99"], peer["latency_ms"]["p99"]
        found.append(
            {
                "mix": row["mix"],
                "peer_cpu_ms_per_request": theirs,
                "dentiapro_cpu_ms_per_request": ours,
                "cpu_ratio": _ratio(theirs, ours),
                "peer_p99_ms": their_p99,
                "dentiapro_p99_ms": our_p99,
                "p99_ratio": _ratio(our_p99, their_p99),
                "peer_rps": peer["rps"],
                "dentiapro_rps": row["rps"],
                "peer_errors": peer["errors"],
                "dentiapro_errors": row["errors"],
                "dentiapro_rss_mb": dict(row["rss_mb"]),
                "peer_rss_mb": dict(peer["rss_mb"]),
                "disturbed": any(
                    f"{target} {row['mix']}" in disturbed_rows for target in ("gateway", PEER)
                ),
                "pairs": pairs(runs, row["mix"]),
            }
        )
    return found


def _target(
    name: str, value: float | None, limit: float, *, below: bool = True, measured: bool = True
) -> dict[str, Any]:
    """One target; ``ok`` is None when it could not be measured (no peer in the run)."""
    ok = (value is not None and (value <= limit if below else value >= limit)) if measured else None
    return {"name": name, "value": value, "limit": limit, "at_least": not below, "ok": ok}


def targets(
    summary: Sequence[Mapping[str, Any]],
    scaling: Mapping[str, Any] | None,
    comparison: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The targets, each with the measured value and whether it is met.

    Issue 13's ratios for every mix measured through the gateway (``ok`` None without the peer),
    then issue 6's that do not depend on the machine's speed: the gateway's share, each
    DentiaPro service's memory, the scaling ratios.
    """
    checks = []
    by_mix = {row["mix"]: row for row in comparison}
    for mix, limit in CPU_RATIO.items():
        if find(summary, "gateway", mix) is not None:
            value = by_mix[mix]["cpu_ratio"] if mix in by_mix else None
            checks.append(
                _target(
                    f"{mix} mix: peer CPU/request over DentiaPro's (gateway)",
                    value,
                    limit,
                    below=False,
                    measured=mix in by_mix,
                )
            )
    for mix in P99_RATIO_MIXES:
        if find(summary, "gateway", mix) is not None:
            value = by_mix[mix]["p99_ratio"] if mix in by_mix else None
            checks.append(
                _target(
                    f"{mix} mix: DentiaPro p99 over the peer's (gateway)",
                    value,
                    P99_RATIO,
                    measured=mix in by_mix,
                )
            )
    for row in summary:
        if row["target"] == "gateway" and row["gateway_share"] is not None:
            checks.append(
                _target(f"gateway share, {row['mix']} mix", row["gateway_share"], GATEWAY_SHARE)
            )
    rss: dict[str, float] = {}
    for row in [*summary, *(scaling or {}).get("summary", [])]:
        if row["target"] in ("hello", PEER):
            continue  # DentiaPro's services only
        for name, value in row["rss_mb"].items():
            rss[name] = max(rss.get(name, 0.0), value)
    checks.extend(_target(f"{name} RSS MiB", value, RSS_MB) for name, value in sorted(rss.items()))
    for scaled in (scaling or {}).get("comparisons", []):
        if scaled["limit"] is None:
            continue
        checks.append(
            _target(f"{scaled['name']}: {scaled['metric']} ratio", scaled["ratio"], scaled["limit"])
        )
    return checks


def table(summary: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a fixed-width text table (rows of the scaling run carry their case)."""
    present = {name for row in summary for name in row["cpu_ms_per_request"]}
    processes = [
        name
        for name in ("traefik", "edge", "clinic", "auth", "tenants", "gunicorn", "postgres")
        if name in present or name in SYSTEM_PROCESSES
    ]
    labels = [" ".join(filter(None, (row.get("case"), row["mix"]))) for row in summary]
    width = max([16, *(len(label) for label in labels)])
    header = (
        f"{'target':<8} {'mix':<{width}} {'req/s':>8} {'p50':>7} {'p90':>7} {'p99':>7} "
        f"{'err':>5} {'CPU/req':>8} "
        + " ".join(f"{name:>8}" for name in processes)
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
            + " ".join(f"{per[name]:>8.3f}" if name in per else f"{'-':>8}" for name in processes)
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
        mark = {True: "ok  ", False: "MISS", None: "n/a "}[check["ok"]]
        bound = ">=" if check.get("at_least") else "<="
        value = "not measured" if check["ok"] is None else check["value"]
        lines.append(f"{mark} {check['name']}: {value} (target {bound} {check['limit']})")
    return "\n".join(lines)


def comparison_table(comparison: Sequence[Mapping[str, Any]]) -> str:
    """DentiaPro through the gateway beside the DRF peer, one line per mix."""
    header = (
        f"{'mix':<8} {'peer CPU/req':>12} {'DP CPU/req':>10} {'peer/DP':>8} "
        f"{'peer p99':>9} {'DP p99':>8} {'DP/peer':>8} {'peer err':>8} {'DP err':>6}  disturbed"
    )
    lines = [header, "-" * len(header)]
    for row in comparison:
        cpu_ratio, p99_ratio = row["cpu_ratio"], row["p99_ratio"]
        lines.append(
            f"{row['mix']:<8} {row['peer_cpu_ms_per_request']:>12.3f} "
            f"{row['dentiapro_cpu_ms_per_request']:>10.3f} "
            f"{'-' if cpu_ratio is None else f'{cpu_ratio:.2f}x':>8} "
            f"{row['peer_p99_ms']:>9.1f} {row['dentiapro_p99_ms']:>8.1f} "
            f"{'-' if p99_ratio is None else f'{p99_ratio:.2f}':>8} "
            f"{row['peer_errors']:>8d} {row['dentiapro_errors']:>6d}  "
            f"{'YES' if row['disturbed'] else 'no'}"
        )
        rss = ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(row["dentiapro_rss_mb"].items()))
        peer_rss = sum(row["peer_rss_mb"].values())
        lines.append(f"{'':<8} RSS MiB: DentiaPro {rss}; peer (master + workers) {peer_rss:.0f}")
        if row.get("pairs"):
            each = "; ".join(
                f"#{pair['repeat']} {pair['cpu_ratio']}x, p99 {pair['p99_ratio']} "
                f"(others {pair['other_cpu_ms']['gateway'] / 1000:.1f}/"
                f"{pair['other_cpu_ms'][PEER] / 1000:.1f} s)"
                for pair in row["pairs"]
            )
            lines.append(f"{'':<8} pairs: {each}")
    lines.append(
        "CPU in ms per request (all processes, PostgreSQL included), p99 in ms; peer/DP: how many "
        "times less CPU DentiaPro spends (target read >= 4, write >= 3.5); DP/peer: DentiaPro's "
        "p99 as a fraction of the peer's (target <= 0.5); pairs: each repeat's ratios, with the "
        "CPU seconds others took during DentiaPro's run and the peer's (the quietest pairs are "
        "the fairest: contention inflates the peer more)"
    )
    return "\n".join(lines)
