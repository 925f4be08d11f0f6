"""The arithmetic of the bench's report: CPU per request, shares, medians, targets."""

from types import ModuleType
from typing import Any


def wrk_result(requests: int, p99_us: int = 20_000, non2xx: int = 0) -> dict[str, Any]:
    return {
        "duration_us": 10_000_000,
        "requests": requests,
        "latency_us": {"p50": 5_000, "p90": 10_000, "p99": p99_us, "max": 30_000, "mean": 6_000},
        "errors": {
            "connect": 0,
            "read": 1,
            "write": 0,
            "timeout": 0,
            "status": non2xx,
            "non2xx": non2xx,
            "statuses": {"404": non2xx} if non2xx else {},
        },
    }


def record(report: ModuleType, requests: int, clinic_s: float, **kwargs: Any) -> dict[str, Any]:
    before = {"traefik": 1.0, "edge": 2.0, "clinic": 3.0, "postgres": 4.0, "machine": 100.0}
    after = {
        "traefik": 1.5,
        "edge": 2.5,
        "clinic": 3.0 + clinic_s,
        "postgres": 4.5,
        "machine": 110.0,
    }
    return report.run_record(
        target="gateway",
        mix="read",
        repeat=1,
        wrk=wrk_result(requests, **kwargs),
        wrk_cpu_s=1.0,
        cpu_before=before,
        cpu_after=after,
        rss_mb={"clinic": 100.0, "edge": 80.0},
    )


def test_run_record_divides_each_process_cpu_by_the_requests(report: ModuleType) -> None:
    run = record(report, 1000, clinic_s=2.5)
    assert run["cpu_ms"] == {
        "traefik": 500.0,
        "edge": 500.0,
        "clinic": 2500.0,
        "postgres": 500.0,
        "total": 4000.0,
    }
    assert run["cpu_ms_per_request"]["total"] == 4.0
    assert run["cpu_ms_per_request"]["clinic"] == 2.5
    assert run["gateway_share"] == 0.25  # (500 + 500) / 4000
    assert run["rps"] == 100.0
    assert run["latency_ms"]["p99"] == 20.0
    # 10 s of machine time, 4 s of the system, 1 s of wrk: 5 s went elsewhere.
    assert run["other_cpu_ms"] == 5000.0
    assert run["errors"] == {"non2xx": 0, "socket": 1, "statuses": {}}


def test_summary_takes_the_median_of_repeats_and_sums_errors(report: ModuleType) -> None:
    runs = [
        record(report, 1000, clinic_s=1.0),
        record(report, 1000, clinic_s=9.0, non2xx=3),
        record(report, 1000, clinic_s=2.0),
    ]
    (row,) = report.summarise(runs)
    assert row["repeats"] == 3
    assert row["requests"] == 3000
    assert row["cpu_ms_per_request"]["clinic"] == 2.0
    assert row["errors"] == 3 + 3  # three 404s, one socket error per run
    assert row["rss_mb"] == {"clinic": 100.0, "edge": 80.0}


def peer_run(report: ModuleType, requests: int, gunicorn_s: float, **kwargs: Any) -> dict[str, Any]:
    """A run of the DRF peer: gunicorn and its PostgreSQL backends."""
    return report.run_record(
        target="peer",
        mix=kwargs.pop("mix", "read"),
        repeat=1,
        wrk=wrk_result(requests, **kwargs),
        wrk_cpu_s=1.0,
        cpu_before={"gunicorn": 10.0, "postgres": 4.0, "machine": 100.0},
        cpu_after={"gunicorn": 10.0 + gunicorn_s, "postgres": 4.5, "machine": 110.0},
        rss_mb={"gunicorn": 400.0},
    )


def side_by_side(report: ModuleType) -> list[dict[str, Any]]:
    """DentiaPro (gateway) and the peer on both mixes; CPU per request and p99 as commented."""
    return report.summarise(
        [
            record(report, 10_000, clinic_s=0.5),  # 2.0 s / 10,000 = 0.2 ms, p99 20 ms
            peer_run(report, 1000, gunicorn_s=1.5, p99_us=50_000),  # 2.0 ms, p99 50 ms
            {**record(report, 1000, clinic_s=0.5), "mix": "write"},  # 2.0 ms, p99 20 ms
            peer_run(report, 1000, gunicorn_s=6.5, p99_us=30_000, mix="write"),  # 7.0 ms, 30 ms
        ]
    )


def test_the_peer_comparison_divides_the_peer_by_dentiapro(report: ModuleType) -> None:
    rows = {row["mix"]: row for row in report.peer_comparison(side_by_side(report), ["peer write"])}
    read, write = rows["read"], rows["write"]
    assert read["peer_cpu_ms_per_request"] == 2.0
    assert read["dentiapro_cpu_ms_per_request"] == 0.2
    assert read["cpu_ratio"] == 10.0  # the peer spends ten times DentiaPro's CPU per request
    assert (read["dentiapro_p99_ms"], read["peer_p99_ms"], read["p99_ratio"]) == (20, 50, 0.4)
    assert write["cpu_ratio"] == 3.5
    assert write["p99_ratio"] == 0.67  # 20 ms / 30 ms
    assert read["dentiapro_rss_mb"] == {"clinic": 100.0, "edge": 80.0}
    assert read["peer_rss_mb"] == {"gunicorn": 400.0}
    assert (read["disturbed"], write["disturbed"]) == (False, True)


