"""deploy/Dockerfile: lint, pinned bases, non-root runtime, health checks, one package per image."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("auth", "clinic", "tenants", "edge")
# A parsed stage (conftest's Stage): .name, .base, .all(instruction), .last(instruction).
Stage = Any

# Runtime targets and the workspace package each one installs (the edge ships in the gateway's).
PACKAGES = {
    "auth": "dentiapro-auth",
    "clinic": "dentiapro-clinic",
    "tenants": "dentiapro-tenants",
    "edge": "dentiapro-gateway",
}
MODULES = {"auth": "auth", "clinic": "clinic", "tenants": "tenants", "edge": "edge"}
MIGRATE_PACKAGES = {"dentiapro-cli", "dentiapro-auth", "dentiapro-clinic", "dentiapro-tenants"}


def effective(stages: dict[str, Stage], name: str, instruction: str) -> str | None:
    """The value of ``instruction`` in a stage, inherited from the stages it is built FROM."""
    stage: Stage | None = stages[name]
    while stage is not None:
        value = stage.last(instruction)
        if value is not None:
            return value
        stage = stages.get(stage.base)
    return None


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list), f"not exec form: {args}"
    return [str(part) for part in parsed]


def test_hadolint_finds_nothing(hadolint: Path) -> None:
    result = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "deploy" / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_a_no_op(hadolint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && apt-get install curl\n")
    result = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def test_base_images_are_pinned_to_exact_versions(dockerfile: dict[str, Stage]) -> None:
    external = {stage.base for stage in dockerfile.values() if stage.base not in dockerfile}
    assert external, "no base image found"
    for image in external:
        assert re.fullmatch(
            r"python:3\.11\.\d+-slim-bookworm|ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", image
        ), f"{image} is not one of the pinned bases"


@pytest.mark.parametrize("target", APP_SERVICES)
def test_runtime_image_runs_as_a_numeric_non_root_user(
    dockerfile: dict[str, Stage], target: str
) -> None:
    user = effective(dockerfile, target, "USER")
    assert user is not None, f"{target} runs as root (no USER)"
    uid = user.split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit(), user
    assert int(uid) != 0


@pytest.mark.parametrize("target", APP_SERVICES)
def test_runtime_image_checks_its_liveness_endpoint(
    dockerfile: dict[str, Stage], target: str, image_ports: dict[str, int]
) -> None:
    healthcheck = dockerfile[target].last("HEALTHCHECK")
    assert healthcheck is not None, f"{target} has no HEALTHCHECK"
    assert "CMD " in healthcheck
    command = exec_form(healthcheck.split("CMD", 1)[1].strip())
    assert command[:2] == ["python", "-c"], "the slim image has no curl: use python"
    assert f"http://127.0.0.1:{image_ports[target]}/health/live" in command[2]


@pytest.mark.parametrize("target", APP_SERVICES)
def test_runtime_image_runs_one_uvicorn_worker_of_its_app(
    dockerfile: dict[str, Stage], target: str, image_ports: dict[str, int]
) -> None:
    cmd = dockerfile[target].last("CMD")
    assert cmd is not None
    command = exec_form(cmd)
    assert command[:2] == ["uvicorn", f"{MODULES[target]}.main:create_app"]
    options = command[2:]
    # The peer address stays the real one: the services trust X-Forwarded-For from the
    # gateway's hop only (TRUSTED_PROXIES); uvicorn trusting "*" let any client write it.
    for flag in ("--factory", "--no-access-log", "--no-proxy-headers"):
        assert flag in options
    assert "--forwarded-allow-ips" not in options
    pairs = dict(zip(options, [*options[1:], ""], strict=True))
    assert pairs["--host"] == "0.0.0.0"
    assert pairs["--port"] == str(image_ports[target])
    assert pairs["--loop"] == "uvloop"
    assert pairs["--http"] == "httptools"
    assert "--workers" not in options
    assert "--reload" not in options


def test_ports_are_the_documented_ones(image_ports: dict[str, int]) -> None:
    assert image_ports == {"auth": 8001, "clinic": 8002, "tenants": 8003, "edge": 8004}


def test_every_image_copies_only_its_own_venv(dockerfile: dict[str, Stage]) -> None:
    for target in (*APP_SERVICES, "migrate"):
        copies = dockerfile[target].all("COPY")
        venvs = [c for c in copies if "/app/.venv" in c]
        assert venvs == [f"--from=build-{target} /app/.venv /app/.venv"], copies


def test_dockerignore_keeps_tests_caches_and_secrets_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "**", "allow-list: start from nothing"
    for pattern in ("**/tests/", "**/.env", "**/*.pem", "**/*.sqlite3*", "**/__pycache__/"):
        assert pattern in patterns


def _uv_sync_args(stage: Stage) -> list[str]:
    """The arguments of the stage's final ``uv sync`` (the one that installs the code)."""
    runs = [run for run in stage.all("RUN") if "uv sync" in run]
    assert runs, f"{stage.name} has no uv sync"
    args = shlex.split(runs[-1].split("uv sync", 1)[1])
    assert "--no-install-workspace" not in args
    return args


