"""Where a process's Python CPU goes, from py-spy's collapsed stacks (``--format raw``).

    python bench/profile_summary.py bench-results/<run>/profile/read-clinic.txt [...]

The bench records with ``py-spy record --gil``: only the thread holding the GIL is sampled, so
the samples are the Python CPU time (waits on the database, the network or the GIL are not in
them). Each sample goes to the first category, in the order below, that any of its frames
matches: a JSON dump made by the logger counts as logging, a query run by the ORM as the
driver, the ORM's own work as SQLAlchemy.
"""

import sys
from collections import Counter
from pathlib import Path

# (category, substrings of a frame "function (file:line)"), most specific first.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging", ("logging/__init__.py", "JsonFormatter", "access_log")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("token verification (jwt)", ("jwt/", "common/tokens.py", "cryptography/")),
    ("email validation", ("email_validator/",)),
    # FastAPI's built-in OpenTelemetry asks, on every request, whether a provider is set.
    (
        "FastAPI telemetry check",
        ("NativeTelemetry.enabled", "opentelemetry/"),
    ),
    (
        "database driver (execute, commit, rollback, ping)",
        (
            "do_execute",
            "do_commit",
            "do_rollback",
            "do_ping",
            "psycopg2",
            "_psycopg_common",
            "asyncpg",
            "aiosqlite",
        ),
    ),
    ("connection pool", ("sqlalchemy/pool/",)),
    (
        "response validation and serialisation",
        (
            "serialize_response",
            "_prepare_response_content",
            "jsonable_encoder",
            "pydantic/",
            "pydantic_core",
            "sqlmodel/_compat",
            "fastapi/_compat",
        ),
    ),
    ("JSON encode/decode", ("json/encoder", "json/decoder", "json/__init__", "orjson")),
    ("SQLAlchemy ORM and Core", ("sqlalchemy/", "sqlmodel/")),
    ("outgoing HTTP (httpx)", ("httpx/", "httpcore/")),
    (
        "anyio (cancel scopes of yield dependencies, thread hand-offs)",
        (
            "anyio/",
            "threading.py",
            "concurrent/futures",
            "queue.py",
            "starlette/concurrency",
            "fastapi/concurrency",
        ),
    ),
    ("FastAPI dependencies", ("fastapi/dependencies/",)),
    (
        "routing and middleware (Starlette, FastAPI, common.app)",
        (
            "starlette/",
            "fastapi/",
            "common/app.py",
            "common/observability.py",
        ),
    ),
    ("HTTP server (uvicorn, httptools)", ("uvicorn/protocols", "uvicorn/middleware", "httptools")),
    ("event loop (uvloop, asyncio)", ("asyncio/", "uvloop", "Runner.run")),
)
OTHER = "other (service code, stdlib)"


def categorise(stack: str) -> str:
    frames = stack.split(";")
    for name, patterns in CATEGORIES:
        if any(pattern in frame for frame in frames for pattern in patterns):
            return name
    return OTHER


def summarise(path: Path) -> tuple[int, Counter[str]]:
    """(samples, samples per category) of one py-spy raw file."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        counts[categorise(stack)] += int(number)
        total += int(number)
    return total, counts


def top_functions(path: Path, limit: int = 15) -> list[tuple[str, int]]:
    """Functions by self time (the leaf frame of each sample)."""
    leaves: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            leaves[stack.split(";")[-1]] += int(number)
    return leaves.most_common(limit)


def report(path: Path) -> str:
    total, counts = summarise(path)
    lines = [f"{path.name}: {total} samples"]
    for name, count in counts.most_common():
        lines.append(f"  {100 * count / max(total, 1):5.1f}%  {name}")
    lines.append("  self time, top functions:")
    for frame, count in top_functions(path):
        lines.append(f"  {100 * count / max(total, 1):5.1f}%    {frame}")
    return "\n".join(lines)


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(report(Path(argument)))
        print()