def test_each_pair_of_repeats_has_its_ratios_and_its_disturbance(report: ModuleType) -> None:
    ours = [
        {**record(report, 10_000, clinic_s=0.5), "repeat": 1},  # 0.2 ms, p99 20 ms
        {**record(report, 1000, clinic_s=0.5), "repeat": 2},  # 2.0 ms
    ]
    theirs = [
        {**peer_run(report, 1000, gunicorn_s=1.5, p99_us=50_000), "repeat": 1},  # 2.0 ms
        {**peer_run(report, 1000, gunicorn_s=1.5), "repeat": 2},  # 2.0 ms, p99 20 ms
    ]
    runs = [ours[0], theirs[0], ours[1], theirs[1]]
    (read,) = report.peer_comparison(report.summarise(runs), (), runs)
    first, second = read["pairs"]
    assert (first["repeat"], first["cpu_ratio"], first["p99_ratio"]) == (1, 10.0, 0.4)
    assert (second["repeat"], second["cpu_ratio"], second["p99_ratio"]) == (2, 1.0, 1.0)
    # Each run: 10 s of machine time, 2 s of the system, 1 s of wrk: 7 s went to others.
    assert first["other_cpu_ms"] == {"gateway": 7000.0, "peer": 7000.0}
    printed = report.comparison_table([read])
    assert "pairs: #1 10.0x, p99 0.4 (others 7.0/7.0 s); #2 1.0x, p99 1.0" in printed


def test_targets_are_the_ratios_to_the_peer(report: ModuleType) -> None:
    summary = side_by_side(report)
    checks = {c["name"]: c for c in report.targets(summary, None, report.peer_comparison(summary))}
    cpu = "mix: peer CPU/request over DentiaPro's (gateway)"
    p99 = "mix: DentiaPro p99 over the peer's (gateway)"
    assert checks[f"read {cpu}"] | {"name": ""} == {
        "name": "",
        "value": 10.0,
        "limit": 4.0,
        "at_least": True,
        "ok": True,
    }
    assert checks[f"write {cpu}"]["ok"] is True  # 3.5 is enough: "at least 3.5x"
    assert checks[f"read {p99}"]["ok"] is True  # 0.4 of the peer's p99
    assert checks[f"write {p99}"]["ok"] is False  # 0.67: more than half
    assert checks["clinic RSS MiB"]["ok"] is True
    # The peer's memory is not DentiaPro's target; no absolute millisecond target is left.
    assert not any("gunicorn" in name or " ms" in name for name in checks)
    printed = report.targets_table(list(checks.values()))
    assert f"ok   read {cpu}: 10.0 (target >= 4.0)" in printed
    assert f"MISS write {p99}: 0.67 (target <= 0.5)" in printed


def test_a_missed_cpu_ratio_is_a_miss(report: ModuleType) -> None:
    slow = report.summarise(
        [record(report, 1000, clinic_s=0.5), peer_run(report, 1000, gunicorn_s=5.5)]
    )  # 2.0 ms against the peer's 6.0 ms: 3x, not 4x
    (read,) = report.peer_comparison(slow)
    checks = {c["name"]: c for c in report.targets(slow, None, [read])}
    assert checks["read mix: peer CPU/request over DentiaPro's (gateway)"]["ok"] is False


def test_without_the_peer_the_ratio_targets_are_not_measured(report: ModuleType) -> None:
    summary = report.summarise([record(report, 1000, clinic_s=0.5)])
    assert report.peer_comparison(summary) == []
    checks = {c["name"]: c for c in report.targets(summary, None, [])}
    ratio = checks["read mix: peer CPU/request over DentiaPro's (gateway)"]
    assert (ratio["value"], ratio["ok"]) == (None, None)
    assert checks["read mix: DentiaPro p99 over the peer's (gateway)"]["ok"] is None
    assert "n/a  read mix: peer CPU/request" in report.targets_table([ratio])


def test_the_tables_show_the_peer_beside_dentiapro(report: ModuleType) -> None:
    summary = side_by_side(report)
    assert "gunicorn" in report.table(summary).splitlines()[0]
    printed = report.comparison_table(report.peer_comparison(summary, ["peer write"]))
    read = next(line for line in printed.splitlines() if line.startswith("read "))
    # mix, peer CPU, DentiaPro CPU, ratio, peer p99, DentiaPro p99, ratio, errors (one socket
    # error a run on each side), disturbed
    expected = "read 2.000 0.200 10.00x 50.0 20.0 0.40 1 1 no"
    assert read.split() == expected.split()
    assert "peer (master + workers) 400" in printed


def test_scaling_comparisons_carry_a_limit_only_where_a_target_exists(
    report: ModuleType,
) -> None:
    small = {**record(report, 1000, clinic_s=1.0), "case": "patients=1000", "mix": "get_patient"}
    large = {**record(report, 1000, clinic_s=3.0), "case": "patients=100000", "mix": "get_patient"}
    summary = [
        {**row, "case": run["case"]} for run in (small, large) for row in report.summarise([run])
    ]
    comparisons = report.compare(
        summary, "patients=1000", "patients=100000", {"get_patient": ("cpu", 1.5)}
    )
    by_metric = {c["metric"]: c for c in comparisons}
    assert by_metric["CPU ms/request"]["ratio"] == 1.8  # 4.5 ms / 2.5 ms
    assert by_metric["CPU ms/request"]["limit"] == 1.5
    assert by_metric["p50 latency"]["limit"] is None
    (check,) = report.targets([], {"comparisons": comparisons})
    assert check["ok"] is False


def test_runs_that_lost_the_machine_to_others_are_flagged(report: ModuleType) -> None:
    # 5 s of CPU went elsewhere: a quarter of 2 cores x 10 s, an eighth of 4 cores x 10 s.
    summary = report.summarise([record(report, 1000, clinic_s=1.0)])
    assert report.disturbed(summary, 10, 2) == ["gateway read"]
    assert report.disturbed(summary, 10, 4) == []