def _installed_workspace_packages(python: Path) -> set[str]:
    listing = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; "
            "print('\\n'.join(d.metadata['Name'] for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {name for name in listing if name.startswith("dentiapro")}


WORKSPACE_PACKAGES = (
    "dentiapro-common",
    "dentiapro-auth",
    "dentiapro-clinic",
    "dentiapro-tenants",
    "dentiapro-gateway",
    "dentiapro-cli",
)


def _sync_like_the_image(stage: Stage, venv: Path) -> Path:
    """Run the stage's own ``uv sync`` command against the repository into ``venv``."""
    args = _uv_sync_args(stage)
    for expected in ("--frozen", "--no-dev", "--no-editable"):
        assert expected in args, f"{stage.name}: uv sync without {expected}"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON": sys.executable}
    env.pop("VIRTUAL_ENV", None)
    # uv caches wheels it built from local packages by their pyproject, not their sources:
    # rebuild ours so the venv holds the code as it is now. `uv run` names its own binary in UV.
    rebuild = [f"--reinstall-package={name}" for name in WORKSPACE_PACKAGES]
    result = subprocess.run(
        [os.environ.get("UV", "uv"), "sync", "--quiet", *args, *rebuild],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return venv / "bin" / "python"


@pytest.mark.parametrize("target", APP_SERVICES)
def test_image_installs_only_its_package_and_the_shared_library(
    dockerfile: dict[str, Stage], target: str, tmp_path: Path
) -> None:
    python = _sync_like_the_image(dockerfile[f"build-{target}"], tmp_path / "venv")
    assert _installed_workspace_packages(python) == {PACKAGES[target], "dentiapro-common"}
    # The app module of the CMD is installed (not a link to the checkout), without importing it.
    located = subprocess.run(
        [
            str(python),
            "-c",
            f"import importlib.util as u; print(u.find_spec('{MODULES[target]}.main').origin)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert located.startswith(str(tmp_path / "venv")), located


@pytest.fixture(scope="module")
def migrate_results(
    dockerfile: dict[str, Stage], tmp_path_factory: pytest.TempPathFactory, once_per_run: Any
) -> dict[str, str]:
    """What the migrate container does (its CMD), on SQLite, from a venv installed exactly as
    its own: each step's line of ``dentiapro migrate``, by service.

    Installed wheels, not the checkout, and from an empty directory as in the image, so each
    service must find its Alembic tree inside its package.
    """

    def migrate_each() -> dict[str, str]:
        directory = tmp_path_factory.mktemp("migrate")
        python = _sync_like_the_image(dockerfile["build-migrate"], directory / "venv")
        assert _installed_workspace_packages(python) == MIGRATE_PACKAGES | {"dentiapro-common"}
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.endswith("_DATABASE_URL") and key not in {"PYTHONPATH", "VIRTUAL_ENV"}
        }
        env["DENTIAPRO_DATA_DIR"] = str(directory / "data")
        workdir = directory / "app"
        workdir.mkdir()
        command = exec_form(dockerfile["migrate"].last("CMD") or "")
        env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"  # the image's PATH
        result = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        lines = result.stdout.splitlines()
        steps = {"tenants": "tenants registry ", "auth": "auth ", "clinic": "[1/1] public "}
        return {
            service: "ok"
            if any(line.startswith(prefix + "ok (") for line in lines)
            else f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
            for service, prefix in steps.items()
        }

    results: dict[str, str] = once_per_run("migrate", migrate_each)
    return results


def test_migrate_image_runs_the_command_make_migrate_runs(
    dockerfile: dict[str, Stage], compose_config: dict[str, Any], render_kustomization: Any
) -> None:
    """dentiapro migrate: the image's CMD, compose's migrate service, the Kubernetes Job."""
    command = ["dentiapro", "migrate"]
    assert exec_form(dockerfile["migrate"].last("CMD") or "") == command
    assert "$(UV) run --frozen dentiapro migrate" in (ROOT / "Makefile").read_text()
    assert compose_config["services"]["migrate"]["command"] == command
    (job,) = (o for o in render_kustomization("overlays/production") if o["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == command


@pytest.mark.parametrize("service", ["tenants", "auth", "clinic"])
def test_migrate_image_applies_each_services_migrations_from_its_wheel(
    migrate_results: dict[str, str], service: str
) -> None:
    assert migrate_results[service] == "ok", migrate_results[service]
