"""What the benchmark reads from the machine: CPU time and memory of processes, and wrk's result.

CPU comes from ``/proc/<pid>/stat`` (``utime + stime``, all threads). PostgreSQL is many
processes: the postmaster forks one backend per connection. The bench counts the backends of
its own databases (their pids from ``pg_stat_activity``), and, as a second figure, the whole
server: a backend that exits takes its CPU time with it, except that the postmaster, on reaping
it, adds that time to its own ``cutime + cstime``; so the postmaster's four counters plus
``utime + stime`` of every live child count backends that came and went.
"""

import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "mix.lua"
RESULT_MARKER = "BENCH_RESULT "


class WrkFailed(RuntimeError):
    """wrk exited with an error or printed no result."""


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (index 0 is field 3, the state)."""
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_cpu(pid: int, *, reaped_children: bool = False) -> float:
    """CPU seconds of ``pid`` (user + system), plus those of its reaped children if asked."""
    try:
        fields = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def children(parent: int) -> list[int]:
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat(int(entry.name))[1]) == parent:
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return found


def parent_of(pid: int) -> int:
    return int(_stat(pid)[1])


def tree_cpu(parent: int) -> float:
    """CPU seconds of ``parent`` and its children, the exited ones included once it reaped them.

    A forking server's workers (PostgreSQL's backends, gunicorn's workers) are its children:
    their CPU is theirs while they live and lands in the parent's ``cutime + cstime`` when it
    reaps them, so this sum misses no worker that came and went.
    """
    total = process_cpu(parent, reaped_children=True)
    return total + sum(process_cpu(child) for child in children(parent))


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds of the whole PostgreSQL server, exited backends included (module docstring)."""
    return tree_cpu(postmaster)


def machine_busy() -> float:
    """CPU seconds every core spent not idle since boot (the ``cpu`` line of /proc/stat)."""
    fields = [int(value) for value in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user).
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def tree_rss_mb(parent: int) -> float:
    """Resident memory of ``parent`` and its live children in MiB (pages they share count twice)."""
    return rss_mb(parent) + sum(rss_mb(child) for child in children(parent))


def cpu_sample(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds of each named process, and of the whole machine (``machine``), right now."""
    sample = {name: process_cpu(pid) for name, pid in pids.items()}
    sample["machine"] = machine_busy()
    return sample


def wrk_command(
    url: str, *, duration: float, connections: int, threads: int, cpu: int | None
) -> list[str]:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    return command


@dataclass(frozen=True, slots=True)
class WrkRun:
    result: dict[str, Any]
    cpu_seconds: float  # wrk's own CPU time (user + system)
    wall_seconds: float


def run_wrk(
    url: str,
    *,
    config: Path,
    mix: str,
    duration: float,
    connections: int,
    threads: int = 1,
    cpu: int | None = None,
) -> WrkRun:
    """Run wrk with the mix script and return its parsed ``BENCH_RESULT`` line."""
    command = wrk_command(url, duration=duration, connections=connections, threads=threads, cpu=cpu)
    env = {**os.environ, "BENCH_CONFIG": str(config), "BENCH_MIX": mix}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return WrkRun(json.loads(line[len(RESULT_MARKER) :]), cpu_seconds, wall)
    raise WrkFailed(
        f"wrk exited {completed.returncode} without a result\n"
        f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
    )
