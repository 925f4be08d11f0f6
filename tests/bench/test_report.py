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


def test_targets_say_which_are_missed(report: ModuleType) -> None:
    fast = record(report, 10_000, clinic_s=2.0)  # 0.55 ms CPU per request, p99 20 ms
    slow = {**record(report, 1000, clinic_s=2.5, p99_us=90_000), "mix": "write"}
    checks = {c["name"]: c for c in report.targets(report.summarise([fast, slow]), None)}
    assert checks["read mix CPU ms/request (gateway)"]["ok"] is True
    assert checks["write mix CPU ms/request (gateway)"]["ok"] is False
    assert checks["gateway read p99 ms"]["ok"] is True
    assert checks["gateway write p99 ms"]["ok"] is False
    assert checks["clinic RSS MiB"]["ok"] is True


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
