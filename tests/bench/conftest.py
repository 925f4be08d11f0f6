"""Fixtures of the benchmark's smoke tests: the harness modules, and wrk or a clear skip."""

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    path = ROOT / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    # Some modules import their siblings (``import seed``), as scripts/bench.py runs them.
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


@pytest.fixture(scope="session")
def measure() -> ModuleType:
    """bench/measure.py: CPU and memory readings from /proc, the wrk runner."""
    return _load("measure")


@pytest.fixture(scope="session")
def seed() -> ModuleType:
    """bench/seed.py: the seeding helpers."""
    return _load("seed")


@pytest.fixture(scope="session")
def report() -> ModuleType:
    """bench/report.py: run records, summaries, targets."""
    return _load("report")


@pytest.fixture(scope="session")
def mixes() -> ModuleType:
    """bench/mixes.py: the mixes and the Lua config wrk reads."""
    return _load("mixes")


@pytest.fixture(scope="session")
def peer() -> ModuleType:
    """bench/peer.py: the DRF peer's set-up, start and stop."""
    return _load("peer")


@pytest.fixture
def wrk() -> str:
    """wrk's path; without it the test skips, except in CI where the bench must run."""
    path = shutil.which("wrk")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("wrk is not installed; CI must install it (apt-get install -y wrk)")
        pytest.skip("wrk is not installed (apt-get install -y wrk, or `make bench` installs it)")
    return path


@pytest.fixture
def bench_script() -> Path:
    return ROOT / "scripts" / "bench.py"
